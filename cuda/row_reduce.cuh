#pragma once
// Device-side row reductions shared by the kernel files: a group of threads (a warp, or a whole block) folds
// one row and every thread of the group gets the result. Partial results combine through warp shuffles and
// shared memory in a fixed order (no atomics), so every run gives bit-identical results.
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <type_traits>

#include "loom/cuda/launch.cuh"

namespace loom::cuda {

// Rows up to this long are handled by one warp; longer rows by a whole block.
constexpr int64_t kWarpRowLimit = 1024;

struct Plus {
  template <typename A>
  __device__ A operator()(A a, A b) const {
    return a + b;
  }
};
struct Times {
  template <typename A>
  __device__ A operator()(A a, A b) const {
    return a * b;
  }
};
struct MaxNan {  // NaN wins, as in PyTorch's max
  template <typename A>
  __device__ A operator()(A a, A b) const {
    return (a != a || a > b) ? a : b;
  }
};
struct MaxSkipNan {  // NaN never wins: a row's maximum over its numbers (-inf if it has none)
  template <typename A>
  __device__ A operator()(A a, A b) const {
    return b > a ? b : a;
  }
};
struct MinNan {
  template <typename A>
  __device__ A operator()(A a, A b) const {
    return (a != a || a < b) ? a : b;
  }
};
struct Or {
  __device__ int operator()(int a, int b) const { return a | b; }
};
struct And {
  __device__ int operator()(int a, int b) const { return a & b; }
};

// Reduces v over the kGroup threads of a row; every thread of the group gets the result. The xor butterfly is
// symmetric, so all lanes hold the same bits. A group narrower than a warp is kGroup consecutive lanes (the
// xor never leaves it), and every lane of the warp must call.
template <int kGroup, typename A, typename F>
__device__ A group_allreduce(A v, F f) {
  static_assert(kGroup > 0 && (kGroup & (kGroup - 1)) == 0, "group_allreduce: a power of two of lanes");
#pragma unroll
  for (int offset = (kGroup < 32 ? kGroup : 32) / 2; offset > 0; offset >>= 1)
    v = f(v, __shfl_xor_sync(0xffffffffu, v, offset));
  if constexpr (kGroup > 32) {
    __shared__ A warp_results[kGroup / 32];
    __syncthreads();  // an earlier call may still be reading warp_results
    if (threadIdx.x % 32 == 0) warp_results[threadIdx.x / 32] = v;
    __syncthreads();
    v = warp_results[0];
#pragma unroll
    for (int w = 1; w < kGroup / 32; ++w) v = f(v, warp_results[w]);
  }
  return v;
}

// Thread `lane` folds elements lane, lane + kGroup, ... of the row, then the group combines.
template <int kGroup, typename A, typename Load, typename F>
__device__ A row_allreduce(int64_t n, int lane, A init, Load load, F f) {
  A acc = init;
  for (int64_t j = lane; j < n; j += kGroup) acc = f(acc, load(j));
  return group_allreduce<kGroup>(acc, f);
}

template <typename T>
__device__ T lowest() {
  if constexpr (std::is_floating_point_v<T>)
    return -std::numeric_limits<T>::infinity();
  else
    return std::numeric_limits<T>::lowest();
}
template <typename T>
__device__ T highest() {
  if constexpr (std::is_floating_point_v<T>)
    return std::numeric_limits<T>::infinity();
  else
    return std::numeric_limits<T>::max();
}

// float32 sums accumulate in double, as on the CPU: a long row keeps float32 precision and both backends
// agree closely.
template <typename T>
using Accumulator = std::conditional_t<std::is_same_v<T, float>, double, T>;

// Runs f.run<kGroup>(row, lane) for every row, kGroup threads a row. Every thread of a group walks the same
// rows, so block-wide barriers inside a whole-block group are uniform.
template <int kGroup, typename F>
__global__ void __launch_bounds__(kThreads) group_rows_kernel(int64_t rows, F f) {
  constexpr int kRowsPerBlock = kThreads / kGroup;
  const int lane = threadIdx.x % kGroup;
  for (int64_t row = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / kGroup; row < rows;
       row += int64_t{gridDim.x} * kRowsPerBlock)
    f.template run<kGroup>(row, lane);
}

// A warp per row of up to kWarpRowLimit elements, a block per longer row.
template <typename F>
void launch_rows(int64_t rows, int64_t row_length, const F& f) {
  if (rows == 0) return;
  if (row_length <= kWarpRowLimit) {
    constexpr int kRowsPerBlock = kThreads / 32;
    int64_t blocks = std::min<int64_t>((rows + kRowsPerBlock - 1) / kRowsPerBlock, kMaxBlocks);
    group_rows_kernel<32><<<static_cast<unsigned>(blocks), kThreads>>>(rows, f);
  } else {
    group_rows_kernel<kThreads>
        <<<static_cast<unsigned>(std::min<int64_t>(rows, kMaxBlocks)), kThreads>>>(rows, f);
  }
  LOOM_CUDA_CHECK_LAUNCH();
}

// The element offset at which row `row` starts in a tensor (any strides) whose last dim is the row: the row
// index is decomposed row-major over the leading dims (a mask expanded to an input's shape, for instance).
struct RowOffsets {
  int leading = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};
  int64_t last_stride = 0;

  __device__ int64_t at(int64_t row) const {
    int64_t off = 0;
    for (int d = leading - 1; d >= 0; --d) {
      off += (row % sizes[d]) * strides[d];
      row /= sizes[d];
    }
    return off;
  }
};

inline RowOffsets row_offsets(const Tensor& t) {
  RowOffsets r;
  if (t.dim() == 0) return r;
  r.leading = static_cast<int>(t.dim() - 1);
  for (int d = 0; d < r.leading; ++d) {
    r.sizes[d] = t.size(d);
    r.strides[d] = t.stride(d);
  }
  r.last_stride = t.stride(-1);
  return r;
}

}  // namespace loom::cuda
