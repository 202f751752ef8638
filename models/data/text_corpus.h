#pragma once
// Character-level text corpora from files that Debian packages ship, encoded for language modelling.
#include <cstdint>
#include <string>
#include <vector>

#include "loom/core/tensor.h"

namespace loom::data {

struct TextCorpus {
  std::string name;
  std::vector<unsigned char> vocab;  // distinct bytes, sorted; token id = position
  Tensor train, valid, test;         // int64 token ids, 1-d: first 90%, next 5%, last 5% of the text
  int64_t vocab_size() const { return static_cast<int64_t>(vocab.size()); }
  // "corpus kjv: N train / N valid / N test characters, vocabulary N", as the drivers print it.
  std::string summary() const;
};

// The King James Bible as plain text: 31,102 verses, one per line, with the "Ge1:1 " references removed
// (4,137,850 bytes). Decoded once with the bible-kjv package's `bible` program and cached under cache_dir.
std::string load_kjv_text(const std::string& cache_dir);

// Loads `source` ("kjv" or a path to a text file), builds the byte vocabulary and the 90/5/5 split.
TextCorpus load_text_corpus(const std::string& source, const std::string& cache_dir);

}  // namespace loom::data
