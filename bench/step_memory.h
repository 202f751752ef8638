#pragma once
// What the whole-model training-step benchmarks (bench_reformer, bench_biblosa) measure the same way: the memory
// step after a warm-up, split into forward / backward / optimizer phases, against the model's own footprint.
//
//   StepMemory m = StepMemory::begin();  // after a warm-up step created the gradients and optimizer state
//   m.phases(state, loss, update);       // one untimed step: fwd_s, fwd_peak, bwd_s, bwd_peak, opt_s, opt_peak
//   ... timed iterations, then m.finish(state, peak) sets peak_bytes, peak_rss, base_bytes, rss_before.
//
// Counters: *_peak is the allocator's high-water mark above `base` within the phase (the peak restarts after
// each phase from what it left); peak_rss the growth of the process's peak resident set (VmHWM, reset through
// /proc/self/clear_refs) over its resident set at begin().
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <string>

#include "loom/loom.h"

namespace loom::bench {

// A byte count from /proc/self/status ("VmRSS", "VmHWM"; reported there in kB), or -1.
inline int64_t proc_status_bytes(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string key = std::string(field) + ":";
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(key.size())) * 1024;
  return -1;
}

// Restarts the kernel's peak-RSS counter (VmHWM) from the current resident set.
inline void reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct StepMemory {
  int64_t base = 0;        // allocator bytes live at begin(): parameters, gradients, optimizer state, inputs
  int64_t rss_before = 0;  // resident set at begin()

  // Empties the allocator's cache, hands freed heap back to the kernel and restarts both peak counters.
  static StepMemory begin() {
    empty_cache();
    malloc_trim(0);
    reset_peak_memory();
    StepMemory m;
    m.base = memory_stats().current_bytes;
    m.rss_before = proc_status_bytes("VmRSS");
    reset_peak_rss();
    return m;
  }

  // One training step phase by phase: loss() is the forward, then zero_grad() + backward, then update().
  // Returns the loss and the largest of the three phase peaks.
  std::pair<Tensor, int64_t> phases(benchmark::State& state, const std::function<Tensor()>& loss,
                                    const std::function<void()>& zero_grad,
                                    const std::function<void()>& update) const {
    auto t0 = std::chrono::steady_clock::now();
    Tensor l = loss();
    state.counters["fwd_s"] = seconds_since(t0);
    const int64_t fwd = memory_stats().peak_bytes - base;
    reset_peak_memory();  // the peak restarts from what the forward left (the loss's graph)
    t0 = std::chrono::steady_clock::now();
    zero_grad();
    l.backward();
    state.counters["bwd_s"] = seconds_since(t0);
    const int64_t bwd = memory_stats().peak_bytes - base;
    reset_peak_memory();
    t0 = std::chrono::steady_clock::now();
    update();
    state.counters["opt_s"] = seconds_since(t0);
    const int64_t opt = memory_stats().peak_bytes - base;
    state.counters["fwd_peak"] = static_cast<double>(fwd);
    state.counters["bwd_peak"] = static_cast<double>(bwd);
    state.counters["opt_peak"] = static_cast<double>(opt);
    return {l, std::max({fwd, bwd, opt})};
  }

  // The summary counters, with `peak` the largest allocator peak above base over everything measured.
  void finish(benchmark::State& state, int64_t peak) const {
    state.counters["peak_bytes"] = static_cast<double>(peak);
    state.counters["peak_rss"] = static_cast<double>(proc_status_bytes("VmHWM") - rss_before);
    state.counters["base_bytes"] = static_cast<double>(base);
    state.counters["rss_before"] = static_cast<double>(rss_before);
  }
};

}  // namespace loom::bench
