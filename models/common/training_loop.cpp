#include "loom/models/common/training_loop.h"

#include <cstdio>
#include <fstream>
#include <vector>

#include "loom/autograd/profiler.h"
#include "loom/core/error.h"

namespace loom::train {
namespace {

// The op profile of --profile: steps profiled one at a time (so validation and checkpoints between them are
// not counted) and reported once, merged.
class StepProfile {
 public:
  explicit StepProfile(const LoopSchedule& s)
      : first_(s.start_step + 1), last_(s.start_step + s.profile_steps), path_(s.profile_path) {}
  bool covers(int64_t step) const { return step >= first_ && step <= last_; }
  void add(const std::vector<autograd::ProfileEntry>& step_entries) {
    entries_ = autograd::merge_profiles(entries_, step_entries);
    ++steps_;
  }
  // After the last profiled step, or at the end of a run that stopped before it.
  void report() {
    if (steps_ == 0 || reported_) return;
    reported_ = true;
    const std::string text = "op profile of " + std::to_string(steps_) + " training step(s), from step " +
                             std::to_string(first_ + 1) + ":\n" + autograd::profile_table(entries_);
    std::fprintf(stderr, "\n%s", text.c_str());
    if (path_.empty()) return;
    std::ofstream f(path_);
    LOOM_CHECK(f.good(), "--profile: cannot write the op profile to ", path_);
    f << text;
    LOOM_CHECK(f.good(), "--profile: writing the op profile to ", path_, " failed");
  }
  bool done_after(int64_t step) const { return step == last_; }

 private:
  int64_t first_, last_;
  std::string path_;
  std::vector<autograd::ProfileEntry> entries_;
  int64_t steps_ = 0;
  bool reported_ = false;
};

}  // namespace

LoopOutcome run_training_loop(const LoopSchedule& schedule, TrainingClock& clock, ProgressBar& bar,
                              const LoopHooks& hooks) {
  LOOM_CHECK(schedule.profile_steps >= 0, "--profile must be 0 or more steps, got ", schedule.profile_steps);
  LoopOutcome outcome{schedule.start_step, LoopEnd::kReachedSteps};
  StepProfile profile(schedule);
  for (int64_t step = schedule.start_step; step < schedule.steps; ++step) {
    if (clock.spent()) break;
    clock.begin_step();
    if (profile.covers(step)) {
      autograd::Profiler profiler;
      hooks.train_step(step);
      profiler.stop();
      profile.add(profiler.entries());
    } else {
      hooks.train_step(step);
    }
    clock.end_step();
    if (profile.done_after(step)) profile.report();
    const int64_t done = step + 1;
    outcome.last_step = done;
    const bool last = done == schedule.steps || clock.spent();
    if (done % schedule.eval_every == 0 || last) hooks.validate(done);
    if (done % schedule.checkpoint_every == 0 || last || done == schedule.stop_after) hooks.save(done);
    if (done == schedule.stop_after && done < schedule.steps) {
      bar.finish();
      profile.report();
      std::fprintf(stderr, "stopped after step %lld as asked; continue with --resume\n",
                   static_cast<long long>(done));
      outcome.end = LoopEnd::kStoppedAfter;
      return outcome;
    }
  }
  bar.finish();
  profile.report();
  if (outcome.last_step < schedule.steps) {
    std::fprintf(stderr, "time budget of %g min spent after step %lld; the final evaluation follows\n",
                 clock.budget_minutes(), static_cast<long long>(outcome.last_step));
    outcome.end = LoopEnd::kBudgetSpent;
  }
  return outcome;
}

}  // namespace loom::train
