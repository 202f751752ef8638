#include "loom/models/data/text_corpus.h"

#include <zlib.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "loom/core/parallel.h"
#include "loom/ops/factory.h"

namespace loom::data {
namespace {

// One read into a string sized from the file (a stringstream would copy a 40 MB corpus twice).
std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  LOOM_CHECK(in.good(), "text corpus: cannot open '", path, "'");
  std::string text(static_cast<size_t>(in.tellg()), '\0');
  in.seekg(0);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  LOOM_CHECK(in.good(), "text corpus: failed reading '", path, "'");
  return text;
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
  LOOM_CHECK(
      status == 0 && !raw.empty(),
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

std::string load_gcide_text(const std::string& cache_dir, const std::string& dict_path) {
  std::string name = std::filesystem::path(dict_path).filename().string();
  name = name.substr(0, name.find('.'));
  std::filesystem::path cached = std::filesystem::path(cache_dir) / (name + ".txt");
  if (std::filesystem::exists(cached)) return read_file(cached.string());
  LOOM_CHECK(std::filesystem::exists(dict_path), "text corpus 'gcide': '", dict_path,
             "' not found; install Debian's dict-gcide package (apt-get install dict-gcide)");
  gzFile in = gzopen(dict_path.c_str(), "rb");
  LOOM_CHECK(in != nullptr, "text corpus 'gcide': cannot open '", dict_path, "'");
  gzbuffer(in, 1 << 20);
  std::string text;
  constexpr size_t kChunk = 1 << 22;
  int n;
  do {
    size_t have = text.size();
    text.resize(have + kChunk);  // amortised doubling of the capacity, no per-chunk copy through a buffer
    n = gzread(in, text.data() + have, static_cast<unsigned>(kChunk));
    text.resize(have + static_cast<size_t>(n > 0 ? n : 0));
  } while (n > 0);
  // A truncated stream ends with gzread returning 0 and the error Z_BUF_ERROR, so the status is checked too.
  int errnum = Z_OK;
  std::string why = gzerror(in, &errnum);
  gzclose(in);
  LOOM_CHECK(n == 0 && errnum == Z_OK, "text corpus 'gcide': failed decompressing '", dict_path, "': ", why);
  LOOM_CHECK(!text.empty(), "text corpus 'gcide': '", dict_path, "' decompresses to nothing");
  std::filesystem::create_directories(cache_dir);
  write_file_atomically(cached.string(), text);
  return text;
}

std::string TextCorpus::summary() const {
  return detail::concat("corpus ", name, ": ", train.numel(), " train / ", valid.numel(), " valid / ",
                        test.numel(), " test characters, vocabulary ", vocab_size());
}

TextCorpus load_text_corpus(const std::string& source, const std::string& cache_dir) {
  TextCorpus corpus;
  corpus.name = source;
  std::string text = source == "kjv"     ? load_kjv_text(cache_dir)
                     : source == "gcide" ? load_gcide_text(cache_dir)
                                         : read_file(source);
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
  // Encoded straight into the tensor through the 256-entry table: GCIDE is 40M characters.
  int64_t n = static_cast<int64_t>(text.size());
  Tensor all = empty({n}, DType::Int64);
  int64_t* ids = all.data<int64_t>();
  const unsigned char* bytes = reinterpret_cast<const unsigned char*>(text.data());
  parallel_for(0, n, 1 << 20, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) ids[i] = id[bytes[i]];
  });
  int64_t n_train = n * 90 / 100, n_valid = n * 5 / 100;
  corpus.train = all.narrow(0, 0, n_train);
  corpus.valid = all.narrow(0, n_train, n_valid);
  corpus.test = all.narrow(0, n_train + n_valid, n - n_train - n_valid);
  return corpus;
}

}  // namespace loom::data
