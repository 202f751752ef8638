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

// Where Debian's dict-gcide package puts the dictionary (dictzip: a gzip stream with a random-access index in
// its header, so zlib reads it as plain gzip).
inline constexpr const char* kGcideDictPath = "/usr/share/dictd/gcide.dict.dz";

// GCIDE, the Collaborative International Dictionary of English 0.48 (Webster 1913 plus WordNet glosses):
// the whole decompressed dict file, 39,952,321 bytes, 99 distinct (all ASCII but 3 bytes: 146, 185, 231),
// starting "\n\n00-database-url\n". It stands in for enwik8 (same scale, no download). Decoded once with
// zlib and cached as cache_dir/<dict file name up to its first dot>.txt (gcide.txt); a cached copy is used
// even when the package is gone.
std::string load_gcide_text(const std::string& cache_dir, const std::string& dict_path = kGcideDictPath);

// Loads `source` ("kjv", "gcide" or a path to a text file), builds the byte vocabulary and the 90/5/5 split.
// Measured: gcide gives 35,957,088 / 1,997,616 / 1,997,617 characters and a vocabulary of 99.
TextCorpus load_text_corpus(const std::string& source, const std::string& cache_dir);

}  // namespace loom::data
