#pragma once
// Learning-rate schedules as pure functions of the step. `step` counts optimizer updates from 1: the value
// for step t is the learning rate of the t-th call to optimizer.step() (step 0, before any update, is allowed
// and gives the warmup schedules' 0). Negative steps are an error.
#include <cstdint>
#include <functional>

namespace loom::nn {

class Optimizer;

// base_lr at every step.
double constant_lr(int64_t step, double base_lr);
// Linear ramp base_lr * step / warmup_steps up to warmup_steps, then base_lr (warmup_steps 0: no ramp).
double linear_warmup_lr(int64_t step, double base_lr, int64_t warmup_steps);
// Linear warmup, then inverse square root decay: base_lr * min(step / warmup, sqrt(warmup / step)), which
// peaks at base_lr at step == warmup_steps (warmup_steps >= 1).
double rsqrt_decay_lr(int64_t step, double base_lr, int64_t warmup_steps);
// The Transformer paper's ("noam") rate: factor * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5); the same
// shape as rsqrt_decay_lr with base_lr = factor / sqrt(d_model * warmup_steps).
double noam_lr(int64_t step, int64_t d_model, int64_t warmup_steps, double factor = 1.0);
// Linear warmup to base_lr over warmup_steps, then half a cosine from base_lr down to min_lr at total_steps,
// and min_lr after that.
double cosine_with_warmup_lr(int64_t step, double base_lr, int64_t warmup_steps, int64_t total_steps,
                             double min_lr = 0.0);

// A schedule bound to its parameters, for code that is handed "a schedule".
using LrSchedule = std::function<double(int64_t step)>;
LrSchedule constant_schedule(double base_lr);
LrSchedule linear_warmup_schedule(double base_lr, int64_t warmup_steps);
LrSchedule rsqrt_decay_schedule(double base_lr, int64_t warmup_steps);
LrSchedule noam_schedule(int64_t d_model, int64_t warmup_steps, double factor = 1.0);
LrSchedule cosine_with_warmup_schedule(double base_lr, int64_t warmup_steps, int64_t total_steps,
                                       double min_lr = 0.0);

// Sets the optimizer's learning rate to schedule(step) and returns it; call before optimizer.step().
double apply_lr(Optimizer& optimizer, const LrSchedule& schedule, int64_t step);

}  // namespace loom::nn
