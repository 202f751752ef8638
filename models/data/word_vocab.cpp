#include "loom/models/data/word_vocab.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "loom/ops/factory.h"

namespace loom::data {

// ---- Labelled texts and splits ----------------------------------------------------------------------------

std::string TextClassificationData::summary() const {
  return detail::concat("dataset ", name, ": ", train.size(), " train / ", test.size(), " test texts, ",
                        num_classes(), " classes (", split, ")");
}

uint64_t SplitMix64::next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::below(uint64_t bound) {
  LOOM_CHECK(bound > 0, "SplitMix64::below: bound must be positive");
  // 2^64 mod bound values at the bottom of the range would make small residues more likely: draw again there.
  uint64_t threshold = (0 - bound) % bound;
  for (;;) {
    uint64_t r = next();
    if (r >= threshold) return r % bound;
  }
}

std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed) {
  LOOM_CHECK(n >= 0, "seeded_permutation: n must be non-negative, got ", n);
  std::vector<int64_t> perm(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) perm[i] = i;
  SplitMix64 rng(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    auto j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(i) + 1));
    std::swap(perm[i], perm[j]);
  }
  return perm;
}

void split_random(TextClassificationData& data, double train_fraction, uint64_t seed) {
  LOOM_CHECK(train_fraction > 0 && train_fraction < 1, "split_random: train_fraction must be in (0, 1), got ",
             train_fraction);
  int64_t n = data.size();
  // The epsilon keeps products like 100 * 0.29 (28.999...) from losing a text to floating point.
  auto n_train = static_cast<int64_t>(std::floor(static_cast<double>(n) * train_fraction + 1e-9));
  LOOM_CHECK(n_train > 0 && n_train < n, "split_random: dataset '", data.name, "' has ", n,
             " texts, too few for a train fraction of ", train_fraction);
  std::vector<int64_t> perm = seeded_permutation(n, seed);
  data.train.assign(perm.begin(), perm.begin() + n_train);
  data.test.assign(perm.begin() + n_train, perm.end());
  std::sort(data.train.begin(), data.train.end());
  std::sort(data.test.begin(), data.test.end());
  int train_pct = static_cast<int>(std::lround(train_fraction * 100));
  data.split = detail::concat("seeded ", train_pct, "/", 100 - train_pct, ", seed ", seed);
}

// ---- Tokenizer --------------------------------------------------------------------------------------------

void for_each_word(std::string_view text, const std::function<void(std::string_view)>& fn) {
  std::string word;
  auto flush = [&] {
    if (!word.empty()) {
      fn(word);
      word.clear();
    }
  };
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    if (c >= 'A' && c <= 'Z') {
      word.push_back(static_cast<char>(c - 'A' + 'a'));
    } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c >= 0x80) {
      word.push_back(ch);
    } else {
      flush();
      if (c > ' ' && c < 0x7f) fn(std::string_view(&ch, 1));  // printable ASCII punctuation
    }
  }
  flush();
}

std::vector<std::string> split_words(std::string_view text) {
  std::vector<std::string> out;
  for_each_word(text, [&](std::string_view w) { out.emplace_back(w); });
  return out;
}

// ---- Vocabulary -------------------------------------------------------------------------------------------

TextVocab::TextVocab() : tokens_{kPadToken, kUnkToken}, counts_{0, 0} {}

