// The fiber scheduler behind device.h: one fiber per CUDA thread of the running block, resumed round-robin; a
// fiber that reaches a barrier yields until every live thread of its block (or warp) has reached it. Threads
// that have returned no longer count, as on the GPU.
//
// The fibers are Boost.Context's: a switch is a few register moves (about 30 ns here). ucontext's
// swapcontext, used first, makes a sigprocmask system call on every switch and cost 3.7 us a round trip on
// this project's machines, which made the switches, not the kernels' arithmetic, nearly all of an emulated
// run's time.
#include "loom/cuda/emulation/device.h"

#include <algorithm>
#include <atomic>
#include <boost/context/fiber.hpp>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

namespace loom::emulation {

LaunchState launch_state;
int pending_launch_error = 0;

namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr int kMaxThreads = 1024;

namespace context = boost::context;

// Hands Boost.Context a stack the fiber owns, allocated once and reused by every block of every launch.
struct OwnStack {
  unsigned char* memory;
  context::stack_context allocate() const {
    context::stack_context stack;
    stack.size = kStackBytes;
    stack.sp = memory + kStackBytes;  // stacks grow down
    return stack;
  }
  void deallocate(context::stack_context&) const noexcept {}
};

struct Fiber {
  context::fiber
      suspended;  // the thread while it waits to be resumed; empty while it runs and once it returns
  std::unique_ptr<unsigned char[]> stack;
  dim3 thread_idx;
  bool done = false;
  uint64_t shuffles = 0;  // warp shuffles this thread has made in the running block
};

struct Barrier {
  int arrived = 0;
  uint64_t generation = 0;
};

// Bumped whenever a thread arrives at a barrier or exits: a round of the scheduler without it is a deadlock
// (threads waiting at barriers that the others never reach).
uint64_t progress = 0;

struct Block {
  std::vector<Fiber> fibers;
  context::fiber scheduler;  // what the running thread resumes to yield
  Fiber* current = nullptr;
  const std::function<void()>* body = nullptr;
  int threads = 0, live = 0;
  Barrier block_barrier;
  std::vector<Barrier> warp_barriers;
  std::vector<int> warp_live;
  // The warp shuffles' slots, one per thread, in two generations: shuffle k of a warp uses generation k % 2,
  // so one barrier per shuffle suffices (a lane can only overwrite generation k % 2 at shuffle k + 2, after
  // every lane has passed shuffle k + 1's barrier and so has read what shuffle k published).
  std::vector<uint64_t> exchange[2];
  // gather_warp's, kGatherWords per thread, in the same two generations (it counts as a shuffle).
  std::vector<uint64_t> gathered[2];
  std::vector<unsigned char> shared;
};

// The order of the threads within a round and of the blocks within a grid (device.h).
struct Order {
  Schedule schedule = Schedule::in_order;
  bool chosen = false;  // by set_schedule or, at the first launch, from the environment
  std::mt19937_64 random;
  std::vector<int> threads, warps;
  std::vector<uint64_t> blocks;
};
Order order;

void choose_from_environment() {
  const char* value = std::getenv("LOOM_CUDA_EMULATION_SCHEDULE");
  set_schedule(std::string(value ? value : "in-order"));
}

// Puts 0 .. n-1 in the schedule's order into `v`.
template <typename Index>
void arrange(std::vector<Index>& v, size_t n) {
  v.resize(n);
  std::iota(v.begin(), v.end(), Index{0});
  if (order.schedule == Schedule::reversed) std::reverse(v.begin(), v.end());
  if (order.schedule == Schedule::shuffled) std::shuffle(v.begin(), v.end(), order.random);
}

// Kernels launch from one host thread at a time (the default stream); the mutex makes that so, and guards
// the kernels' shared-memory opt-ins.
std::mutex launch_mutex;
std::unordered_map<const void*, size_t> max_dynamic_shared;
Block block;

int thread_rank(const Fiber* f) {
  const dim3& d = launch_state.block_dim;
  return static_cast<int>((f->thread_idx.z * d.y + f->thread_idx.y) * d.x + f->thread_idx.x);
}

// AddressSanitizer must be told of every switch between the scheduler's stack and a fiber's (LOOM_SANITIZE),
// or it takes one stack's frames for the other's. The scheduler runs on the launching thread's stack, whose
// bounds the first switch into a fiber reports.
const void* scheduler_stack = nullptr;
size_t scheduler_stack_size = 0;
#if defined(__SANITIZE_ADDRESS__)
void leaving(void** fake_stack, const void* to, size_t to_size) {
  __sanitizer_start_switch_fiber(fake_stack, to, to_size);
}
void arrived(void* fake_stack, const void** from = nullptr, size_t* from_size = nullptr) {
  __sanitizer_finish_switch_fiber(fake_stack, from, from_size);
}
#else
void leaving(void**, const void*, size_t) {}
void arrived(void*, const void** = nullptr, size_t* = nullptr) {}
#endif

void yield() {
  void* fake_stack = nullptr;
  leaving(&fake_stack, scheduler_stack, scheduler_stack_size);
  block.scheduler = std::move(block.scheduler).resume();
  arrived(fake_stack);
}

// Waits at `b` until `live` threads have arrived (a thread that exits releases a barrier its arrival
// completes: fiber_main).
void wait_at(Barrier& b, const int& live) {
  const uint64_t generation = b.generation;
  ++progress;
  if (++b.arrived >= live) {
    b.arrived = 0;
    ++b.generation;
    return;
  }
  while (b.generation == generation) yield();
}

void fiber_main() {
  (*block.body)();
  Fiber* f = block.current;
  f->done = true;
  ++progress;
  --block.live;
  const int warp = thread_rank(f) / 32;
  --block.warp_live[warp];
  // A barrier whose waiting threads are now all the live ones opens, as on the GPU.
  auto release = [](Barrier& b, int live) {
    if (b.arrived > 0 && b.arrived >= live) {
      b.arrived = 0;
      ++b.generation;
    }
  };
  release(block.block_barrier, block.live);
  release(block.warp_barriers[warp], block.warp_live[warp]);
}

// Runs thread t until it next yields (at a barrier or shuffle) or returns.
void resume(int t) {
  Fiber& f = block.fibers[t];
  if (f.done) return;
  block.current = &f;
  void* fake_stack = nullptr;
  leaving(&fake_stack, f.stack.get(), kStackBytes);
  f.suspended = std::move(f.suspended).resume();
  arrived(fake_stack);
}

// Runs warp w's threads, in a fresh order each round, until none of them can go on alone: all wait at the
// block's barrier or have returned. The other warps meanwhile stand still, as a GPU's warp scheduler may keep
// them, so a warp that races ahead into the next phase overwrites what a slower warp has yet to read.
void run_warp_ahead(int w) {
  const int first = w * 32, count = std::min(32, block.threads - first);
  while (block.warp_live[w] > 0) {
    const uint64_t before = progress;
    arrange(order.threads, count);
    for (int t : order.threads) resume(first + t);
    if (progress == before) return;
  }
}

// Runs one block to completion: a fiber per thread, resumed round-robin (or a warp at a time, shuffled)
// until every one has returned.
void run_block(dim3 block_idx, size_t shared_bytes) {
  const dim3& block_dim = launch_state.block_dim;
  launch_state.block_idx = block_idx;
  // Shared memory starts as 0xff bytes (NaN in either float type), so a kernel that reads what it never
  // wrote shows it.
  block.shared.assign(shared_bytes, 0xff);
  const int warps = (block.threads + 31) / 32;
  block.block_barrier = Barrier{};
  block.warp_barriers.assign(warps, Barrier{});
  block.warp_live.assign(warps, 0);
  block.live = block.threads;
  for (int t = 0; t < block.threads; ++t) {
    Fiber& f = block.fibers[t];
    f.thread_idx = dim3(t % block_dim.x, (t / block_dim.x) % block_dim.y, t / (block_dim.x * block_dim.y));
    f.done = false;
    f.shuffles = 0;
    ++block.warp_live[t / 32];
    f.suspended = context::fiber(std::allocator_arg, OwnStack{f.stack.get()}, [](context::fiber&& scheduler) {
      arrived(nullptr, &scheduler_stack, &scheduler_stack_size);
      block.scheduler = std::move(scheduler);
      fiber_main();
      leaving(nullptr, scheduler_stack, scheduler_stack_size);  // null: this fiber's stack is done with
      return std::move(block.scheduler);                        // the fiber ends by resuming the scheduler
    });
  }
  while (block.live > 0) {
    const uint64_t progress_before = progress;
    if (order.schedule == Schedule::shuffled) {
      arrange(order.warps, warps);
      for (int w : order.warps) run_warp_ahead(w);
    } else {
      arrange(order.threads, block.threads);
      for (int t : order.threads) resume(t);
    }
    if (block.live > 0 && progress == progress_before) {
      std::fprintf(
          stderr,
          "CUDA emulation: deadlock in block (%u, %u, %u): threads wait at a barrier the others never "
          "reach\n",
          block_idx.x, block_idx.y, block_idx.z);
      std::abort();
    }
  }
}

}  // namespace

