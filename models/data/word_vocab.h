#pragma once
// Word-level text classification data: the labelled-text dataset type and its seeded splits, the word
// tokenizer, a vocabulary built on the training split, padded batches, and the majority / naive Bayes
// baselines a model is compared with. The loaders are wordnet_glosses.h and spam_assassin.h.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "loom/core/tensor.h"

namespace loom::data {

// ---- Labelled texts and splits ----------------------------------------------------------------------------

struct TextClassificationData {
  std::string name;
  std::vector<std::string> class_names;  // label id = position
  std::vector<std::string> texts;
  std::vector<int64_t> labels;  // one per text, in [0, num_classes)
  // One per text: where it came from ("noun 00001740", "spam-2/01400.<md5>").
  std::vector<std::string> sources;
  std::vector<int64_t> train, test;  // indices into texts, ascending, disjoint, covering every text
  std::string split;                 // how train/test were chosen, e.g. "seeded 90/10, seed 0"

  int64_t size() const { return static_cast<int64_t>(texts.size()); }
  int64_t num_classes() const { return static_cast<int64_t>(class_names.size()); }
  // "dataset wordnet: 105893 train / 11766 test texts, 45 classes (seeded 90/10, seed 0)" for the drivers.
  std::string summary() const;
};

// SplitMix64 (Steele, Lea and Flood 2014): a few integer operations per draw, so a seed gives the same stream
// on every platform and compiler, which std::shuffle with std distributions does not promise.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next();
  // Uniform in [0, bound) without modulo bias (rejects the top partial range); bound > 0.
  uint64_t below(uint64_t bound);

 private:
  uint64_t state_;
};

// A permutation of 0..n-1 by Fisher-Yates over SplitMix64(seed).
std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed);

// Replaces data.train / data.test with a seeded random split: floor(n * train_fraction) texts train, the rest
// test (scikit-learn's rounding, so 117,659 at 0.9 gives 11,766 test texts). 0 < train_fraction < 1.
void split_random(TextClassificationData& data, double train_fraction, uint64_t seed);

// ---- Tokenizer --------------------------------------------------------------------------------------------

// Lower-cases ASCII letters and splits on everything that is not a letter or digit. A token is a maximal run
// of ASCII letters, digits and non-ASCII bytes (so a UTF-8 word stays whole); every ASCII punctuation
// character is a token of its own; whitespace and control bytes only separate:
//   "Don't stop!" -> don ' t stop !
// The reference Bi-BloSA code reads pre-tokenized (PTB-style) text and lower-cases it; this simple rule gets
// raw glosses and e-mails close to that without a tokenizer model.
void for_each_word(std::string_view text, const std::function<void(std::string_view)>& fn);
std::vector<std::string> split_words(std::string_view text);

// ---- Vocabulary -------------------------------------------------------------------------------------------

struct TextVocabOptions {
  int64_t min_count = 1;  // a word needs this many occurrences in the training texts
  // The largest vocabulary including PAD and UNK (0 = no limit); the most frequent words win.
  int64_t max_size = 0;
};

// Padded batch of token ids, batch first.
struct EncodedBatch {
  Tensor ids;                    // int64 [B, S], PAD (0) after each sequence's end
  Tensor padding_mask;           // bool [B, S], true = padding (the convention of nn/ and ops/attention.h)
  std::vector<int64_t> lengths;  // real tokens per row
};

class TextVocab {
 public:
  static constexpr int64_t kPad = 0;  // the reference code's "@@@empty": also the id the padding mask covers
  static constexpr int64_t kUnk = 1;  // words not in the vocabulary
  static constexpr const char* kPadToken = "<pad>";
  static constexpr const char* kUnkToken = "<unk>";

  TextVocab();  // PAD and UNK only

  // Counts the words of texts[i] for i in `indices` (the training split: test words must not leak in) and
  // keeps those with count >= min_count, most frequent first (ties by byte order, so the ids are
  // deterministic).
  static TextVocab build(const std::vector<std::string>& texts, const std::vector<int64_t>& indices,
                         const TextVocabOptions& options = {});
  // The same over every text (a separate name: build(texts, {0, 1}) must not silently mean options {0, 1}).
  static TextVocab build_all(const std::vector<std::string>& texts, const TextVocabOptions& options = {});
  // The vocabulary whose ids are the positions of `tokens` (a saved model's vocabulary, as tokens() gives it):
  // tokens[0] must be PAD, tokens[1] UNK, and no token may repeat. Counts are unknown (0).
  static TextVocab from_tokens(std::vector<std::string> tokens);
  // Every token by id (PAD and UNK first).
  const std::vector<std::string>& tokens() const { return tokens_; }