TextVocab TextVocab::build(const std::vector<std::string>& texts, const std::vector<int64_t>& indices,
                           const TextVocabOptions& options) {
  LOOM_CHECK(options.min_count >= 1, "TextVocab::build: min_count must be >= 1, got ", options.min_count);
  LOOM_CHECK(options.max_size == 0 || options.max_size >= 2,
             "TextVocab::build: max_size must be 0 (no limit) or >= 2 (PAD and UNK), got ", options.max_size);
  std::unordered_map<std::string, int64_t, Hash, std::equal_to<>> counts;
  for (int64_t i : indices) {
    LOOM_CHECK(i >= 0 && i < static_cast<int64_t>(texts.size()), "TextVocab::build: index ", i,
               " out of range for ", texts.size(), " texts");
    for_each_word(texts[i], [&](std::string_view w) {
      auto it = counts.find(w);
      if (it == counts.end())
        counts.emplace(std::string(w), 1);
      else
        ++it->second;
    });
  }
  std::vector<std::pair<std::string, int64_t>> kept;
  for (auto& [w, c] : counts)
    if (c >= options.min_count) kept.emplace_back(w, c);
  std::sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  if (options.max_size > 0 && static_cast<int64_t>(kept.size()) > options.max_size - 2)
    kept.resize(static_cast<size_t>(options.max_size - 2));
  TextVocab vocab;
  for (auto& [w, c] : kept) {
    vocab.index_.emplace(w, vocab.size());
    vocab.tokens_.push_back(w);
    vocab.counts_.push_back(c);
  }
  return vocab;
}

TextVocab TextVocab::build_all(const std::vector<std::string>& texts, const TextVocabOptions& options) {
  std::vector<int64_t> all(texts.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
  return build(texts, all, options);
}

TextVocab TextVocab::from_tokens(std::vector<std::string> tokens) {
  LOOM_CHECK(tokens.size() >= 2 && tokens[0] == kPadToken && tokens[1] == kUnkToken,
             "TextVocab::from_tokens: the first two tokens must be ", kPadToken, " and ", kUnkToken, " (got ",
             tokens.size(), " tokens)");
  TextVocab vocab;
  vocab.tokens_.clear();
  vocab.counts_.assign(tokens.size(), 0);
  for (size_t i = 0; i < tokens.size(); ++i) {
    LOOM_CHECK(i < 2 || vocab.index_.emplace(tokens[i], static_cast<int64_t>(i)).second,
               "TextVocab::from_tokens: the token '", tokens[i], "' appears twice");
  }
  vocab.tokens_ = std::move(tokens);
  return vocab;
}

int64_t TextVocab::id(std::string_view word) const {
  auto it = index_.find(word);
  return it == index_.end() ? kUnk : it->second;
}

const std::string& TextVocab::token(int64_t id) const {
  LOOM_CHECK(id >= 0 && id < size(), "TextVocab::token: id ", id, " out of range for a vocabulary of ",
             size());
  return tokens_[static_cast<size_t>(id)];
}

bool TextVocab::is_word(int64_t id) const {
  if (id == kPad || id == kUnk) return false;
  auto c = static_cast<unsigned char>(token(id)[0]);  // tokens are a word or one punctuation character
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c >= 0x80;
}

int64_t TextVocab::count(int64_t id) const {
  LOOM_CHECK(id >= 0 && id < size(), "TextVocab::count: id ", id, " out of range for a vocabulary of ",
             size());
  return counts_[static_cast<size_t>(id)];
}

std::vector<int64_t> TextVocab::encode(std::string_view text, int64_t max_len) const {
  LOOM_CHECK(max_len >= 0, "TextVocab::encode: max_len must be >= 0 (0 = no limit), got ", max_len);
  std::vector<int64_t> ids;
  for_each_word(text, [&](std::string_view w) {
    if (max_len == 0 || static_cast<int64_t>(ids.size()) < max_len) ids.push_back(id(w));
  });
  return ids;
}

std::string TextVocab::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  for (int64_t i : ids) {
    if (i == kPad) continue;
    if (!out.empty()) out.push_back(' ');
    out += token(i);
  }
  return out;
}

EncodedBatch TextVocab::encode_batch(const std::vector<std::string>& texts, int64_t max_len) const {
  std::vector<std::vector<int64_t>> rows;
  rows.reserve(texts.size());
  for (const auto& t : texts) rows.push_back(encode(t, max_len));
  return pad_batch(rows);
}

