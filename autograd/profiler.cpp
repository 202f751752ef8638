// Op-level profiler (see profiler.h).
#include "loom/autograd/profiler.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>

#include "loom/core/error.h"

namespace loom::autograd {
namespace {

using Clock = std::chrono::steady_clock;

struct Totals {
  int64_t calls = 0;
  double total_ms = 0, self_ms = 0;
};

struct Frame {
  const char* name;
  bool backward;
  Clock::time_point start;
  double child_ms;
};

std::atomic<bool> g_active{false};
std::mutex g_mutex;
std::map<std::string, Totals> g_totals;  // guarded by g_mutex
thread_local std::vector<Frame> t_frames;

std::vector<ProfileEntry> sorted_entries(const std::map<std::string, Totals>& totals) {
  std::vector<ProfileEntry> out;
  out.reserve(totals.size());
  for (const auto& [name, t] : totals) out.push_back({name, t.calls, t.total_ms, t.self_ms});
  std::sort(out.begin(), out.end(), [](const ProfileEntry& a, const ProfileEntry& b) {
    return a.self_ms != b.self_ms ? a.self_ms > b.self_ms : a.name < b.name;
  });
  return out;
}

}  // namespace

namespace profiler_detail {

bool active() { return g_active.load(std::memory_order_relaxed); }

void enter(const char* name, bool backward) { t_frames.push_back({name, backward, Clock::now(), 0.0}); }

void exit() {
  if (t_frames.empty()) return;
  const Frame f = t_frames.back();
  t_frames.pop_back();
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - f.start).count();
  if (!t_frames.empty()) t_frames.back().child_ms += ms;
  if (!active()) return;
  std::string key = f.backward ? std::string("backward: ") + f.name : std::string(f.name);
  std::lock_guard<std::mutex> lock(g_mutex);
  Totals& t = g_totals[key];
  ++t.calls;
  t.total_ms += ms;
  t.self_ms += ms - f.child_ms;
}

}  // namespace profiler_detail

Profiler::Profiler() {
  std::lock_guard<std::mutex> lock(g_mutex);
  LOOM_CHECK(!g_active.load(), "autograd::Profiler: another Profiler is already recording");
  g_totals.clear();
  g_active.store(true);
}

Profiler::~Profiler() { stop(); }

void Profiler::stop() {
  if (stopped_) return;
  stopped_ = true;
  std::lock_guard<std::mutex> lock(g_mutex);
  g_active.store(false);
  finished_ = sorted_entries(g_totals);
  g_totals.clear();
}

std::vector<ProfileEntry> Profiler::entries() const {
  if (stopped_) return finished_;
  std::lock_guard<std::mutex> lock(g_mutex);
  return sorted_entries(g_totals);
}

std::string Profiler::table(size_t rows) const { return profile_table(entries(), rows); }

std::string profile_table(const std::vector<ProfileEntry>& entries, size_t rows) {
  std::vector<ProfileEntry> all = entries;
  std::stable_sort(all.begin(), all.end(),
                   [](const ProfileEntry& x, const ProfileEntry& y) { return x.self_ms > y.self_ms; });
  double self_sum = 0;
  for (const ProfileEntry& e : all) self_sum += e.self_ms;
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%-48s %9s %11s %7s %11s %11s\n", "op", "calls", "self ms", "self %",
                "total ms", "us/call");
  out += line;
  for (size_t i = 0; i < all.size() && i < rows; ++i) {
    const ProfileEntry& e = all[i];
    std::snprintf(line, sizeof line, "%-48.48s %9lld %11.2f %6.1f%% %11.2f %11.1f\n", e.name.c_str(),
                  static_cast<long long>(e.calls), e.self_ms,
                  self_sum > 0 ? 100.0 * e.self_ms / self_sum : 0.0, e.total_ms,
                  e.calls > 0 ? 1e3 * e.total_ms / static_cast<double>(e.calls) : 0.0);
    out += line;
  }
  std::snprintf(line, sizeof line, "%zu ops, %.2f ms self time in all\n", all.size(), self_sum);
  out += line;
  return out;
}

std::vector<ProfileEntry> merge_profiles(const std::vector<ProfileEntry>& a,
                                         const std::vector<ProfileEntry>& b) {
  std::map<std::string, Totals> totals;
  for (const std::vector<ProfileEntry>* part : {&a, &b})
    for (const ProfileEntry& e : *part) {
      Totals& t = totals[e.name];
      t.calls += e.calls;
      t.total_ms += e.total_ms;
      t.self_ms += e.self_ms;
    }
  return sorted_entries(totals);
}

}  // namespace loom::autograd
