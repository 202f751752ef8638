#pragma once
// Op-level profiler (like torch.autograd.profiler): while a Profiler is alive, every op's forward (each
// OpScope, so every public op, whether or not it records a tape entry) and every tape entry's backward is
// timed on the host. Each name gets a call count, its total wall time (the op and everything it calls) and
// its self time (total minus the ops it calls), so the self times add up to the time spent inside ops.
//
//   loom::autograd::Profiler prof;
//   ...forward, backward, optimizer step...
//   std::cout << prof.table();   // names by self time, descending
//
// Backward entries are named "backward: <op>". Kernels run synchronously on the CPU, so wall time is the op's
// cost there; for CUDA ops it is launch time unless the caller synchronises. Only one Profiler records at a
// time (constructing a second while one is alive is an error). Timing costs about a clock read per op while a
// Profiler is alive and one relaxed atomic load per op otherwise.
#include <cstdint>
#include <string>
#include <vector>

namespace loom::autograd {

struct ProfileEntry {
  std::string name;
  int64_t calls = 0;
  double total_ms = 0;  // wall time of the calls, nested ops included
  double self_ms = 0;   // wall time minus the nested ops' totals
};

class Profiler {
 public:
  Profiler();
  ~Profiler();
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  // Stops recording (the destructor does too); entries() and table() still work afterwards.
  void stop();
  // The entries recorded so far, by self time descending (ties by name).
  std::vector<ProfileEntry> entries() const;
  // A text table of the top `rows` entries (profile_table).
  std::string table(size_t rows = 40) const;

 private:
  bool stopped_ = false;
  std::vector<ProfileEntry> finished_;  // what stop() collected
};

// Entries as a text table, the top `rows` by self time: name, calls, self ms, self %, total ms, mean us per
// call, then the number of names and the self time in all.
std::string profile_table(const std::vector<ProfileEntry>& entries, size_t rows = 40);

// The calls and times of a and b summed name by name, by self time descending (several profiled regions
// reported as one).
std::vector<ProfileEntry> merge_profiles(const std::vector<ProfileEntry>& a,
                                         const std::vector<ProfileEntry>& b);

namespace profiler_detail {
// Whether a Profiler is recording (one relaxed load: the cost when none is).
bool active();
// Opens and closes a timed region on this thread; nested regions subtract from the enclosing one's self time.
void enter(const char* name, bool backward);
void exit();
}  // namespace profiler_detail

// Times the enclosing block as `name` when a Profiler is recording.
class ProfileScope {
 public:
  explicit ProfileScope(const char* name, bool backward = false) : on_(profiler_detail::active()) {
    if (on_) profiler_detail::enter(name, backward);
  }
  ~ProfileScope() {
    if (on_) profiler_detail::exit();
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  bool on_;
};

}  // namespace loom::autograd