EncodedBatch pad_batch(const std::vector<std::vector<int64_t>>& rows) {
  LOOM_CHECK(!rows.empty(), "pad_batch: the batch has no rows");
  int64_t b = static_cast<int64_t>(rows.size()), s = 1;
  for (const auto& r : rows) s = std::max(s, static_cast<int64_t>(r.size()));
  EncodedBatch batch;
  batch.ids = zeros({b, s}, DType::Int64);  // zero is PAD
  batch.padding_mask = empty({b, s}, DType::Bool);
  int64_t* ids = batch.ids.data<int64_t>();
  bool* mask = batch.padding_mask.data<bool>();
  for (int64_t i = 0; i < b; ++i) {
    const auto& r = rows[static_cast<size_t>(i)];
    auto len = static_cast<int64_t>(r.size());
    for (int64_t j = 0; j < s; ++j) {
      if (j < len) ids[i * s + j] = r[static_cast<size_t>(j)];
      mask[i * s + j] = j >= len;
    }
    batch.lengths.push_back(len);
  }
  return batch;
}

// ---- Baselines --------------------------------------------------------------------------------------------

int64_t majority_class(const std::vector<int64_t>& labels, const std::vector<int64_t>& indices,
                       int64_t num_classes) {
  LOOM_CHECK(num_classes > 0 && !indices.empty(),
             "majority_class: need classes and at least one example, got ", num_classes, " classes and ",
             indices.size(), " examples");
  std::vector<int64_t> counts(static_cast<size_t>(num_classes), 0);
  for (int64_t i : indices) {
    int64_t y = labels.at(static_cast<size_t>(i));
    LOOM_CHECK(y >= 0 && y < num_classes, "majority_class: label ", y, " out of range for ", num_classes,
               " classes");
    ++counts[static_cast<size_t>(y)];
  }
  return std::max_element(counts.begin(), counts.end()) - counts.begin();
}

namespace {

std::vector<bool> all_but_pad_and_unk(int64_t vocab_size) {
  LOOM_CHECK(vocab_size > 2, "MultinomialNaiveBayes: vocab_size must be > 2 (PAD, UNK and a word), got ",
             vocab_size);
  std::vector<bool> f(static_cast<size_t>(vocab_size), true);
  f[TextVocab::kPad] = f[TextVocab::kUnk] = false;
  return f;
}

}  // namespace

MultinomialNaiveBayes::MultinomialNaiveBayes(int64_t num_classes, int64_t vocab_size, double alpha)
    : MultinomialNaiveBayes(num_classes, all_but_pad_and_unk(vocab_size), alpha) {}

MultinomialNaiveBayes::MultinomialNaiveBayes(int64_t num_classes, std::vector<bool> is_feature, double alpha)
    : num_classes_(num_classes),
      vocab_size_(static_cast<int64_t>(is_feature.size())),
      is_feature_(std::move(is_feature)),
      alpha_(alpha) {
  LOOM_CHECK(num_classes > 0 && alpha > 0, "MultinomialNaiveBayes: need num_classes > 0 and alpha > 0, got ",
             num_classes, " and ", alpha);
  LOOM_CHECK(std::find(is_feature_.begin(), is_feature_.end(), true) != is_feature_.end(),
             "MultinomialNaiveBayes: none of the ", vocab_size_, " vocabulary ids is a feature");
}

void MultinomialNaiveBayes::fit(const std::vector<std::vector<int64_t>>& docs,
                                const std::vector<int64_t>& labels) {
  LOOM_CHECK(docs.size() == labels.size() && !docs.empty(), "MultinomialNaiveBayes::fit: ", docs.size(),
             " documents but ", labels.size(), " labels");
  auto c_n = static_cast<size_t>(num_classes_), v_n = static_cast<size_t>(vocab_size_);
  std::vector<double> doc_count(c_n, 0), word_total(c_n, 0), word_count(c_n * v_n, 0);
  for (size_t d = 0; d < docs.size(); ++d) {
    int64_t y = labels[d];
    LOOM_CHECK(y >= 0 && y < num_classes_, "MultinomialNaiveBayes::fit: label ", y, " out of range for ",
               num_classes_, " classes");
    doc_count[y] += 1;
    for (int64_t w : docs[d]) {
      LOOM_CHECK(w >= 0 && w < vocab_size_, "MultinomialNaiveBayes::fit: token id ", w,
                 " out of range for a vocabulary of ", vocab_size_);
      if (!is_feature_[w]) continue;
      word_count[y * v_n + w] += 1;
      word_total[y] += 1;
    }
  }
  auto n_features = static_cast<double>(std::count(is_feature_.begin(), is_feature_.end(), true));
  log_prior_.assign(c_n, 0);
  log_likelihood_.assign(c_n * v_n, 0);
  for (size_t c = 0; c < c_n; ++c) {
    // A class absent from training gets prior 0 (log -inf), so it is never predicted, as in scikit-learn.
    log_prior_[c] = std::log(doc_count[c] / static_cast<double>(docs.size()));
    double log_denominator = std::log(word_total[c] + alpha_ * n_features);
    for (size_t w = 0; w < v_n; ++w)
      if (is_feature_[w])
        log_likelihood_[c * v_n + w] = std::log(word_count[c * v_n + w] + alpha_) - log_denominator;
  }
}

