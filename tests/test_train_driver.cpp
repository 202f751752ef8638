// The Transformer LM driver end to end on a small text: it learns, and a run stopped and resumed from its
// checkpoint continues exactly as an uninterrupted run (parameters, optimizer state, data order, dropout);
// and the step loop that driver shares with the Reformer and UT drivers, hook by hook.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "loom/loom.h"
#include "loom/models/common/training_loop.h"
#include "loom/models/transformer_lm/train_transformer_lm.h"
#include "support/driver_fixture.h"

using namespace loom;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) { return test::scratch_dir("loom_driver_test_", name); }
std::string write_corpus(const fs::path& dir) { return test::write_small_corpus(dir); }

models::TransformerLmTrainOptions tiny_options(const std::string& data, const fs::path& out) {
  models::TransformerLmTrainOptions o;
  o.data = data;
  o.cache_dir = out.string();
  o.out_dir = out.string();
  o.steps = 24;
  o.batch = 4;
  o.seq = 32;
  o.lr = 3e-3;
  o.warmup = 4;
  o.eval_every = 12;
  o.eval_tokens = 2048;
  o.checkpoint_every = 12;
  o.model.d_model = 32;
  o.model.layers = 2;
  o.model.heads = 2;
  o.model.dropout = 0.1;  // dropout on: the resumed run must redraw the same masks
  return o;
}

}  // namespace

TEST(TransformerLmDriver, ResumedRunEqualsUninterruptedRun) {
  fs::path base = scratch("resume");
  std::string data = write_corpus(base);

  fs::path straight = base / "straight";
  ASSERT_EQ(models::train_transformer_lm(tiny_options(data, straight)), 0);

  fs::path interrupted = base / "interrupted";
  models::TransformerLmTrainOptions first = tiny_options(data, interrupted);
  first.stop_after = 10;  // not a checkpoint_every multiple: the stop itself must checkpoint
  ASSERT_EQ(models::train_transformer_lm(first), 0);
  models::TransformerLmTrainOptions second = tiny_options(data, interrupted);
  second.resume = true;
  ASSERT_EQ(models::train_transformer_lm(second), 0);

  // More than 20 tensors: the parameters and both Adam moments of each.
  ASSERT_NO_FATAL_FAILURE(test::expect_identical_checkpoints(straight / "checkpoint.safetensors",
                                                             interrupted / "checkpoint.safetensors", 20));
}

TEST(TransformerLmDriver, ValidationBitsPerCharacterGoDown) {
  fs::path base = scratch("learns");
  std::string data = write_corpus(base);
  models::TransformerLmTrainOptions o = tiny_options(data, base / "run");
  o.steps = 60;
  o.eval_every = 30;
  ASSERT_EQ(models::train_transformer_lm(o), 0);
  std::ifstream metrics(base / "run" / "metrics.jsonl");
  std::vector<double> valid;
  for (std::string line; std::getline(metrics, line);) {
    if (line.find("\"valid\"") == std::string::npos) continue;
    size_t at = line.find("\"bpc\":");
    ASSERT_NE(at, std::string::npos) << line;
    valid.push_back(std::stod(line.substr(at + 6)));
  }
  ASSERT_EQ(valid.size(), 2u);
  // A uniform guess over the ~30 characters costs about 5 bits; the text is highly repetitive.
  EXPECT_LT(valid[1], valid[0]);
  EXPECT_LT(valid[1], 3.0);
}

TEST(TransformerLmDriver, ResumingWithAnotherConfigurationIsAClearError) {
  fs::path base = scratch("config");
  std::string data = write_corpus(base);
  models::TransformerLmTrainOptions o = tiny_options(data, base / "run");
  o.steps = 2;
  ASSERT_EQ(models::train_transformer_lm(o), 0);
  o.resume = true;
  o.model.heads = 4;
  try {
    models::train_transformer_lm(o);
    FAIL() << "resuming with another head count should fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("heads=2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("heads=4"), std::string::npos) << e.what();
  }
}

