// The fiber scheduler behind device.h: one fiber per CUDA thread of the running block, resumed round-robin; a
// fiber that reaches a barrier yields until every live thread of its block (or warp) has reached it. Threads
// that have returned no longer count, as on the GPU.
//
// The fibers are Boost.Context's: a switch is a few register moves (about 30 ns here). ucontext's
// swapcontext, used first, makes a sigprocmask system call on every switch and cost 3.7 us a round trip on
// this project's machines, which made the switches, not the kernels' arithmetic, nearly all of an emulated
// run's time.
#include "loom/cuda/emulation/device.h"

#include <boost/context/fiber.hpp>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

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
  std::vector<uint64_t> exchange;  // one slot per thread
  std::vector<unsigned char> shared;
};

// Kernels launch from one host thread at a time (the default stream); the mutex makes that so, and guards
// the kernels' shared-memory opt-ins.
std::mutex launch_mutex;
std::unordered_map<const void*, size_t> max_dynamic_shared;
Block block;

int thread_rank(const Fiber* f) {
  const dim3& d = launch_state.block_dim;
  return static_cast<int>((f->thread_idx.z * d.y + f->thread_idx.y) * d.x + f->thread_idx.x);
}

void yield() { block.scheduler = std::move(block.scheduler).resume(); }

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

// Runs one block to completion: a fiber per thread, resumed round-robin until every one has returned.
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
    ++block.warp_live[t / 32];
    f.suspended = context::fiber(std::allocator_arg, OwnStack{f.stack.get()}, [](context::fiber&& scheduler) {
      block.scheduler = std::move(scheduler);
      fiber_main();
      return std::move(block.scheduler);  // the fiber ends by resuming the scheduler
    });
  }
  for (bool running = true; running;) {
    running = false;
    const uint64_t progress_before = progress;
    for (int t = 0; t < block.threads; ++t) {
      Fiber& f = block.fibers[t];
      if (f.done) continue;
      block.current = &f;
      f.suspended = std::move(f.suspended).resume();
      running = running || !f.done;
    }
    if (running && progress == progress_before) {
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
  const int rank = thread_rank(block.current);
  block.exchange[rank] = bits;
  sync_warp();
  const int lane = rank % 32, group = lane - lane % width;
  const int source = group + ((lane ^ lane_mask) % width);
  const int source_rank = rank - lane + source;
  const uint64_t out = source_rank < block.threads ? block.exchange[source_rank] : bits;
  sync_warp();
  return out;
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
  block.exchange.assign(threads, 0);
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) run_block(dim3(bx, by, bz), shared_bytes);
  block.current = nullptr;
}

}  // namespace loom::emulation