  int64_t size() const { return static_cast<int64_t>(tokens_.size()); }
  // The id of a (lower-case) word; kUnk if it is not in the vocabulary.
  int64_t id(std::string_view word) const;
  const std::string& token(int64_t id) const;
  // Whether the id is a word (letters, digits, non-ASCII) rather than PAD, UNK or a punctuation character.
  bool is_word(int64_t id) const;
  // How often the word occurred in the texts the vocabulary was built from (0 for PAD and UNK).
  int64_t count(int64_t id) const;

  // Tokenizes and maps to ids; keeps the first max_len ids (0 = all).
  std::vector<int64_t> encode(std::string_view text, int64_t max_len = 0) const;
  // The tokens of ids joined by single spaces (UNK shows as <unk>; PAD is skipped).
  std::string decode(const std::vector<int64_t>& ids) const;
  // Encodes each text (truncated to max_len, 0 = no limit) and pads to the longest row.
  EncodedBatch encode_batch(const std::vector<std::string>& texts, int64_t max_len = 0) const;

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  std::vector<std::string> tokens_;
  std::vector<int64_t> counts_;
  std::unordered_map<std::string, int64_t, Hash, std::equal_to<>> index_;
};

// Pads already-encoded sequences into one batch; S = the longest row (at least 1, so a batch of empty texts
// is still a valid [B, 1] all-padding batch).
EncodedBatch pad_batch(const std::vector<std::vector<int64_t>>& rows);

// ---- Baselines --------------------------------------------------------------------------------------------

// The most frequent training label (ties: the smallest id).
int64_t majority_class(const std::vector<int64_t>& labels, const std::vector<int64_t>& indices,
                       int64_t num_classes);

// Multinomial naive Bayes over bag-of-word ids with additive (Laplace, alpha = 1) smoothing:
// log P(c) + sum over feature tokens of log((n_cw + alpha) / (n_c + alpha * V)), V = the number of feature
// ids. Ids that are not features carry no evidence and are skipped: PAD, UNK (a word never seen in training
// says nothing about its class) and, in text_baselines, punctuation.
class MultinomialNaiveBayes {
 public:
  // Every id but PAD and UNK is a feature.
  MultinomialNaiveBayes(int64_t num_classes, int64_t vocab_size, double alpha = 1.0);
  // is_feature[id] says whether id counts (one entry per vocabulary id).
  MultinomialNaiveBayes(int64_t num_classes, std::vector<bool> is_feature, double alpha = 1.0);
  void fit(const std::vector<std::vector<int64_t>>& docs, const std::vector<int64_t>& labels);
  std::vector<double> log_scores(const std::vector<int64_t>& doc) const;  // up to a constant: log P(c, doc)
  int64_t predict(const std::vector<int64_t>& doc) const;  // argmax; ties: the smallest class id

 private:
  int64_t num_classes_, vocab_size_;
  std::vector<bool> is_feature_;
  double alpha_;
  std::vector<double> log_prior_;       // [C]
  std::vector<double> log_likelihood_;  // [C, vocab_size], row-major
};

struct BaselineAccuracy {
  double majority = 0;          // test accuracy of always predicting the majority training label
  double naive_bayes = 0;       // test accuracy of MultinomialNaiveBayes on the full (untruncated) texts
  std::string summary() const;  // "baselines: majority 0.123, naive Bayes 0.606"
};
// Fits both baselines on data.train with the vocabulary's ids and scores them on data.test. By default naive
// Bayes uses the word tokens only (TextVocab::is_word): punctuation runs in e-mail HTML (< > = / ") swamp the
// class evidence, and dropping them reproduces the notes' figures. Measured, words only / with punctuation
// (notes): spam 80/20 seed 0 0.960 / 0.932 (0.960); spam time split 0.843 / 0.851 (0.848); WordNet 90/10
// seed 0 0.596 / 0.605 (0.606).
BaselineAccuracy text_baselines(const TextClassificationData& data, const TextVocab& vocab,
                                bool punctuation_features = false);

}  // namespace loom::data
