#pragma once
// What a training driver shows and records: a progress line with tokens/s and ETA, and metrics as JSON lines.
#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <string>

namespace loom::train {

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

// Appends one JSON object per line: {"step": 10, "split": "train", "loss": 2.1, ...}.
class MetricsWriter {
 public:
  explicit MetricsWriter(const std::string& path);  // empty path: disabled
  void write(int64_t step, const std::string& split, const std::map<std::string, double>& values);

 private:
  std::ofstream out_;
};

}  // namespace loom::train