// --time-budget: a spent budget stops the run after the step that spent it, which is checkpointed, validated
// and followed by the final test; the spent minutes travel in the checkpoint, so resuming under the same
// budget trains no further, and resuming without one continues to --steps with the clock carried on.
TEST(TransformerLmDriver, TimeBudgetStopsCheckpointsAndCarriesAcrossResume) {
  fs::path base = scratch("budget");
  std::string data = write_corpus(base);
  fs::path out = base / "run";
  models::TransformerLmTrainOptions o = tiny_options(data, out);
  o.time_budget = 1e-9;  // minutes: spent by the first step
  ASSERT_EQ(models::train_transformer_lm(o), 0);
  const fs::path ckpt = out / "checkpoint.safetensors", metrics = out / "metrics.jsonl";
  auto saved = [&] { return load_safetensors_with_metadata(ckpt.string()).metadata; };
  EXPECT_EQ(saved().at("step"), "1");
  const double spent = std::stod(saved().at("train_minutes"));
  EXPECT_GT(spent, 0);
  std::vector<std::string> tests = test::lines_with(metrics, "\"split\":\"test\"");
  ASSERT_EQ(tests.size(), 1u);
  EXPECT_EQ(test::json_field(tests[0], "step"), 1);
  EXPECT_DOUBLE_EQ(test::json_field(tests[0], "train_minutes"), spent);
  ASSERT_EQ(test::lines_with(metrics, "\"split\":\"valid\"").size(), 1u);  // the stop validates too

  o.resume = true;  // the same budget: nothing left to train
  ASSERT_EQ(models::train_transformer_lm(o), 0);
  EXPECT_EQ(saved().at("step"), "1");
  tests = test::lines_with(metrics, "\"split\":\"test\"");
  ASSERT_EQ(tests.size(), 2u);
  EXPECT_EQ(test::json_field(tests[1], "step"), 1);

  o.time_budget = 0;  // no limit: on to --steps, the clock carried on from the first run
  ASSERT_EQ(models::train_transformer_lm(o), 0);
  EXPECT_EQ(saved().at("step"), std::to_string(o.steps));
  EXPECT_GT(std::stod(saved().at("train_minutes")), spent);
  tests = test::lines_with(metrics, "\"split\":\"test\"");
  ASSERT_EQ(tests.size(), 3u);
  EXPECT_EQ(test::json_field(tests[2], "step"), o.steps);
}

// The loop every step-based driver runs (models/common/training_loop.h): which steps validate and checkpoint,
// where --stop-after and a spent budget end it, and that a resumed run starts at its checkpoint's step.
namespace {

struct LoopTrace {
  std::vector<int64_t> trained, validated, saved;
  train::LoopOutcome outcome;
};

LoopTrace trace_loop(const train::LoopSchedule& schedule, double budget_minutes = 0, double carried = 0) {
  LoopTrace t;
  train::TrainingClock clock(budget_minutes, carried);
  train::ProgressBar bar(schedule.steps);
  train::LoopHooks hooks;
  hooks.train_step = [&](int64_t step) { t.trained.push_back(step); };
  hooks.validate = [&](int64_t done) { t.validated.push_back(done); };
  hooks.save = [&](int64_t done) { t.saved.push_back(done); };
  t.outcome = train::run_training_loop(schedule, clock, bar, hooks);
  return t;
}

using Steps = std::vector<int64_t>;

}  // namespace

