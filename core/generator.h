#pragma once
// The global random stream: a seed and a counter offset. A random op reserves counters with next() and records
// the (seed, offset) it got, which is all a recomputation needs to draw the same numbers again.
#include <cstdint>
#include <mutex>

namespace loom {

struct PhiloxState {
  uint64_t seed = 0;
  uint64_t offset = 0;  // first Philox counter this draw uses
};

class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5eed) : seed_(seed) {}
  void manual_seed(uint64_t seed);
  // Reserves `counters` Philox blocks (4 words each) and returns where they start.
  PhiloxState next(uint64_t counters);
  PhiloxState state() const;
  void set_state(PhiloxState state);

 private:
  mutable std::mutex mutex_;
  uint64_t seed_;
  uint64_t offset_ = 0;
};

Generator& default_generator();
// Seeds the default generator and resets its offset (torch.manual_seed).
void manual_seed(uint64_t seed);

// Saves the default generator's state and puts it back on scope exit, optionally moving it to `state` for
// the scope. A recomputation (checkpoint, chunked_apply, reversible replay) rewinds the stream to where its
// forward drew, and must leave the stream the caller sees where it was, also when the replay throws.
class GeneratorStateGuard {
 public:
  GeneratorStateGuard() : saved_(default_generator().state()) {}
  explicit GeneratorStateGuard(PhiloxState state) : GeneratorStateGuard() {
    default_generator().set_state(state);
  }
  ~GeneratorStateGuard() { default_generator().set_state(saved_); }
  GeneratorStateGuard(const GeneratorStateGuard&) = delete;
  GeneratorStateGuard& operator=(const GeneratorStateGuard&) = delete;

 private:
  PhiloxState saved_;
};

}  // namespace loom