std::vector<double> MultinomialNaiveBayes::log_scores(const std::vector<int64_t>& doc) const {
  LOOM_CHECK(!log_prior_.empty(), "MultinomialNaiveBayes::log_scores: call fit first");
  auto v_n = static_cast<size_t>(vocab_size_);
  std::vector<double> scores = log_prior_;
  for (int64_t w : doc) {
    LOOM_CHECK(w >= 0 && w < vocab_size_, "MultinomialNaiveBayes::log_scores: token id ", w,
               " out of range for a vocabulary of ", vocab_size_);
    if (!is_feature_[w]) continue;
    for (size_t c = 0; c < scores.size(); ++c) scores[c] += log_likelihood_[c * v_n + w];
  }
  return scores;
}

int64_t MultinomialNaiveBayes::predict(const std::vector<int64_t>& doc) const {
  std::vector<double> s = log_scores(doc);
  return std::max_element(s.begin(), s.end()) - s.begin();
}

std::string BaselineAccuracy::summary() const {
  char buf[96];
  std::snprintf(buf, sizeof(buf), "baselines: majority %.3f, naive Bayes %.3f", majority, naive_bayes);
  return buf;
}

BaselineAccuracy text_baselines(const TextClassificationData& data, const TextVocab& vocab,
                                bool punctuation_features) {
  LOOM_CHECK(!data.train.empty() && !data.test.empty(), "text_baselines: dataset '", data.name,
             "' needs a train and a test split, got ", data.train.size(), " and ", data.test.size(),
             " texts");
  auto encode = [&](const std::vector<int64_t>& idx, std::vector<std::vector<int64_t>>& docs,
                    std::vector<int64_t>& labels) {
    for (int64_t i : idx) {
      docs.push_back(vocab.encode(data.texts[static_cast<size_t>(i)]));
      labels.push_back(data.labels[static_cast<size_t>(i)]);
    }
  };
  std::vector<std::vector<int64_t>> train_docs, test_docs;
  std::vector<int64_t> train_labels, test_labels;
  encode(data.train, train_docs, train_labels);
  encode(data.test, test_docs, test_labels);

  BaselineAccuracy acc;
  int64_t majority = majority_class(data.labels, data.train, data.num_classes());
  std::vector<bool> features(static_cast<size_t>(vocab.size()));
  for (int64_t id = 0; id < vocab.size(); ++id)
    features[id] =
        vocab.is_word(id) || (punctuation_features && id != TextVocab::kPad && id != TextVocab::kUnk);
  MultinomialNaiveBayes nb(data.num_classes(), std::move(features));
  nb.fit(train_docs, train_labels);
  int64_t hit_majority = 0, hit_nb = 0;
  for (size_t i = 0; i < test_docs.size(); ++i) {
    hit_majority += test_labels[i] == majority;
    hit_nb += nb.predict(test_docs[i]) == test_labels[i];
  }
  auto n = static_cast<double>(test_docs.size());
  acc.majority = static_cast<double>(hit_majority) / n;
  acc.naive_bayes = static_cast<double>(hit_nb) / n;
  return acc;
}

}  // namespace loom::data
