#pragma once
// What a training driver shows and records: a progress line with tokens/s and ETA, and metrics as JSON lines.
#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <string>

#include "loom/core/device.h"

namespace loom::train {

// The device a training driver runs on, from its --device and --threads flags (threads > 0 sets the CPU
// thread pool's size), announced on stderr as one line: "device: cpu, N threads", or "device: cuda:i, " and
// cuda::describe_device (the GPU, and which kernels its float32 attention runs on).
Device open_training_device(const std::string& spec, int threads);

class ProgressBar {
 public:
  explicit ProgressBar(int64_t total_steps);
  // Redraws (at most every 0.2 s on a terminal; every 5% as plain lines otherwise).
  void update(int64_t step, int64_t tokens_done, const std::string& status);
  void finish();

 private:
  int64_t total_;
  bool tty_;
  int64_t last_percent_ = -1;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// Minutes of wall-clock time since t0 (what the drivers report as training time).
inline double minutes_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 60;
}

// Wall-clock time spent in training steps alone (periodic evaluation and checkpoint writes excluded), carried
// across --resume through the checkpoint's metadata, and the --time-budget it is held to: a run whose budget
// is spent stops, checkpoints and runs its final evaluation as if it had reached --steps. This is what
// "trained for two hours" means when two models are compared in equal time.
class TrainingClock {
 public:
  // budget_minutes <= 0: no budget. carried_minutes: what the checkpoint a run resumes from had spent.
  explicit TrainingClock(double budget_minutes = 0, double carried_minutes = 0)
      : budget_(budget_minutes), carried_(carried_minutes) {}
  // The checkpoint metadata key that carries minutes() across --resume.
  static constexpr const char* kMetadataKey = "train_minutes";
  // The clock of a resumed run: the minutes its checkpoint's metadata records (none in checkpoints written
  // before the clock existed: 0).
  static TrainingClock resumed(double budget_minutes, const std::map<std::string, std::string>& metadata);
  void begin_step() { step_start_ = std::chrono::steady_clock::now(); }
  void end_step() { carried_ += minutes_since(step_start_); }
  double minutes() const { return carried_; }
  // minutes() for a checkpoint's metadata, exact when read back with std::stod.
  std::string minutes_text() const;
  bool spent() const { return budget_ > 0 && carried_ >= budget_; }
  double budget_minutes() const { return budget_; }

 private:
  double budget_, carried_;
  std::chrono::steady_clock::time_point step_start_;
};

// Appends one JSON object per line: {"step": 10, "split": "train", "loss": 2.1, ...}.
class MetricsWriter {
 public:
  explicit MetricsWriter(const std::string& path);  // empty path: disabled
  void write(int64_t step, const std::string& split, const std::map<std::string, double>& values);

 private:
  std::ofstream out_;
};

}  // namespace loom::train
