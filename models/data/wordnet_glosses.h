#pragma once
// WordNet 3.0 glosses labelled with their lexicographer file: 45-way sentence classification (noun.animal,
// verb.motion, adj.all, ...), the largest labelled sentence set available offline (Debian's wordnet-base).
#include <string>
#include <vector>

#include "loom/models/data/word_vocab.h"

namespace loom::data {

// The 45 lexicographer file names of WordNet 3.0 (its `lexnames` file, which wordnet-base does not install),
// indexed by lex_filenum: 00 adj.all, 01 adj.pert, 02 adv.all, 03 noun.Tops, ..., 44 adj.ppl.
const std::vector<std::string>& wordnet_lexnames();

// $WNSEARCHDIR (WordNet's own variable) if set, else /usr/share/wordnet.
std::string default_wordnet_dir();

struct WordNetGlossOptions {
  std::string dir = default_wordnet_dir();  // holds data.noun, data.verb, data.adj, data.adv
  double train_fraction = 0.9;
  uint64_t seed = 0;
};

// Reads every synset of data.{noun,verb,adj,adv} (in that order, file order within each): text = the gloss
// (the definition and its quoted examples, after "| "), label = lex_filenum, source = "<pos file> <offset>".
// WordNet 3.0 has 117,659 synsets (82,115 + 13,767 + 18,156 + 3,621), each with a gloss. Then split_random.
// A missing file is a loom::Error naming the path and the package (apt-get install wordnet-base).
TextClassificationData load_wordnet_glosses(const WordNetGlossOptions& options = {});

}  // namespace loom::data
