#pragma once
// Building blocks of the fused attention kernels (cuda_attention.cu, cuda_lsh_attention.cu): 256-thread
// blocks whose threads own fixed entries of a tile (entry e = thread + 256 k, so accumulators stay in
// registers), warp-wide row statistics, shared-memory tiles loaded row by row, float/double math wrappers
// (cuda_multidim_attention.cu and cuda_act.cu use some of these too), and on the host the choice of tile
// height within the shared memory a block can get.
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <type_traits>

#include "loom/cuda/cuda_check.h"
#include "loom/cuda/row_reduce.cuh"

namespace loom::cuda::attention {

constexpr int kAttnThreads = 256;
constexpr int kWarps = kAttnThreads / 32;
constexpr int kMaxOwned = 16;                      // accumulator entries per thread
constexpr size_t kDefaultSharedBytes = 48 * 1024;  // dynamic shared memory a block gets without opting in
constexpr int kTileRows[] = {32, 16, 8};           // tile heights tried, largest first

// Shared-memory row pitch of a width: odd, so that a warp reading one column of 32 rows hits 32 banks.
__host__ __device__ constexpr int odd_pitch(int width) { return width | 1; }

__device__ __forceinline__ int64_t min_of(int64_t a, int64_t b) { return a < b ? a : b; }

// T-generic wrappers over CUDA's float and double math functions.
#define LOOM_FLOAT_DOUBLE_MATH(name, float_fn, double_fn) \
  template <typename T>                                   \
  __device__ __forceinline__ T name(T x) {                \
    if constexpr (std::is_same_v<T, float>) {             \
      return float_fn(x);                                 \
    } else {                                              \
      return double_fn(x);                                \
    }                                                     \
  }
LOOM_FLOAT_DOUBLE_MATH(exp_of, expf, exp)
LOOM_FLOAT_DOUBLE_MATH(log_of, logf, log)
LOOM_FLOAT_DOUBLE_MATH(sqrt_of, sqrtf, sqrt)
LOOM_FLOAT_DOUBLE_MATH(tanh_of, tanhf, tanh)
#undef LOOM_FLOAT_DOUBLE_MATH

template <typename T>
__device__ __forceinline__ T dot(const T* a, const T* b, int n) {
  T acc = 0;
  for (int c = 0; c < n; ++c) acc += a[c] * b[c];
  return acc;
}

struct FMax {  // NaN loses, as fmax: a row's maximum over its numbers
  template <typename A>
  __device__ A operator()(A a, A b) const {
    return fmax(a, b);
  }
};

// Over the 32 lanes of a warp; every lane gets the result (row_reduce.cuh's butterfly).
template <typename T>
__device__ __forceinline__ T warp_max(T v) {
  return group_allreduce<32>(v, FMax{});
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  return group_allreduce<32>(v, Plus{});
}

// One tile of a row's online softmax (Milakov and Gimelshein 2018), a warp per row and a score per lane:
// folds the tile into the running maximum and sum (shared memory, written by lane 0 once every lane has read
// them) and returns the lane's weight exp(score - new max) and the factor exp(old max - new max) that
// rescales what the row accumulated before (0 on its first tile). While no score of the row is finite the
// weights are 0 and the factor 1 (exp(-inf - -inf) would be NaN).
template <typename T>
struct SoftmaxStep {
  T weight, scale;
};
template <typename T>
__device__ __forceinline__ SoftmaxStep<T> online_softmax_step(T score, T* row_max, T* row_sum) {
  const T old_max = *row_max;
  const T new_max = fmax(old_max, warp_max(score));
  SoftmaxStep<T> step{T(0), T(1)};
  if (new_max != -std::numeric_limits<T>::infinity()) {
    step.weight = exp_of(score - new_max);
    step.scale = exp_of(old_max - new_max);
  }
  const T tile_sum = warp_sum(step.weight);
  __syncwarp();  // every lane has read the old maximum
  if (threadIdx.x % 32 == 0) {
    *row_max = new_max;
    *row_sum = *row_sum * step.scale + tile_sum;
  }
  return step;
}

// Copies `n` rows of an operand (row length `cols`, row stride `rs` in global memory), row r being row
// row_of(r), into shared memory with row pitch `pitch`.
template <typename T, typename RowOf>
__device__ __forceinline__ void load_rows_at(const T* base, int64_t rs, int n, int cols, RowOf row_of, T* dst,
                                             int pitch) {
  for (int e = threadIdx.x; e < n * cols; e += kAttnThreads) {
    const int r = e / cols, c = e % cols;
    dst[r * pitch + c] = base[row_of(r) * rs + c];
  }
}

// Rows [first, first + n) likewise.
template <typename T>
__device__ __forceinline__ void load_rows(const T* base, int64_t rs, int64_t first, int n, int cols, T* dst,
                                          int pitch) {
  load_rows_at(
      base, rs, n, cols, [first](int r) { return first + r; }, dst, pitch);
}

// ---- host side: tile heights and shared memory --------------------------------------------------------

// The most dynamic shared memory one block of the current device can opt into (227 KiB on an H100).
inline size_t opt_in_shared_bytes() {
  int device = 0, bytes = 0;
  LOOM_CUDA_CHECK(cudaGetDevice(&device));
  LOOM_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return static_cast<size_t>(bytes);
}

// Whether a block can have `bytes` of dynamic shared memory on the current device (above the default 48 KiB
// by opting in).
inline bool shared_bytes_fit(size_t bytes) {
  return bytes <= kDefaultSharedBytes || bytes <= opt_in_shared_bytes();
}

// The tallest of kTileRows for which fits(rows, budget) holds: first within the default 48 KiB, where every
// head width the kernels were written for fits; failing that, within the device's opt-in maximum, so that a
// wide head still runs fused instead of taking the composed default and its whole score matrix. 0: none.
template <typename Fits>
int pick_tile_rows(Fits fits) {
  for (int rows : kTileRows)
    if (fits(rows, kDefaultSharedBytes)) return rows;
  const size_t most = opt_in_shared_bytes();
  if (most > kDefaultSharedBytes)
    for (int rows : kTileRows)
      if (fits(rows, most)) return rows;
  return 0;
}

// Lets `kernel` launch with `bytes` of dynamic shared memory: above 48 KiB a kernel must opt in first (on
// the current device), or the launch fails.
template <typename Kernel>
void allow_shared_bytes(Kernel* kernel, size_t bytes) {
  if (bytes > kDefaultSharedBytes)
    LOOM_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

// Splits the flat block index into (matrix, tile).
__device__ __forceinline__ void block_coords(int64_t tiles, int64_t& b, int64_t& tile) {
  b = blockIdx.x / tiles;
  tile = blockIdx.x % tiles;
}

}  // namespace loom::cuda::attention
