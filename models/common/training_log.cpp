#include "loom/models/common/training_log.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "loom/core/error.h"
#include "loom/core/parallel.h"
#ifdef LOOM_WITH_CUDA
#include "loom/cuda/cuda_backend.h"
#endif

namespace loom::train {

Device open_training_device(const std::string& spec, int threads) {
  const Device device(spec);
  if (threads > 0) set_num_threads(threads);
  std::string line = device.str();
  if (device.is_cpu()) {
    const int n = get_num_threads();
    line += ", " + std::to_string(n) + (n == 1 ? " thread" : " threads");
  } else {
#ifdef LOOM_WITH_CUDA
    line += ", " + cuda::describe_device(device.index);
#endif
  }
  std::fprintf(stderr, "device: %s\n", line.c_str());
  return device;
}

ProgressBar::ProgressBar(int64_t total_steps)
    : total_(std::max<int64_t>(total_steps, 1)),
      tty_(isatty(fileno(stderr)) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

void ProgressBar::update(int64_t step, int64_t tokens_done, const std::string& status) {
  auto now = std::chrono::steady_clock::now();
  double elapsed = std::chrono::duration<double>(now - start_).count();
  int64_t percent = step * 100 / total_;
  if (tty_ ? std::chrono::duration<double>(now - last_draw_).count() < 0.2 && step < total_
           : percent / 5 == last_percent_ / 5) {
    return;
  }
  last_draw_ = now;
  last_percent_ = percent;
  double tok_s = elapsed > 0 ? static_cast<double>(tokens_done) / elapsed : 0.0;
  double eta = step > 0 ? elapsed * static_cast<double>(total_ - step) / static_cast<double>(step) : 0.0;
  constexpr int kWidth = 30;
  int filled = static_cast<int>(kWidth * step / total_);
  std::string bar(filled, '#');
  bar.resize(kWidth, '.');
  std::fprintf(stderr, "%s[%s] %3lld%% step %lld/%lld | %.0f tok/s | ETA %02d:%02d | %s%s", tty_ ? "\r" : "",
               bar.c_str(), static_cast<long long>(percent), static_cast<long long>(step),
               static_cast<long long>(total_), tok_s, static_cast<int>(eta) / 60, static_cast<int>(eta) % 60,
               status.c_str(), tty_ ? "\033[K" : "\n");
  std::fflush(stderr);
}

void ProgressBar::finish() {
  if (tty_) std::fprintf(stderr, "\n");
}

MetricsWriter::MetricsWriter(const std::string& path) {
  if (path.empty()) return;
  out_.open(path, std::ios::app);
  LOOM_CHECK(out_.good(), "metrics: cannot open '", path, "' for appending");
}

void MetricsWriter::write(int64_t step, const std::string& split,
                          const std::map<std::string, double>& values) {
  if (!out_.is_open()) return;
  nlohmann::json j;
  j["step"] = step;
  j["split"] = split;
  for (const auto& [k, v] : values) j[k] = std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
  out_ << j.dump() << '\n';
  out_.flush();
}

TrainingClock TrainingClock::resumed(double budget_minutes,
                                     const std::map<std::string, std::string>& metadata) {
  auto it = metadata.find(kMetadataKey);
  return TrainingClock(budget_minutes, it == metadata.end() ? 0.0 : std::stod(it->second));
}

std::string TrainingClock::minutes_text() const {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", carried_);
  return buf;
}

}  // namespace loom::train
