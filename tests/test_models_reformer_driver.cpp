// `loom train reformer` end to end: a few steps on real text (the KJV that Debian's bible-kjv ships), resuming
// equals an uninterrupted run, the duplication task's Table 2 row, sampling from a run, and clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "loom/loom.h"
#include "loom/models/reformer/train_reformer.h"
#include "support/expect.h"
#include "support/driver_fixture.h"

using namespace loom;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) { return test::scratch_dir("loom_reformer_driver_", name); }
std::string write_corpus(const fs::path& dir) { return test::write_small_corpus(dir); }

// Two layers (local, then LSH) of width 16 on sequences of 64 characters in chunks of 16.
models::ReformerTrainOptions tiny_options(const std::string& data, const fs::path& out) {
  models::ReformerTrainOptions o;
  o.data = data;
  o.cache_dir = out.string();
  o.out_dir = out.string();
  o.steps = 16;
  o.batch = 2;
  o.seq = 64;
  o.lr = 3e-3;
  o.warmup = 4;
  o.eval_every = 8;
  o.eval_tokens = 1024;
  o.checkpoint_every = 8;
  o.sample_chars = 0;
  o.model.d_model = 16;
  o.model.d_ff = 32;
  o.model.layers = 2;
  o.model.heads = 2;
  o.model.head_dim = 8;
  o.model.lsh_chunk = o.model.local_chunk = 16;
  o.model.n_hashes = 2;
  o.model.dropout = 0.1;  // the resumed run must redraw the same masks and rotations
  return o;
}

}  // namespace

// A resumed run reaches exactly the parameters and optimizer state of an uninterrupted one: data order,
// dropout masks and LSH rotations all continue from the checkpointed generator state.
TEST(ReformerDriver, ResumedRunEqualsUninterruptedRun) {
  fs::path base = scratch("resume");
  std::string data = write_corpus(base);
  ASSERT_EQ(models::train_reformer(tiny_options(data, base / "straight")), 0);
  models::ReformerTrainOptions first = tiny_options(data, base / "interrupted");
  first.stop_after = 5;
  ASSERT_EQ(models::train_reformer(first), 0);
  models::ReformerTrainOptions second = tiny_options(data, base / "interrupted");
  second.resume = true;
  ASSERT_EQ(models::train_reformer(second), 0);
  ASSERT_NO_FATAL_FAILURE(test::expect_identical_checkpoints(base / "straight" / "checkpoint.safetensors",
                                                           base / "interrupted" / "checkpoint.safetensors", 30));
  // Resuming another architecture is refused before anything is loaded.
  models::ReformerTrainOptions other = tiny_options(data, base / "interrupted");
  other.resume = true;
  other.model.layers = 3;
  test::expect_error([&] { models::train_reformer(other); }, {"layers=2", "layers=3"});
}

// A few steps on real text: the validation bits-per-character fall and the run can be sampled from.
TEST(ReformerDriver, LearnsOnTheKingJamesBibleAndSamples) {
  fs::path base = scratch("kjv");
  models::ReformerTrainOptions o = tiny_options("kjv", base / "run");
  o.cache_dir = (base / "cache").string();
  o.steps = 60;
  o.eval_every = 30;
  o.batch = 4;
  o.lr = 1e-2;
  o.sample_chars = 20;
  o.model.dropout = 0;
  try {
    ASSERT_EQ(models::train_reformer(o), 0);
  } catch (const Error& e) {
    if (std::string(e.what()).find("bible-kjv") != std::string::npos) GTEST_SKIP() << e.what();
    throw;
  }
  auto valid = test::lines_with(base / "run" / "metrics.jsonl", "\"valid\"");
  ASSERT_EQ(valid.size(), 2u);
  EXPECT_LT(test::json_field(valid[1], "bpc"), test::json_field(valid[0], "bpc"));
  // A uniform guess over the KJV's 63 characters costs 6.0 bits and its unigram frequencies about 4.3; this
  // configuration reached 3.86 when the test was written.
  EXPECT_LT(test::json_field(valid[1], "bpc"), 4.2);
  auto test_line = test::lines_with(base / "run" / "metrics.jsonl", "\"test\"");
  ASSERT_EQ(test_line.size(), 1u);

  models::ReformerSampleOptions s;
  s.run_dir = (base / "run").string();
  s.prompt = "And God said";
  s.chars = 10;
  s.hashes = 4;
  testing::internal::CaptureStdout();
  ASSERT_EQ(models::sample_reformer(s), 0);
  std::string printed = testing::internal::GetCapturedStdout();
  EXPECT_EQ(printed.rfind("And God said", 0), 0u) << printed;
  EXPECT_EQ(printed.size(), std::string("And God said").size() + 10 + 1) << printed;
  s.prompt = "caf\xc3\xa9";
  test::expect_error([&] { models::sample_reformer(s); }, "not in the model's vocabulary");
}

// The duplication task trains, and its final evaluation writes the Table 2 row: full attention and 8/4/2/1
// hash rounds.
TEST(ReformerDriver, DuplicationTaskReportsTheTable2Row) {
  fs::path base = scratch("dup");
  models::ReformerTrainOptions o = tiny_options("", base / "run");
  o.task = "duplication";
  o.w_len = 15;  // L = 32
  o.symbols = 7;
  o.steps = 6;
  o.eval_every = 6;
  o.eval_batches = 2;
  o.model.layers = 1;
  o.model.attention = {"lsh"};
  ASSERT_EQ(models::train_reformer(o), 0);
  auto row = test::lines_with(base / "run" / "metrics.jsonl", "\"test\"");
  ASSERT_EQ(row.size(), 1u);
  for (const char* key : {"full", "lsh-8", "lsh-4", "lsh-2", "lsh-1"}) {
    double acc = test::json_field(row[0], key);
    EXPECT_GE(acc, 0.0);
    EXPECT_LE(acc, 1.0);
  }
  // A duplication checkpoint is not a language model to sample from.
  models::ReformerSampleOptions s;
  s.run_dir = (base / "run").string();
  test::expect_error([&] { models::sample_reformer(s); }, "task 'duplication'");
  // A w whose sequence is not a multiple of the chunk is refused with the fix.
  o.w_len = 16;
  test::expect_error([&] { models::train_reformer(o); }, {"34", "multiple", "--w-len"});
}

TEST(ReformerDriver, BadInputsAreClearErrors) {
  fs::path base = scratch("bad");
  models::ReformerTrainOptions o = tiny_options((base / "missing.txt").string(), base / "run");
  test::expect_error([&] { models::train_reformer(o); }, "missing.txt");
  o = tiny_options(write_corpus(base), base / "run");
  o.task = "translate";
  test::expect_error([&] { models::train_reformer(o); }, {"--task", "translate"});
  o = tiny_options(write_corpus(base), base / "run");
  o.seq = 40;
  test::expect_error([&] { models::train_reformer(o); }, {"40", "multiple", "--seq"});
  o = tiny_options(write_corpus(base), base / "fresh");
  o.resume = true;
  test::expect_error([&] { models::train_reformer(o); }, "no checkpoint");
}