const dim3& current_thread_idx() { return block.current->thread_idx; }

void sync_threads() { wait_at(block.block_barrier, block.live); }

void sync_warp() {
  const int warp = thread_rank(block.current) / 32;
  wait_at(block.warp_barriers[warp], block.warp_live[warp]);
}

uint64_t exchange_xor(uint64_t bits, int lane_mask, int width) {
  Fiber* f = block.current;
  const int rank = thread_rank(f);
  std::vector<uint64_t>& slots = block.exchange[f->shuffles++ % 2];
  slots[rank] = bits;
  sync_warp();
  const int lane = rank % 32, group = lane - lane % width;
  const int source = group + ((lane ^ lane_mask) % width);
  const int source_rank = rank - lane + source;
  // A lane that does not exist (a block whose size is not a multiple of 32) or that returned before this
  // shuffle has no value to give: CUDA leaves what is read from it undefined, and the emulation reads
  // all-ones bits (NaN, or -1), so a kernel that uses such a value fails its parity row. A lane that took
  // part in this shuffle and has returned since still gives its value.
  constexpr uint64_t kUndefined = ~uint64_t{0};
  if (source_rank >= block.threads || block.fibers[source_rank].shuffles < f->shuffles) return kUndefined;
  return slots[source_rank];
}

void gather_warp(const uint64_t* mine, int words, uint64_t* all) {
  if (words < 0 || words > kGatherWords) throw std::invalid_argument("gather_warp: too many words");
  Fiber* f = block.current;
  const int rank = thread_rank(f);
  std::vector<uint64_t>& slots = block.gathered[f->shuffles++ % 2];
  std::copy(mine, mine + words, slots.begin() + static_cast<ptrdiff_t>(rank) * kGatherWords);
  sync_warp();
  const int first = rank - rank % 32;
  for (int lane = 0; lane < 32; ++lane) {
    const int source = first + lane;
    const bool gives = source < block.threads && block.fibers[source].shuffles >= f->shuffles;
    for (int w = 0; w < words; ++w)
      all[lane * words + w] =
          gives ? slots[static_cast<size_t>(source) * kGatherWords + static_cast<size_t>(w)] : ~uint64_t{0};
  }
}

