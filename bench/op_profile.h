#pragma once
// LOOM_PROFILE=1: a whole-model benchmark runs one more training step under autograd::Profiler after its
// timed iterations and prints the op table (self time per forward op and per backward entry) to stderr, so a
// benchmark row shows where its step goes. The extra step is not part of any reported figure.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "loom/loom.h"

namespace loom::bench {

inline void profile_step_if_asked(const std::string& row, const std::function<void()>& step) {
  const char* env = std::getenv("LOOM_PROFILE");
  if (env == nullptr || std::string(env).empty() || std::string(env) == "0") return;
  const auto t0 = std::chrono::steady_clock::now();
  autograd::Profiler profiler;
  step();
  profiler.stop();
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "\n== op profile of one step of %s (%.1f ms wall, profiled) ==\n%s", row.c_str(), ms,
               profiler.table().c_str());
}

}  // namespace loom::bench
