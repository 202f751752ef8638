// The models' data: the GCIDE character corpus (zlib decompression, cache, encoding, split) and the Reformer
// duplication task (sequence layout, loss mask, Philox reproducibility, masked accuracy).
#include <gtest/gtest.h>
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "loom/loom.h"
#include "loom/models/data/duplication_task.h"
#include "loom/models/data/text_corpus.h"
#include "support/expect.h"

using namespace loom;
using test::expect_error;
namespace fs = std::filesystem;

namespace {

// What `zcat /usr/share/dictd/gcide.dict.dz | head -c 92` prints (dict-gcide 0.48.5), and how the file ends.
const std::string kGcideHead =
    "\n\n00-database-url\n   ftp://ftp.gnu.org/gnu/gcide\n\n00-database-short\n   The Collaborative "
    "International";
const std::string kGcideTail = "Written also {zythem}.]\n   [1913 Webster]";
constexpr int64_t kGcideBytes = 39'952'321;

fs::path scratch(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("loom_models_data_test_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

bool have_gcide() { return fs::exists(data::kGcideDictPath); }

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Maps token ids back to bytes through the corpus vocabulary.
std::string decode(const data::TextCorpus& c, const Tensor& ids) {
  std::string s;
  for (int64_t id : ids.contiguous().to_vector<int64_t>()) s.push_back(static_cast<char>(c.vocab.at(id)));
  return s;
}

}  // namespace

// A gzip file made here goes through the same zlib path as the package's dictzip file, so decompression and
// the cache are tested on every machine, with or without dict-gcide.
TEST(GcideText, DecompressesAGzipFileAndCachesIt) {
  fs::path dir = scratch("tiny");
  std::string text;
  for (int i = 0; i < 3000; ++i) text += "entry " + std::to_string(i * 7919 % 1000) + ": a definition.\n";
  fs::path gz = dir / "tiny.dict.dz";
  gzFile out = gzopen(gz.c_str(), "wb9");
  ASSERT_NE(out, nullptr);
  ASSERT_EQ(gzwrite(out, text.data(), static_cast<unsigned>(text.size())), static_cast<int>(text.size()));
  ASSERT_EQ(gzclose(out), Z_OK);
  ASSERT_LT(fs::file_size(gz), text.size() / 4);  // really compressed, so a raw copy could not pass

  fs::path cache = dir / "cache";
  EXPECT_TRUE(data::load_gcide_text(cache.string(), gz.string()) == text);  // no 60 KB dump on failure
  ASSERT_TRUE(fs::exists(cache / "tiny.txt"));  // named after the dict file up to its first dot
  EXPECT_TRUE(slurp(cache / "tiny.txt") == text);
  EXPECT_FALSE(fs::exists(cache / "tiny.txt.tmp"));

  // The second load reads the cache, not the dict file: change the cache and the load follows it.
  std::ofstream(cache / "tiny.txt", std::ios::binary) << "edited cache";
  EXPECT_EQ(data::load_gcide_text(cache.string(), gz.string()), "edited cache");
  fs::remove_all(dir);
}

TEST(GcideText, MissingOrBrokenFilesAreClearErrors) {
  fs::path dir = scratch("errors");
  std::string missing = (dir / "nowhere" / "gcide.dict.dz").string();
  expect_error([&] { data::load_gcide_text(dir.string(), missing); },
               {"text corpus 'gcide'", missing, "not found", "apt-get install dict-gcide"});
  EXPECT_FALSE(fs::exists(dir / "gcide.txt"));

  // A gzip stream cut short: zlib reports the end of input, and no cache is written.
  std::string text(200000, 'x');
  for (size_t i = 0; i < text.size(); ++i) text[i] = static_cast<char>('a' + (i * i * 31 + i / 7) % 26);
  fs::path whole = dir / "whole.dz";
  gzFile out = gzopen(whole.c_str(), "wb");
  ASSERT_NE(out, nullptr);
  gzwrite(out, text.data(), static_cast<unsigned>(text.size()));
  gzclose(out);
  std::string bytes = slurp(whole);
  fs::path cut = dir / "cut.dict.dz";
  std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  expect_error([&] { data::load_gcide_text(dir.string(), cut.string()); },
               {"text corpus 'gcide': failed decompressing", cut.string()});
  EXPECT_FALSE(fs::exists(dir / "cut.txt"));
  fs::remove_all(dir);
}

TEST(GcideText, LoadsThePackagedDictionaryAndCachesIt) {
  if (!have_gcide()) GTEST_SKIP() << data::kGcideDictPath << " absent: install Debian's dict-gcide package";
  fs::path dir = scratch("gcide_text");
  auto t0 = std::chrono::steady_clock::now();
  std::string text = data::load_gcide_text(dir.string());
  double first = seconds_since(t0);
  ASSERT_EQ(static_cast<int64_t>(text.size()), kGcideBytes);
  EXPECT_EQ(text.substr(0, kGcideHead.size()), kGcideHead);
  EXPECT_EQ(text.substr(text.size() - kGcideTail.size()), kGcideTail);
  ASSERT_TRUE(fs::exists(dir / "gcide.txt"));
  EXPECT_EQ(static_cast<int64_t>(fs::file_size(dir / "gcide.txt")), kGcideBytes);

  t0 = std::chrono::steady_clock::now();
  std::string again = data::load_gcide_text(dir.string());
  double cached = seconds_since(t0);
  EXPECT_TRUE(again == text);
  std::printf("gcide: decompressed in %.3f s, read from the cache in %.3f s\n", first, cached);
  fs::remove_all(dir);
}

TEST(TextCorpus, GcideIsAByteCorpusWithThe90_5_5Split) {
  if (!have_gcide()) GTEST_SKIP() << data::kGcideDictPath << " absent: install Debian's dict-gcide package";
  fs::path dir = scratch("gcide_corpus");
  auto t0 = std::chrono::steady_clock::now();
  data::TextCorpus c = data::load_text_corpus("gcide", dir.string());
  double first = seconds_since(t0);
  EXPECT_EQ(c.name, "gcide");
  EXPECT_EQ(c.train.numel() + c.valid.numel() + c.test.numel(), kGcideBytes);
  EXPECT_EQ(c.train.numel(), 35'957'088);
  EXPECT_EQ(c.valid.numel(), 1'997'616);
  EXPECT_EQ(c.test.numel(), 1'997'617);
  EXPECT_EQ(c.train.dtype(), DType::Int64);
  // 99 distinct bytes: newline, the printable ASCII range but for a few, and three Latin-1 bytes.
  ASSERT_EQ(c.vocab_size(), 99);
  EXPECT_EQ(c.vocab.front(), '\n');
  EXPECT_EQ(c.vocab[1], ' ');
  EXPECT_EQ(c.vocab.back(), 231);
  EXPECT_EQ(c.vocab[c.vocab.size() - 3], 146);
  EXPECT_EQ(c.summary(),
            "corpus gcide: 35957088 train / 1997616 valid / 1997617 test characters, vocabulary 99");
  // The ids decode back to the text at both ends and across the train/valid boundary.
  EXPECT_EQ(decode(c, c.train.narrow(0, 0, static_cast<int64_t>(kGcideHead.size()))), kGcideHead);
  EXPECT_EQ(decode(c, c.test.narrow(0, c.test.numel() - static_cast<int64_t>(kGcideTail.size()),
                                    static_cast<int64_t>(kGcideTail.size()))),
            kGcideTail);
  std::string text = slurp(dir / "gcide.txt");
  EXPECT_EQ(decode(c, c.train.narrow(0, c.train.numel() - 50, 50)) + decode(c, c.valid.narrow(0, 0, 50)),
            text.substr(35'957'088 - 50, 100));
  EXPECT_EQ(amax(c.train).item<int64_t>(), 98);  // ids run to the vocabulary size, not beyond

  t0 = std::chrono::steady_clock::now();
  data::TextCorpus again = data::load_text_corpus("gcide", dir.string());
  double cached = seconds_since(t0);
  EXPECT_TRUE(test::identical(again.test, c.test));
  std::printf("gcide corpus: first load %.3f s, cached load %.3f s\n", first, cached);
  fs::remove_all(dir);
}

// A path source goes through the same reader, table and split (the reader is shared with the caches).
TEST(TextCorpus, APathSourceIsReadWhole) {
  fs::path dir = scratch("path");
  std::string text;
  for (int i = 0; i < 2000; ++i) text.push_back("abcab\n"[i % 6]);
  text[1234] = static_cast<char>(200);
  std::ofstream(dir / "t.txt", std::ios::binary) << text;
  data::TextCorpus c = data::load_text_corpus((dir / "t.txt").string(), dir.string());
  EXPECT_EQ(c.train.numel(), 1800);
  EXPECT_EQ(c.valid.numel(), 100);
  EXPECT_EQ(c.test.numel(), 100);
  EXPECT_EQ(c.vocab, (std::vector<unsigned char>{'\n', 'a', 'b', 'c', 200}));
  EXPECT_EQ(decode(c, c.train) + decode(c, c.valid) + decode(c, c.test), text);
  std::string missing = (dir / "none.txt").string();
  expect_error([&] { data::load_text_corpus(missing, dir.string()); },
               {"text corpus", "cannot open", missing});
  fs::remove_all(dir);
}

// --- The duplication task ---------------------------------------------------------------------------------

TEST(DuplicationTask, LayoutOfASmallBatch) {
  // w_len 2: s = [0, a, b, 0, a, b]; inputs = [0, 0, a, b, 0, a]; targets = [-100 x4, a, b].
  PhiloxState st{11, 3};
  data::DuplicationBatch d = data::make_duplication_batch(3, 2, 5, st);
  ASSERT_EQ(d.inputs.shape(), Shape({3, 6}));
  ASSERT_EQ(d.targets.shape(), Shape({3, 6}));
  EXPECT_EQ(d.inputs.dtype(), DType::Int64);
  EXPECT_EQ(d.targets.dtype(), DType::Int64);
  auto x = d.inputs.to_vector<int64_t>(), y = d.targets.to_vector<int64_t>();
  // The symbols are randint(1, 6)'s from the same Philox state (the mapping randint documents).
  std::vector<int64_t> w;
  {
    GeneratorStateGuard at(st);
    w = randint(1, 6, {3, 2}).to_vector<int64_t>();
  }
  for (int b = 0; b < 3; ++b) {
    int64_t a = w[2 * b], c = w[2 * b + 1];
    std::vector<int64_t> want_x{0, 0, a, c, 0, a}, want_y{-100, -100, -100, -100, a, c};
    EXPECT_EQ(std::vector<int64_t>(x.begin() + 6 * b, x.begin() + 6 * b + 6), want_x) << "row " << b;
    EXPECT_EQ(std::vector<int64_t>(y.begin() + 6 * b, y.begin() + 6 * b + 6), want_y) << "row " << b;
  }
}

TEST(DuplicationTask, SecondHalfCopiesTheFirstAndOnlyItIsScored) {
  const int64_t B = 4, w_len = 127, L = 256;
  data::DuplicationBatch d = data::make_duplication_batch(B, w_len, 127, {2024, 0});
  ASSERT_EQ(d.inputs.shape(), Shape({B, L}));
  auto x = d.inputs.to_vector<int64_t>(), y = d.targets.to_vector<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    const int64_t* xi = x.data() + b * L;
    const int64_t* yi = y.data() + b * L;
    // inputs = [0, s[0 .. L-2]] with s = [0, w, 0, w]: zeros exactly at 0, 1 and w_len + 2.
    for (int64_t p = 0; p < L; ++p)
      EXPECT_EQ(xi[p] == 0, p == 0 || p == 1 || p == w_len + 2) << "row " << b << " position " << p;
    // Its second w lacks the last symbol, which only the targets hold.
    for (int64_t i = 0; i + 1 < w_len; ++i) EXPECT_EQ(xi[w_len + 3 + i], xi[2 + i]);
    // The mask covers exactly the first w_len + 2 targets; the rest is the second w, which equals the first.
    for (int64_t p = 0; p < L; ++p)
      EXPECT_EQ(yi[p] == -100, p < w_len + 2) << "row " << b << " position " << p;
    for (int64_t i = 0; i < w_len; ++i)
      EXPECT_EQ(yi[w_len + 2 + i], xi[2 + i]) << "row " << b << " symbol " << i;
    // targets are the inputs shifted left by one where scored.
    for (int64_t p = w_len + 2; p + 1 < L; ++p) EXPECT_EQ(yi[p], xi[p + 1]);
  }
  Tensor mask = eq(d.targets, -100.0);
  EXPECT_EQ(sum(mask.to(DType::Int64)).item<int64_t>(), B * (w_len + 2));
}

TEST(DuplicationTask, SymbolsCoverOneToNUniformly) {
  const int64_t B = 64, w_len = 127, n = 127, L = 2 * w_len + 2;
  data::DuplicationBatch d = data::make_duplication_batch(B, w_len, n, {5, 100});
  auto x = d.inputs.to_vector<int64_t>();
  std::vector<int64_t> count(n + 1, 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < w_len; ++i) {
      int64_t s = x[b * L + 2 + i];
      ASSERT_GE(s, 1);
      ASSERT_LE(s, n);
      ++count[s];
    }
  // 8128 draws: 64 expected per symbol, standard deviation 8; every symbol, 1 and n included, within 5 sigma.
  for (int64_t s = 1; s <= n; ++s) {
    EXPECT_GT(count[s], 24) << "symbol " << s;
    EXPECT_LT(count[s], 104) << "symbol " << s;
  }
  // One symbol: w is all ones.
  data::DuplicationBatch one = data::make_duplication_batch(2, 9, 1, {5, 100});
  EXPECT_EQ(sum(eq(one.inputs, 1.0).to(DType::Int64)).item<int64_t>(), 2 * (9 + 8));
}

TEST(DuplicationTask, ThePhiloxStateDeterminesTheBatch) {
  auto make = [](int64_t batch, PhiloxState st) { return data::make_duplication_batch(batch, 16, 127, st); };
  data::DuplicationBatch a = make(4, {9, 40}), b = make(4, {9, 40});
  EXPECT_TRUE(test::identical(a.inputs, b.inputs));
  EXPECT_TRUE(test::identical(a.targets, b.targets));
  EXPECT_FALSE(test::identical(a.inputs, make(4, {10, 40}).inputs));  // another seed
  EXPECT_FALSE(test::identical(a.inputs, make(4, {9, 41}).inputs));   // another offset
  // duplication_counters() is what one batch consumes: a batch of 2 is the batches of 1 at offsets o and
  // o + duplication_counters(1, 16), so stepping the offset by it never reuses a draw.
  EXPECT_EQ(data::duplication_counters(1, 16), 8u);
  EXPECT_EQ(data::duplication_counters(3, 5), 8u);
  data::DuplicationBatch two = make(2, {9, 40});
  data::DuplicationBatch r0 = make(1, {9, 40}), r1 = make(1, {9, 40 + data::duplication_counters(1, 16)});
  EXPECT_TRUE(test::identical(two.inputs.narrow(0, 0, 1), r0.inputs));
  EXPECT_TRUE(test::identical(two.inputs.narrow(0, 1, 1), r1.inputs));
}

TEST(DuplicationTask, BadArgumentsAreErrors) {
  expect_error([] { data::make_duplication_batch(0, 4, 10, {}); }, {"make_duplication_batch", "batch 0"});
  expect_error([] { data::make_duplication_batch(2, 0, 10, {}); }, {"make_duplication_batch", "w_len 0"});
  expect_error([] { data::make_duplication_batch(2, 4, 0, {}); }, {"make_duplication_batch", "n_symbols 0"});
  expect_error([] { data::make_duplication_batch(2, -3, 10, {}); }, {"make_duplication_batch", "w_len -3"});
}

TEST(DuplicationTask, MaskedAccuracyScoresOnlyTheSecondCopy) {
  const int64_t B = 3, w_len = 10, L = 22;
  data::DuplicationBatch d = data::make_duplication_batch(B, w_len, 7, {1, 0});
  auto x = d.inputs.to_vector<int64_t>();
  // The copying oracle: target p (p > w_len + 1) is input p - w_len. Before that it guesses 0.
  std::vector<int64_t> oracle(B * L, 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t p = w_len + 2; p < L; ++p) oracle[b * L + p] = x[b * L + p - w_len];
  Tensor pred = tensor(oracle, {B, L});
  EXPECT_DOUBLE_EQ(data::masked_accuracy(pred, d.targets), 1.0);
  // Through argmax of one-hot logits, as a model's caller does it.
  Tensor logits = one_hot(pred, 8).to(DType::Float32);
  EXPECT_DOUBLE_EQ(data::masked_accuracy(argmax(logits, -1), d.targets), 1.0);
  // Wrong guesses on ignored positions do not count; 3 of the 30 scored ones wrong gives 0.9.
  oracle[0] = 5;
  oracle[L + 3] = 6;
  oracle[w_len + 2] = 0;
  oracle[L + w_len + 5] = 0;
  oracle[2 * L + L - 1] = 0;
  EXPECT_DOUBLE_EQ(data::masked_accuracy(tensor(oracle, {B, L}), d.targets), 27.0 / 30.0);
  // Predicting the inputs themselves (no copy) scores only by chance, far below 1.
  EXPECT_LT(data::masked_accuracy(d.inputs, d.targets), 0.5);

  expect_error([&] { data::masked_accuracy(logits, d.targets); }, {"masked_accuracy", "integral", "float32"});
  expect_error([&] { data::masked_accuracy(pred.narrow(1, 0, 5), d.targets); },
               {"masked_accuracy", "[3, 5]", "[3, 22]"});
  Tensor all_ignored = full({2, 4}, -100.0, DType::Int64);
  expect_error([&] { data::masked_accuracy(all_ignored, all_ignored); },
               {"masked_accuracy", "nothing to score"});
}