std::atomic<bool> mma_fault{false};

void set_mma_fault(bool swap_a_registers) { mma_fault.store(swap_a_registers); }

namespace {

// A's four registers as two words, with registers 1 and 2 swapped while the fault is set.
void pack_a(const uint32_t (&a)[4], bool swap, uint64_t* words) {
  const uint32_t a1 = swap ? a[2] : a[1], a2 = swap ? a[1] : a[2];
  words[0] = a[0] | uint64_t{a1} << 32;
  words[1] = a2 | uint64_t{a[3]} << 32;
}
// B's two registers as one word.
uint64_t pack_b(const uint32_t (&b)[2]) { return b[0] | uint64_t{b[1]} << 32; }

// A register of a lane, from every lane's as gather_warp returned them (`words` words a lane), read as tf32.
float tf32_register(const uint64_t* all, int words, int lane, int word, int half) {
  const uint32_t bits = static_cast<uint32_t>(all[lane * words + word] >> (32 * half)) & 0xffffe000u;
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

// A's rows g, g + 8 (a[i] = A(g + 8 (i % 2), t + 4 (i / 2)), held by lane 4 g + t) and B's columns 2 t,
// 2 t + 1 (b[i] = B(t + 4 i, g), held by lane 4 g + t), each read back from the lane that holds it.
void read_a_rows(const uint64_t* all, int words, int a_word, float (&rows)[2][8]) {
  const int g = thread_rank(block.current) % 32 / 4;
  for (int half_row = 0; half_row < 2; ++half_row)
    for (int k = 0; k < 8; ++k) {
      const int i = half_row + 2 * (k / 4);
      rows[half_row][k] = tf32_register(all, words, g * 4 + k % 4, a_word + i / 2, i % 2);
    }
}
void read_b_cols(const uint64_t* all, int words, int b_word, float (&cols)[2][8]) {
  const int t = thread_rank(block.current) % 4;
  for (int c = 0; c < 2; ++c)
    for (int k = 0; k < 8; ++k)
      cols[c][k] = tf32_register(all, words, (2 * t + c) * 4 + k % 4, b_word, k / 4);
}

// d[i] += sum_k A(g + 8 (i / 2), k) B(k, 2 t + i % 2) for the calling lane.
void accumulate_product(float (&d)[4], const float (&a_rows)[2][8], const float (&b_cols)[2][8]) {
  for (int i = 0; i < 4; ++i) {
    // tf32 products are exact in float; the sum is rounded once, a close stand-in for the hardware's adder.
    double sum = d[i];
    for (int k = 0; k < 8; ++k) sum += static_cast<double>(a_rows[i / 2][k] * b_cols[i % 2][k]);
    d[i] = static_cast<float>(sum);
  }
}

}  // namespace

void mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  uint64_t mine[3];
  pack_a(a, mma_fault.load(), mine);
  mine[2] = pack_b(b);
  uint64_t all[32 * 3];
  gather_warp(mine, 3, all);
  float a_rows[2][8], b_cols[2][8];
  read_a_rows(all, 3, 0, a_rows);
  read_b_cols(all, 3, 2, b_cols);
  accumulate_product(d, a_rows, b_cols);
}

