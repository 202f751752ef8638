#pragma once
// Device-side building blocks of the fused attention kernels (cuda_attention.cu, cuda_lsh_attention.cu):
// 256-thread blocks whose threads own fixed entries of a tile (entry e = thread + 256 k, so accumulators stay
// in registers), warp-wide row statistics, shared-memory tiles loaded row by row, and float/double math
// wrappers (cuda_multidim_attention.cu and cuda_act.cu use some of these too).
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "loom/cuda/row_reduce.cuh"

namespace loom::cuda::attention {

constexpr int kAttnThreads = 256;
constexpr int kWarps = kAttnThreads / 32;
constexpr int kMaxOwned = 16;                // accumulator entries per thread
constexpr size_t kSharedBudget = 48 * 1024;  // dynamic shared memory available without opting in
constexpr int kTileRows[] = {32, 16, 8};     // tile heights tried, largest first

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

// Splits the flat block index into (matrix, tile).
__device__ __forceinline__ void block_coords(int64_t tiles, int64_t& b, int64_t& tile) {
  b = blockIdx.x / tiles;
  tile = blockIdx.x % tiles;
}

}  // namespace loom::cuda::attention
