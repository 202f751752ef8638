#include "loom/models/common/training_loop.h"

#include <cstdio>

namespace loom::train {

LoopOutcome run_training_loop(const LoopSchedule& schedule, TrainingClock& clock, ProgressBar& bar,
                              const LoopHooks& hooks) {
  LoopOutcome outcome{schedule.start_step, LoopEnd::kReachedSteps};
  for (int64_t step = schedule.start_step; step < schedule.steps; ++step) {
    if (clock.spent()) break;
    clock.begin_step();
    hooks.train_step(step);
    clock.end_step();
    const int64_t done = step + 1;
    outcome.last_step = done;
    const bool last = done == schedule.steps || clock.spent();
    if (done % schedule.eval_every == 0 || last) hooks.validate(done);
    if (done % schedule.checkpoint_every == 0 || last || done == schedule.stop_after) hooks.save(done);
    if (done == schedule.stop_after && done < schedule.steps) {
      bar.finish();
      std::fprintf(stderr, "stopped after step %lld as asked; continue with --resume\n",
                   static_cast<long long>(done));
      outcome.end = LoopEnd::kStoppedAfter;
      return outcome;
    }
  }
  bar.finish();
  if (outcome.last_step < schedule.steps) {
    std::fprintf(stderr, "time budget of %g min spent after step %lld; the final evaluation follows\n",
                 clock.budget_minutes(), static_cast<long long>(outcome.last_step));
    outcome.end = LoopEnd::kBudgetSpent;
  }
  return outcome;
}

}  // namespace loom::train