void mma_m16n8k8_3xtf32(float (&d)[4], const uint32_t (&a_big)[4], const uint32_t (&a_small)[4],
                        const uint32_t (&b_big)[2], const uint32_t (&b_small)[2]) {
  // Words: a_big 0-1, a_small 2-3, b_big 4, b_small 5.
  uint64_t mine[6];
  const bool swap = mma_fault.load();
  pack_a(a_big, swap, mine);
  pack_a(a_small, swap, mine + 2);
  mine[4] = pack_b(b_big);
  mine[5] = pack_b(b_small);
  uint64_t all[32 * 6];
  gather_warp(mine, 6, all);
  float a_big_rows[2][8], a_small_rows[2][8], b_big_cols[2][8], b_small_cols[2][8];
  read_a_rows(all, 6, 0, a_big_rows);
  read_a_rows(all, 6, 2, a_small_rows);
  read_b_cols(all, 6, 4, b_big_cols);
  read_b_cols(all, 6, 5, b_small_cols);
  accumulate_product(d, a_small_rows, b_big_cols);
  accumulate_product(d, a_big_rows, b_small_cols);
  accumulate_product(d, a_big_rows, b_big_cols);
}

unsigned char* dynamic_shared() { return block.shared.data(); }

bool set_max_dynamic_shared(const void* kernel, int bytes) {
  if (kernel == nullptr || bytes < 0 || static_cast<size_t>(bytes) > kOptInSharedBytes) return false;
  std::lock_guard<std::mutex> lock(launch_mutex);
  max_dynamic_shared[kernel] = static_cast<size_t>(bytes);
  return true;
}

void run_grid(dim3 grid, dim3 block_dim, size_t shared_bytes, const void* kernel,
              const std::function<void()>& body) {
  const uint64_t threads = uint64_t{block_dim.x} * block_dim.y * block_dim.z;
  if (threads == 0 || threads > kMaxThreads || block_dim.z > 64 || grid.y > 65535 || grid.z > 65535 ||
      grid.x == 0 || grid.y == 0 || grid.z == 0) {
    pending_launch_error = 9;  // cudaErrorInvalidConfiguration
    return;
  }
  std::lock_guard<std::mutex> lock(launch_mutex);
  if (!order.chosen) choose_from_environment();
  if (shared_bytes > kDefaultSharedBytes) {
    const auto opted = max_dynamic_shared.find(kernel);
    if (opted == max_dynamic_shared.end() || opted->second < shared_bytes) {
      pending_launch_error = 1;  // cudaErrorInvalidValue, as a GPU reports it
      return;
    }
  }
  launch_state.block_dim = block_dim;
  launch_state.grid_dim = grid;
  block.threads = static_cast<int>(threads);
  block.body = &body;
  if (block.fibers.size() < threads) block.fibers.resize(threads);
  for (Fiber& f : block.fibers)
    if (!f.stack)
      f.stack.reset(new unsigned char[kStackBytes]);  // left uninitialised: untouched pages stay free
  for (std::vector<uint64_t>& slots : block.exchange) slots.assign(threads, 0);
  for (std::vector<uint64_t>& slots : block.gathered) slots.assign(threads * kGatherWords, 0);
  arrange(order.blocks, uint64_t{grid.x} * grid.y * grid.z);
  for (uint64_t b : order.blocks)
    run_block(dim3(static_cast<unsigned>(b % grid.x), static_cast<unsigned>(b / grid.x % grid.y),
                   static_cast<unsigned>(b / grid.x / grid.y)),
              shared_bytes);
  block.current = nullptr;
}

void set_schedule(Schedule schedule, uint64_t seed) {
  order.schedule = schedule;
  order.random.seed(seed);
  order.chosen = true;
}

void set_schedule(const std::string& name) {
  if (name == "in-order") {
    set_schedule(Schedule::in_order);
  } else if (name == "reversed") {
    set_schedule(Schedule::reversed);
  } else if (name == "shuffled") {
    set_schedule(Schedule::shuffled);
  } else if (name.rfind("shuffled:", 0) == 0 && name.size() > 9 && name.size() <= 9 + 19 &&
             name.find_first_not_of("0123456789", 9) == std::string::npos) {
    set_schedule(Schedule::shuffled, std::stoull(name.substr(9)));
  } else {
    throw std::invalid_argument("CUDA emulation: schedule '" + name +
                                "' (LOOM_CUDA_EMULATION_SCHEDULE) is none of in-order, reversed, shuffled, "
                                "shuffled:<seed>");
  }
}

Schedule current_schedule() { return order.schedule; }

}  // namespace loom::emulation
