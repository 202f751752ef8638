#include "loom/models/data/text_corpus.h"

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "loom/ops/factory.h"

namespace loom::data {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  LOOM_CHECK(in.good(), "text corpus: cannot open '", path, "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Writes through a temporary name so an interrupted run never leaves a truncated cache behind.
void write_file_atomically(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    LOOM_CHECK(out.good(), "text corpus: cannot write '", tmp, "'");
    out << text;
    LOOM_CHECK(out.good(), "text corpus: failed writing '", tmp, "'");
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace

std::string load_kjv_text(const std::string& cache_dir) {
  std::filesystem::path cached = std::filesystem::path(cache_dir) / "kjv.txt";
  if (std::filesystem::exists(cached)) return read_file(cached.string());
  FILE* pipe = popen("bible -f gen1:1-rev22:21 2>/dev/null", "r");
  LOOM_CHECK(pipe != nullptr, "text corpus 'kjv': cannot run the `bible` program");
  std::string raw;
  std::array<char, 1 << 16> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) raw.append(buf.data(), n);
  int status = pclose(pipe);
  LOOM_CHECK(status == 0 && !raw.empty(),
             "text corpus 'kjv': the `bible` program failed or is missing; install Debian's bible-kjv package "
             "(apt-get install bible-kjv)");
  // Each line is "<Book><chapter>:<verse> <text>": keep the text.
  std::string text;
  text.reserve(raw.size());
  std::istringstream lines(raw);
  std::string line;
  while (std::getline(lines, line)) {
    size_t space = line.find(' ');
    if (space == std::string::npos) continue;
    text.append(line, space + 1, std::string::npos);
    text.push_back('\n');
  }
  std::filesystem::create_directories(cache_dir);
  write_file_atomically(cached.string(), text);
  return text;
}

std::string TextCorpus::summary() const {
  return detail::concat("corpus ", name, ": ", train.numel(), " train / ", valid.numel(), " valid / ", test.numel(),
                        " test characters, vocabulary ", vocab_size());
}

TextCorpus load_text_corpus(const std::string& source, const std::string& cache_dir) {
  TextCorpus corpus;
  corpus.name = source;
  std::string text = source == "kjv" ? load_kjv_text(cache_dir) : read_file(source);
  LOOM_CHECK(text.size() >= 1000, "text corpus '", source, "': only ", text.size(),
             " bytes; need at least 1000 for a train/valid/test split");
  std::array<bool, 256> seen{};
  for (unsigned char c : text) seen[c] = true;
  std::array<int64_t, 256> id{};
  for (int c = 0; c < 256; ++c)
    if (seen[c]) {
      id[c] = static_cast<int64_t>(corpus.vocab.size());
      corpus.vocab.push_back(static_cast<unsigned char>(c));
    }
  std::vector<int64_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = id[static_cast<unsigned char>(text[i])];
  int64_t n = static_cast<int64_t>(ids.size());
  int64_t n_train = n * 90 / 100, n_valid = n * 5 / 100;
  Tensor all = tensor(ids);
  corpus.train = all.narrow(0, 0, n_train);
  corpus.valid = all.narrow(0, n_train, n_valid);
  corpus.test = all.narrow(0, n_train + n_valid, n - n_train - n_valid);
  return corpus;
}

}  // namespace loom::data
