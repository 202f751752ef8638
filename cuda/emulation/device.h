#pragma once
// The device side of the CUDA emulation (LOOM_CUDA=EMULATE): what the kernel files (cuda/*.cu, rewritten by
// translate_launches.py) need in order to compile as C++ and run on the CPU. A thread block runs as one fiber
// per CUDA thread on the calling thread, switched cooperatively at __syncthreads, __syncwarp and the warp
// shuffles, so every barrier and shuffle of the real kernel runs with its CUDA meaning; blocks run one after
// another, which is why __shared__ can be a function-static variable. This is for testing the kernels' logic
// (indexing, tiling, barriers, reductions) on machines without a GPU; it says nothing about speed or the
// GPU's memory model.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas(n)

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace loom::emulation {

// The running fiber's thread index and the running launch's block index and shapes.
struct LaunchState {
  dim3 block_idx, block_dim, grid_dim;
};
const dim3& current_thread_idx();
extern LaunchState launch_state;

void sync_threads();
void sync_warp();
// The warp's lanes each publish 8 bytes and read those of lane ^ lane_mask (within groups of `width`).
uint64_t exchange_xor(uint64_t bits, int lane_mask, int width);
// The warp's lanes each publish `words` 8-byte words (at most kGatherWords) and read all 32 lanes' into
// all[lane * words + w]; a lane that does not exist or has returned gives all-ones bits, as exchange_xor.
constexpr int kGatherWords = 6;
void gather_warp(const uint64_t* mine, int words, uint64_t* all);
// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 for the calling lane, d += A B, with the fragments the
// PTX ISA assigns a lane (g = lane / 4, t = lane % 4): a[i] = A(g + 8 (i % 2), t + 4 (i / 2)),
// b[i] = B(t + 4 i, g), d[i] = D(g + 8 (i / 2), 2 t + i % 2). As the tensor cores do, it reads the operands'
// top 19 bits (tf32) and ignores the other 13. Every lane of the warp must call.
void mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]);
// The three instructions of tensor_cores::mma_3xtf32 in its order (a_small b_big, a_big b_small, a_big
// b_big), each rounded as mma_m16n8k8_tf32 rounds, with one warp exchange (a rendezvous of the warp's fibers)
// instead of three; the exchanges were most of an emulated tensor-core kernel's time.
void mma_m16n8k8_3xtf32(float (&d)[4], const uint32_t (&a_big)[4], const uint32_t (&a_small)[4],
                        const uint32_t (&b_big)[2], const uint32_t (&b_small)[2]);
// While set, the emulated instruction reads A's registers 1 and 2 the wrong way round, as a wrong fragment
// table would: what the backend's tensor-core self-check (cuda::tensor_core_self_check) must notice.
void set_mma_fault(bool swap_a_registers);
// The launch's dynamic shared memory (its third launch parameter, in bytes).
unsigned char* dynamic_shared();

// The error of the last refused launch (a cudaError_t value, 0 for none), which cudaGetLastError returns and
// clears (runtime.cpp).
extern int pending_launch_error;

// The emulated device's memory (an H100's 80 GB; its memory is the host's, so the host may run out first).
constexpr size_t kDeviceMemoryBytes = size_t{80} << 30;

// Dynamic shared memory a block may use without an opt-in, and with one (an H100's figures).
constexpr size_t kDefaultSharedBytes = 48 * 1024;
constexpr size_t kOptInSharedBytes = 227 * 1024;
// cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes); false when bytes is out
// of range.
bool set_max_dynamic_shared(const void* kernel, int bytes);

// The order in which a block's threads are resumed at every round of the scheduler (so which of them runs
// first between two barriers) and in which the grid's blocks run. CUDA promises neither, so a kernel whose
// result depends on it has a race: a missing __syncthreads or __syncwarp, a thread reading shared memory
// another writes in the same phase, a block reading what another block of the same launch writes. in_order
// resumes every thread once a round, thread 0 first, and runs block (0, 0, 0) first, the order such a race
// most often gets away with; reversed resumes them the other way round; shuffled runs one warp at a time as
// far as it can go alone (until its threads wait at __syncthreads), the warps, each warp's threads at every
// round and the blocks in fresh random orders drawn from `seed`, so that a warp may run a whole phase ahead
// of the others, as a GPU's warp scheduler may let it. The default comes from the environment variable
// LOOM_CUDA_EMULATION_SCHEDULE (in-order, reversed, shuffled or shuffled:<seed>), read at the first launch;
// in_order without it. Every kernel of Loom's is free of races and atomics, so its results are the same bits
// under every schedule.
enum class Schedule { in_order, reversed, shuffled };
void set_schedule(Schedule schedule, uint64_t seed = 0);
// By name, as the environment variable gives it; throws std::invalid_argument naming the valid ones.
void set_schedule(const std::string& name);
Schedule current_schedule();

// Runs body once per thread of every block; records a launch error (as cudaGetLastError reports it) instead
// when the configuration is one CUDA would refuse, including dynamic shared memory above 48 KiB for a kernel
// (identified by `kernel`; null for a launch without dynamic shared memory) that has not opted in.
void run_grid(dim3 grid, dim3 block, size_t shared_bytes, const void* kernel,
              const std::function<void()>& body);

// What `kernel<<<grid, block, shared_bytes>>>(args...)` becomes: the arguments are evaluated once, as in
// CUDA, and every thread calls the kernel with copies of them.
template <typename Kernel, typename... Args>
void launch(dim3 grid, dim3 block, size_t shared_bytes, const void* kernel_id, Kernel kernel, Args... args) {
  run_grid(grid, block, shared_bytes, kernel_id, [&] { kernel(args...); });
}

}  // namespace loom::emulation

#define threadIdx (::loom::emulation::current_thread_idx())
#define blockIdx (::loom::emulation::launch_state.block_idx)
#define blockDim (::loom::emulation::launch_state.block_dim)
#define gridDim (::loom::emulation::launch_state.grid_dim)

inline void __syncthreads() { ::loom::emulation::sync_threads(); }
inline void __syncwarp(unsigned = 0xffffffffu) { ::loom::emulation::sync_warp(); }

template <typename T>
T __shfl_xor_sync(unsigned, T value, int lane_mask, int width = 32) {
  static_assert(sizeof(T) <= sizeof(uint64_t) && std::is_trivially_copyable_v<T>);
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  bits = ::loom::emulation::exchange_xor(bits, lane_mask, width);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

// Correctly rounded double arithmetic, never contracted into FMAs: the emulated sources are compiled with
// -ffp-contract=off (cmake/CudaEmulation.cmake).
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline unsigned __float_as_uint(float x) {
  unsigned u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}
inline long long __double_as_longlong(double x) {
  long long u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

// CUDA's float overloads of the C math functions, in the global namespace as device code sees them.
using std::abs;
using std::ceil;
using std::cos;
using std::erf;
using std::exp;
using std::floor;
using std::fmax;
using std::fmin;
using std::isinf;
using std::isnan;
using std::log;
using std::log1p;
using std::pow;
using std::sin;
using std::sqrt;
using std::tanh;