TEST(TrainingLoop, ValidatesAndCheckpointsOnTheirCadenceAndAfterTheLastStep) {
  LoopTrace t = trace_loop({/*start_step=*/0, /*steps=*/7, /*eval_every=*/3, /*checkpoint_every=*/2, 0});
  EXPECT_EQ(t.trained, (Steps{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(t.validated, (Steps{3, 6, 7}));
  EXPECT_EQ(t.saved, (Steps{2, 4, 6, 7}));
  EXPECT_EQ(t.outcome.last_step, 7);
  EXPECT_EQ(t.outcome.end, train::LoopEnd::kReachedSteps);
}

TEST(TrainingLoop, StopAfterCheckpointsAndReturnsWithoutTheFinalEvaluation) {
  LoopTrace t = trace_loop({0, 7, 3, 4, /*stop_after=*/5});
  EXPECT_EQ(t.trained, (Steps{0, 1, 2, 3, 4}));
  EXPECT_EQ(t.validated, (Steps{3}));
  EXPECT_EQ(t.saved, (Steps{4, 5}));
  EXPECT_EQ(t.outcome.last_step, 5);
  EXPECT_EQ(t.outcome.end, train::LoopEnd::kStoppedAfter);
  // Resumed from step 5: trains 5 and 6 and ends like an uninterrupted run; a --stop-after at the last step
  // is just the end.
  LoopTrace resumed = trace_loop({5, 7, 3, 4, 7});
  EXPECT_EQ(resumed.trained, (Steps{5, 6}));
  EXPECT_EQ(resumed.validated, (Steps{6, 7}));
  EXPECT_EQ(resumed.saved, (Steps{7}));
  EXPECT_EQ(resumed.outcome.end, train::LoopEnd::kReachedSteps);
}

TEST(TrainingLoop, ASpentBudgetEndsAfterTheStepThatSpentItOrBeforeTheFirst) {
  LoopTrace t = trace_loop({0, 7, 3, 4, 0}, /*budget_minutes=*/1e-12);
  EXPECT_EQ(t.trained, (Steps{0}));
  EXPECT_EQ(t.validated, (Steps{1}));
  EXPECT_EQ(t.saved, (Steps{1}));
  EXPECT_EQ(t.outcome.last_step, 1);
  EXPECT_EQ(t.outcome.end, train::LoopEnd::kBudgetSpent);
  // A resumed run whose checkpoint already spent the budget trains nothing and goes to its final evaluation.
  LoopTrace spent = trace_loop({3, 7, 3, 4, 0}, /*budget_minutes=*/1, /*carried=*/1);
  EXPECT_TRUE(spent.trained.empty());
  EXPECT_TRUE(spent.validated.empty());
  EXPECT_TRUE(spent.saved.empty());
  EXPECT_EQ(spent.outcome.last_step, 3);
  EXPECT_EQ(spent.outcome.end, train::LoopEnd::kBudgetSpent);
}

// --profile: the op table of the profiled steps (from the run's second), validation excluded, on stderr and
// in the file the driver names.
TEST(TrainingLoop, ProfileTimesTheOpsOfTheRequestedSteps) {
  const std::string path = ::testing::TempDir() + "/loom_op_profile.txt";
  std::remove(path.c_str());
  train::LoopSchedule schedule{0, 6, 2, 100, 0};
  schedule.profile_steps = 3;
  schedule.profile_path = path;
  train::TrainingClock clock(0.0);
  train::ProgressBar bar(schedule.steps);
  train::LoopHooks hooks;
  Tensor x = randn({16});
  hooks.train_step = [&](int64_t) { exp(x); };
  hooks.validate = [&](int64_t) { neg(x); };
  hooks.save = [](int64_t) {};
  train::run_training_loop(schedule, clock, bar, hooks);
  std::ifstream f(path);
  ASSERT_TRUE(f.good()) << path;
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("op profile of 3 training step(s), from step 2"), std::string::npos) << text;
  // exp ran once in each of steps 2..4; neg (validation) is not counted.
  std::istringstream lines(text);
  std::string line;
  bool exp_seen = false;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string name;
    long long calls = 0;
    fields >> name >> calls;
    if (name == "exp") {
      exp_seen = true;
      EXPECT_EQ(calls, 3) << line;
    }
    EXPECT_NE(name, "neg") << text;
  }
  EXPECT_TRUE(exp_seen) << text;
  // A run that stops before the profiled steps end reports what it profiled.
  std::remove(path.c_str());
  train::LoopSchedule short_run{0, 2, 100, 100, 0};
  short_run.profile_steps = 5;
  short_run.profile_path = path;
  train::ProgressBar bar2(short_run.steps);
  train::run_training_loop(short_run, clock, bar2, hooks);
  std::ifstream g(path);
  std::string text2((std::istreambuf_iterator<char>(g)), std::istreambuf_iterator<char>());
  EXPECT_NE(text2.find("op profile of 1 training step(s), from step 2"), std::string::npos) << text2;
}
