// Learning-rate schedules.
#include "loom/nn/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "loom/core/error.h"
#include "loom/nn/optim.h"

namespace loom::nn {
namespace {

void check_step(const char* fn, int64_t step) { LOOM_CHECK(step >= 0, fn, ": step must be >= 0, got ", step); }

}  // namespace

double constant_lr(int64_t step, double base_lr) {
  check_step("constant_lr", step);
  return base_lr;
}

double linear_warmup_lr(int64_t step, double base_lr, int64_t warmup_steps) {
  check_step("linear_warmup_lr", step);
  LOOM_CHECK(warmup_steps >= 0, "linear_warmup_lr: warmup_steps must be >= 0, got ", warmup_steps);
  if (step >= warmup_steps) return base_lr;
  return base_lr * static_cast<double>(step) / static_cast<double>(warmup_steps);
}

double rsqrt_decay_lr(int64_t step, double base_lr, int64_t warmup_steps) {
  check_step("rsqrt_decay_lr", step);
  LOOM_CHECK(warmup_steps >= 1, "rsqrt_decay_lr: warmup_steps must be >= 1, got ", warmup_steps);
  double s = static_cast<double>(step), w = static_cast<double>(warmup_steps);
  return step <= warmup_steps ? base_lr * s / w : base_lr * std::sqrt(w / s);
}

double noam_lr(int64_t step, int64_t d_model, int64_t warmup_steps, double factor) {
  check_step("noam_lr", step);
  LOOM_CHECK(d_model >= 1 && warmup_steps >= 1, "noam_lr: d_model and warmup_steps must be >= 1, got ", d_model,
             " and ", warmup_steps);
  if (step == 0) return 0.0;
  double s = static_cast<double>(step), w = static_cast<double>(warmup_steps);
  return factor / std::sqrt(static_cast<double>(d_model)) * std::min(1.0 / std::sqrt(s), s * std::pow(w, -1.5));
}

double cosine_with_warmup_lr(int64_t step, double base_lr, int64_t warmup_steps, int64_t total_steps,
                             double min_lr) {
  check_step("cosine_with_warmup_lr", step);
  LOOM_CHECK(warmup_steps >= 0 && total_steps >= warmup_steps, "cosine_with_warmup_lr: need 0 <= warmup_steps (",
             warmup_steps, ") <= total_steps (", total_steps, ")");
  if (step < warmup_steps) return base_lr * static_cast<double>(step) / static_cast<double>(warmup_steps);
  if (step >= total_steps) return total_steps == warmup_steps ? base_lr : min_lr;
  double progress = static_cast<double>(step - warmup_steps) / static_cast<double>(total_steps - warmup_steps);
  return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

LrSchedule constant_schedule(double base_lr) {
  return [=](int64_t step) { return constant_lr(step, base_lr); };
}

LrSchedule linear_warmup_schedule(double base_lr, int64_t warmup_steps) {
  linear_warmup_lr(0, base_lr, warmup_steps);  // reject bad arguments now rather than at the first step
  return [=](int64_t step) { return linear_warmup_lr(step, base_lr, warmup_steps); };
}

LrSchedule rsqrt_decay_schedule(double base_lr, int64_t warmup_steps) {
  rsqrt_decay_lr(0, base_lr, warmup_steps);
  return [=](int64_t step) { return rsqrt_decay_lr(step, base_lr, warmup_steps); };
}

LrSchedule noam_schedule(int64_t d_model, int64_t warmup_steps, double factor) {
  noam_lr(0, d_model, warmup_steps, factor);
  return [=](int64_t step) { return noam_lr(step, d_model, warmup_steps, factor); };
}

LrSchedule cosine_with_warmup_schedule(double base_lr, int64_t warmup_steps, int64_t total_steps, double min_lr) {
  cosine_with_warmup_lr(0, base_lr, warmup_steps, total_steps, min_lr);
  return [=](int64_t step) { return cosine_with_warmup_lr(step, base_lr, warmup_steps, total_steps, min_lr); };
}

double apply_lr(Optimizer& optimizer, const LrSchedule& schedule, int64_t step) {
  LOOM_CHECK(schedule != nullptr, "apply_lr: the schedule is empty");
  double lr = schedule(step);
  optimizer.set_lr(lr);
  return lr;
}

}  // namespace loom::nn
