#include "loom/models/data/wordnet_glosses.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace loom::data {

const std::vector<std::string>& wordnet_lexnames() {
  static const std::vector<std::string> names = {
      "adj.all",          "adj.pert",           "adv.all",
      "noun.Tops",        "noun.act",           "noun.animal",
      "noun.artifact",    "noun.attribute",     "noun.body",
      "noun.cognition",   "noun.communication", "noun.event",
      "noun.feeling",     "noun.food",          "noun.group",
      "noun.location",    "noun.motive",        "noun.object",
      "noun.person",      "noun.phenomenon",    "noun.plant",
      "noun.possession",  "noun.process",       "noun.quantity",
      "noun.relation",    "noun.shape",         "noun.state",
      "noun.substance",   "noun.time",          "verb.body",
      "verb.change",      "verb.cognition",     "verb.communication",
      "verb.competition", "verb.consumption",   "verb.contact",
      "verb.creation",    "verb.emotion",       "verb.motion",
      "verb.perception",  "verb.possession",    "verb.social",
      "verb.stative",     "verb.weather",       "adj.ppl"};
  return names;
}

std::string default_wordnet_dir() {
  const char* env = std::getenv("WNSEARCHDIR");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string("/usr/share/wordnet");
}

namespace {

// Appends the synsets of one data.<pos> file. A synset line is
//   offset lex_filenum ss_type w_cnt word lex_id ... p_cnt pointers... [frames] | gloss
// and the licence header's lines start with two spaces.
void read_data_file(const std::filesystem::path& path, const std::string& pos, TextClassificationData& data) {
  std::ifstream in(path, std::ios::binary);
  LOOM_CHECK(
      in.good(), "wordnet glosses: cannot open '", path.string(),
      "'; install Debian's wordnet-base package (apt-get install wordnet-base) or point $WNSEARCHDIR at a "
      "WordNet 3.0 dict directory");
  auto n_classes = static_cast<int64_t>(wordnet_lexnames().size());
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty() || line.rfind("  ", 0) == 0) continue;
    size_t sp1 = line.find(' ');
    size_t sp2 = sp1 == std::string::npos ? sp1 : line.find(' ', sp1 + 1);
    size_t bar = line.find(" | ");
    LOOM_CHECK(sp2 != std::string::npos && bar != std::string::npos && sp2 == sp1 + 3, "wordnet glosses: '",
               path.string(), "' line ", line_no,
               " is not a synset line (offset, two-digit lex_filenum, ..., '| gloss')");
    std::string lex = line.substr(sp1 + 1, 2);
    LOOM_CHECK(lex[0] >= '0' && lex[0] <= '9' && lex[1] >= '0' && lex[1] <= '9', "wordnet glosses: '",
               path.string(), "' line ", line_no, ": lex_filenum '", lex, "' is not a number");
    int64_t label = (lex[0] - '0') * 10 + (lex[1] - '0');
    LOOM_CHECK(label < n_classes, "wordnet glosses: '", path.string(), "' line ", line_no, ": lex_filenum ",
               label, " is beyond the ", n_classes, " lexicographer files");
    // Lines end with two spaces (and CR on copies that went through Windows): drop trailing whitespace.
    size_t end = line.find_last_not_of(" \r\n\t");
    std::string gloss =
        end == std::string::npos || end < bar + 3 ? std::string() : line.substr(bar + 3, end - bar - 2);
    data.texts.push_back(std::move(gloss));
    data.labels.push_back(label);
    data.sources.push_back(pos + " " + line.substr(0, sp1));
  }
}

}  // namespace

TextClassificationData load_wordnet_glosses(const WordNetGlossOptions& options) {
  TextClassificationData data;
  data.name = "wordnet";
  data.class_names = wordnet_lexnames();
  std::filesystem::path dir(options.dir);
  for (const char* pos : {"noun", "verb", "adj", "adv"})
    read_data_file(dir / (std::string("data.") + pos), pos, data);
  split_random(data, options.train_fraction, options.seed);
  return data;
}

}  // namespace loom::data
