#pragma once
// The step loop that the step-based drivers (transformer, reformer, ut) share: where a run starts (0, or the
// step its checkpoint recorded), --steps, --time-budget, --stop-after and the validation / checkpoint
// cadence. One place decides when a run validates, saves and stops, so every model's driver behaves the same
// way.
#include <cstdint>
#include <functional>
#include <string>

#include "loom/models/common/training_log.h"

namespace loom::train {

struct LoopSchedule {
  int64_t start_step = 0;        // steps already done (a resumed run)
  int64_t steps = 0;             // --steps: the last step
  int64_t eval_every = 1;        // validation after every eval_every-th step, and after the last one
  int64_t checkpoint_every = 1;  // checkpoint after every checkpoint_every-th step, and after the last one
  int64_t stop_after = 0;        // --stop-after: checkpoint and return after this step (0: never)
  // --profile: time the ops of this many training steps (autograd::Profiler), starting with the run's second
  // step (the first also allocates the caches), validation and checkpoints excluded; the op table goes to
  // stderr and, when profile_path is set, to that file.
  int64_t profile_steps = 0;
  std::string profile_path = {};
};

enum class LoopEnd {
  kReachedSteps,  // ran to --steps (or the checkpoint already had): the final evaluation follows
  kBudgetSpent,   // --time-budget used up before --steps: the final evaluation follows as well
  kStoppedAfter,  // --stop-after: checkpointed, to be continued with --resume; no final evaluation
};

struct LoopOutcome {
  int64_t last_step = 0;  // steps done when the loop returned
  LoopEnd end = LoopEnd::kReachedSteps;
};

struct LoopHooks {
  // One training step, step counted from 0 (batch, forward, backward, optimizer, its logging): the time it
  // takes is what `clock` counts against the budget.
  std::function<void(int64_t step)> train_step;
  // Validation and checkpoint after `done` steps (not counted by the clock).
  std::function<void(int64_t done)> validate;
  std::function<void(int64_t done)> save;
};

// Runs steps start_step .. steps - 1 unless the clock's budget is spent first (a resumed run's may be spent
// before the first). After a step, it validates and checkpoints on their cadence and whenever the run ends
// there (the last step, a spent budget, --stop-after, which also returns). Finishes `bar` and says on stderr
// why a run ended before --steps.
LoopOutcome run_training_loop(const LoopSchedule& schedule, TrainingClock& clock, ProgressBar& bar,
                              const LoopHooks& hooks);

}  // namespace loom::train
