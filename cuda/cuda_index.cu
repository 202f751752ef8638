// Indexing kernels on the GPU: gather/scatter, index_select/index_add, tril/triu, arg-reductions and scans.
// As on the CPU (ops/cpu/cpu_index.cpp), scatters give each row (every position of the non-indexed dims) one
// thread that applies the row's index entries in order; index_add sorts its entries stably by destination and
// gives each run of equal destinations a block. Either way repeated indices accumulate race-free and in the
// CPU's order, so results do not vary from run to run. Arg-reductions and scans move the reduced dim last and
// make the rows contiguous first (as cuda_reduce.cu does).
#include <algorithm>
#include <climits>
#include <cstdint>
#include <limits>
#include <vector>

#include "loom/cuda/cuda_backend_impl.h"
#include "loom/cuda/launch.cuh"
#include "loom/cuda/row_reduce.cuh"
#include "loom/ops/index_views.h"

namespace loom::cuda {
namespace {

// The permutation of a rank-`rank` tensor's dims that moves `dim` last.
std::vector<int64_t> dim_last(int64_t rank, int64_t dim) {
  std::vector<int64_t> perm;
  for (int64_t d = 0; d < rank; ++d)
    if (d != dim) perm.push_back(d);
  perm.push_back(dim);
  return perm;
}

// --- gather / scatter ----------------------------------------------------------------------------------

// Operands: out, index, row_starts(in).
template <typename T>
struct Gather {
  T* out;
  const int64_t* index;
  const T* in;
  int64_t in_dim_stride;
  __device__ __forceinline__ void operator()(int64_t i) const { out[i] = in[i + index[i] * in_dim_stride]; }
  __device__ __forceinline__ void operator()(const Offsets<3>& o) const {
    out[o.v[0]] = in[o.v[2] + index[o.v[1]] * in_dim_stride];
  }
};

// Operands: one element per row of self, index and src (rows_of each); the thread walks the row's n entries.
template <typename T, bool kAccumulate>
struct ScatterRow {
  T* self;
  const int64_t* index;
  const T* src;
  int64_t n, self_stride, index_stride, src_stride;

  __device__ void row(int64_t o_self, int64_t o_index, int64_t o_src) const {
    for (int64_t j = 0; j < n; ++j) {
      T& dst = self[o_self + index[o_index + j * index_stride] * self_stride];
      const T v = src[o_src + j * src_stride];
      if constexpr (!kAccumulate) {
        dst = v;
      } else if constexpr (std::is_same_v<T, bool>) {
        dst = dst || v;
      } else {
        dst += v;
      }
    }
  }
  __device__ void operator()(int64_t i) const { row(i, i, i); }
  __device__ void operator()(const Offsets<3>& o) const { row(o.v[0], o.v[1], o.v[2]); }
};

template <typename T, bool kAccumulate>
void scatter_rows(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) {
  const Shape& shape = index.shape();
  ScatterRow<T, kAccumulate> f{ptr<T>(self),     ptr<int64_t>(index), ptr<T>(src),    shape[dim],
                               self.stride(dim), index.stride(dim),   src.stride(dim)};
  launch_elementwise<3>({rows_of(self, shape, dim), rows_of(index, shape, dim), rows_of(src, shape, dim)}, f);
}

// index_add over runs of equal indices: with the entries sorted stably by destination, the block that finds
// the start of a run adds the run's source rows, in increasing source order (the CPU's order), into its
// destination row [o, v, :]; threads cover the row's inner elements. Operands: self [outer, V, inner] and src
// [outer, N, inner] contiguous; sorted[k] = the k-th smallest index, order[k] = its entry in src.
template <typename T>
__global__ void index_add_runs_kernel(T* self, const T* src, const int64_t* sorted, const int64_t* order,
                                      int64_t n, int64_t v_size, int64_t inner) {
  const int64_t o = blockIdx.y;
  for (int64_t k = blockIdx.x; k < n; k += gridDim.x) {
    if (k > 0 && sorted[k] == sorted[k - 1]) continue;  // not the start of a run
    int64_t end = k + 1;
    while (end < n && sorted[end] == sorted[k]) ++end;
    T* dst = self + (o * v_size + sorted[k]) * inner;
    for (int64_t i = threadIdx.x; i < inner; i += blockDim.x) {
      T acc = dst[i];
      for (int64_t r = k; r < end; ++r) {
        const T v = src[(o * n + order[r]) * inner + i];
        if constexpr (std::is_same_v<T, bool>) {
          acc = acc || v;
        } else {
          acc += v;
        }
      }
      dst[i] = acc;
    }
  }
}

// --- tril / triu ---------------------------------------------------------------------------------------

template <typename T>
__global__ void triangle_kernel(const T* in, T* out, int64_t numel, int64_t m, int64_t n, int64_t diagonal,
                                bool upper) {
  for (int64_t l = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; l < numel;
       l += int64_t{gridDim.x} * blockDim.x) {
    const int64_t j = l % n, i = (l / n) % m;
    const bool keep = upper ? j - i >= diagonal : j - i <= diagonal;
    out[l] = keep ? in[l] : T(0);
  }
}

// --- arg-reductions ------------------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ T shuffle_xor(T v, int offset) {
  if constexpr (std::is_same_v<T, bool>) {
    return __shfl_xor_sync(0xffffffffu, static_cast<int>(v), offset) != 0;
  } else if constexpr (std::is_same_v<T, int64_t>) {
    return static_cast<int64_t>(__shfl_xor_sync(0xffffffffu, static_cast<long long>(v), offset));
  } else {
    return __shfl_xor_sync(0xffffffffu, v, offset);
  }
}

constexpr int64_t kNoIndex = std::numeric_limits<int64_t>::max();

// Whether candidate (v, i) beats the held (best, at): the first NaN wins, then the strictly better value,
// then the lower index. (kNoIndex marks "nothing held" and never wins.) A total order on distinct indices, so
// any combining order picks the same element: the CPU's "first extremum, or first NaN".
template <typename T, bool kMax>
__device__ __forceinline__ bool beats(T v, int64_t i, T best, int64_t at) {
  if (i == kNoIndex) return false;
  if (at == kNoIndex) return true;
  const bool v_nan = v != v, best_nan = best != best;
  if (v_nan || best_nan) return v_nan && (!best_nan || i < at);
  if (kMax ? v > best : v < best) return true;
  return v == best && i < at;
}

template <typename T, bool kMax>
struct ArgRows {
  const T* x;
  T* values;
  int64_t* indices;
  int64_t n;

  template <int G>
  __device__ void run(int64_t row, int lane) const {
    const T* xr = x + row * n;
    T best = xr[0];
    int64_t at = kNoIndex;
    for (int64_t j = lane; j < n; j += G) {
      const T v = xr[j];
      if (beats<T, kMax>(v, j, best, at)) {
        best = v;
        at = j;
      }
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
      const T ov = shuffle_xor(best, offset);
      const int64_t oi = shuffle_xor(at, offset);
      if (beats<T, kMax>(ov, oi, best, at)) {
        best = ov;
        at = oi;
      }
    }
    if constexpr (G > 32) {
      __shared__ T warp_best[G / 32];
      __shared__ int64_t warp_at[G / 32];
      __syncthreads();  // the previous row may still be reading them
      if (threadIdx.x % 32 == 0) {
        warp_best[threadIdx.x / 32] = best;
        warp_at[threadIdx.x / 32] = at;
      }
      __syncthreads();
      for (int w = 0; w < G / 32; ++w) {
        if (beats<T, kMax>(warp_best[w], warp_at[w], best, at)) {
          best = warp_best[w];
          at = warp_at[w];
        }
      }
    }
    if (lane == 0) {
      values[row] = best;
      indices[row] = at;
    }
  }
};

// --- scans ---------------------------------------------------------------------------------------------

// As the CPU: floating values accumulate in double, integers (and bool) in wrapping 64-bit arithmetic.
template <typename T>
using ScanAccumulator = std::conditional_t<std::is_floating_point_v<T>, double, uint64_t>;
template <typename T>
using ScanOutput = std::conditional_t<std::is_floating_point_v<T>, T, int64_t>;

// One thread per row: the fold runs in the CPU's order, so both backends round alike.
template <typename T, bool kProd>
__global__ void scan_rows_kernel(const T* x, ScanOutput<T>* y, int64_t rows, int64_t n) {
  using A = ScanAccumulator<T>;
  for (int64_t row = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; row < rows;
       row += int64_t{gridDim.x} * blockDim.x) {
    A acc = kProd ? A(1) : A(0);
    for (int64_t j = 0; j < n; ++j) {
      A v;
      if constexpr (std::is_floating_point_v<T>) {
        v = x[row * n + j];
      } else {
        v = static_cast<uint64_t>(static_cast<int64_t>(x[row * n + j]));  // sign-extends int32
      }
      acc = kProd ? acc * v : acc + v;
      y[row * n + j] = static_cast<ScanOutput<T>>(acc);
    }
  }
}

}  // namespace

void CudaBackend::gather(const Tensor& in, int64_t dim, const Tensor& index, const Tensor& out) {
  if (out.numel() == 0) return;
  DeviceGuard guard(device_);
  LOOM_DISPATCH_ALL(in.dtype(), "gather", [&] {
    using T = scalar_t;
    Tensor starts = row_starts(in, index.shape(), dim);
    launch_elementwise<3>({out, index, starts},
                          Gather<T>{ptr<T>(out), ptr<int64_t>(index), ptr<T>(starts), in.stride(dim)});
  });
}

void CudaBackend::scatter(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src,
                          bool accumulate) {
  if (index.numel() == 0) return;
  DeviceGuard guard(device_);
  LOOM_DISPATCH_ALL(self.dtype(), "scatter", [&] {
    if (accumulate) {
      scatter_rows<scalar_t, true>(self, dim, index, src);
    } else {
      scatter_rows<scalar_t, false>(self, dim, index, src);
    }
  });
}

void CudaBackend::index_select(const Tensor& in, int64_t dim, const Tensor& index, const Tensor& out) {
  if (out.numel() == 0) return;
  // A gather whose index is the 1-d index broadcast over out's other dims.
  Shape strides(out.dim(), 0);
  strides[dim] = index.stride(0);
  gather(in, dim, index.as_strided(out.shape(), strides, index.offset()), out);
}

void CudaBackend::index_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) {
  if (src.numel() == 0) return;
  DeviceGuard guard(device_);
  const int64_t n = index.numel(), v_size = self.size(dim);
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= self.size(d);
  for (int64_t d = dim + 1; d < self.dim(); ++d) inner *= self.size(d);
  if (!self.is_contiguous() || outer > 65535) {
    // A scatter-accumulate whose index is the 1-d index broadcast over src's other dims: one thread per row
    // of the non-indexed dims walks every index entry.
    Shape strides(src.dim(), 0);
    strides[dim] = index.stride(0);
    scatter(self, dim, index.as_strided(src.shape(), strides, index.offset()), src, true);
    return;
  }
  // Embedding and LSH gradients: few rows of the other dims (a [V, 64] table has 64), many entries. Sorting
  // the entries by destination lets a block per destination row add its run, every element of it in parallel.
  Tensor keys = index.is_contiguous() ? index : index.contiguous();
  Tensor sorted = Tensor::empty({n}, {DType::Int64, self.device()});
  Tensor order = Tensor::empty({n}, {DType::Int64, self.device()});
  int bits = 1;
  while (bits < 63 && (int64_t{1} << bits) < v_size) ++bits;  // indices are in [0, v_size)
  stable_sort_keys(keys, bits, sorted, order);
  Tensor source = src.is_contiguous() ? src : src.contiguous();
  const unsigned threads = static_cast<unsigned>(std::clamp<int64_t>((inner + 31) / 32 * 32, 32, kThreads));
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(n, kMaxBlocks)), static_cast<unsigned>(outer));
  LOOM_DISPATCH_ALL(self.dtype(), "index_add", [&] {
    using T = scalar_t;
    index_add_runs_kernel<T><<<grid, threads>>>(ptr<T>(self), ptr<T>(source), ptr<int64_t>(sorted),
                                                ptr<int64_t>(order), n, v_size, inner);
    LOOM_CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::triangle(const Tensor& in, int64_t diagonal, bool upper, const Tensor& out) {
  const int64_t numel = in.numel();
  if (numel == 0) return;
  DeviceGuard guard(device_);
  const int64_t m = in.size(-2), n = in.size(-1);
  LOOM_DISPATCH_ALL(in.dtype(), "tril/triu", [&] {
    using T = scalar_t;
    Tensor src = in.is_contiguous() ? in : Tensor::empty(in.shape(), in.options());
    if (!src.is_same(in)) copy(in, src);
    Tensor dst = out.is_contiguous() ? out : Tensor::empty(out.shape(), out.options());
    triangle_kernel<T>
        <<<blocks_for(numel), kThreads>>>(ptr<T>(src), ptr<T>(dst), numel, m, n, diagonal, upper);
    LOOM_CUDA_CHECK_LAUNCH();
    if (!dst.is_same(out)) copy(dst, out);
  });
}

void CudaBackend::arg_reduce(ArgReduceOp op, const Tensor& in, int64_t dim, const Tensor& values,
                             const Tensor& indices) {
  const int64_t n = in.size(dim);
  const int64_t rows = values.numel();
  if (rows == 0 || n == 0) return;
  DeviceGuard guard(device_);
  Tensor rows_last = in.permute(dim_last(in.dim(), dim));
  Tensor work = rows_last.is_contiguous() ? rows_last : Tensor::empty(rows_last.shape(), in.options());
  if (!work.is_same(rows_last)) copy(rows_last, work);
  // values and indices have in's shape with dim set to 1: contiguous, their elements are work's rows in
  // order.
  Tensor vals = values.is_contiguous() ? values : Tensor::empty(values.shape(), values.options());
  Tensor idx = indices.is_contiguous() ? indices : Tensor::empty(indices.shape(), indices.options());
  LOOM_DISPATCH_ALL(in.dtype(), op == ArgReduceOp::Max ? "max" : "min", [&] {
    using T = scalar_t;
    if (op == ArgReduceOp::Max) {
      launch_rows(rows, n, ArgRows<T, true>{ptr<T>(work), ptr<T>(vals), ptr<int64_t>(idx), n});
    } else {
      launch_rows(rows, n, ArgRows<T, false>{ptr<T>(work), ptr<T>(vals), ptr<int64_t>(idx), n});
    }
  });
  if (!vals.is_same(values)) copy(vals, values);
  if (!idx.is_same(indices)) copy(idx, indices);
}

void CudaBackend::scan(ScanOp op, const Tensor& in, int64_t dim, const Tensor& out) {
  if (in.numel() == 0) return;
  DeviceGuard guard(device_);
  const int64_t n = in.size(dim), rows = in.numel() / n;
  const std::vector<int64_t> perm = dim_last(in.dim(), dim);
  Tensor rows_last = in.permute(perm);
  Tensor work = rows_last.is_contiguous() ? rows_last : Tensor::empty(rows_last.shape(), in.options());
  if (!work.is_same(rows_last)) copy(rows_last, work);
  Tensor out_rows_last = out.permute(perm);
  Tensor result =
      out_rows_last.is_contiguous() ? out_rows_last : Tensor::empty(out_rows_last.shape(), out.options());
  LOOM_DISPATCH_ALL(in.dtype(), op == ScanOp::Cumsum ? "cumsum" : "cumprod", [&] {
    using T = scalar_t;
    using O = ScanOutput<T>;
    LOOM_CHECK(out.dtype() == dtype_of_v<O>, "scan: internal error: output dtype ", dtype_name(out.dtype()),
               " where ", dtype_name(dtype_of_v<O>), " was expected");
    if (op == ScanOp::Cumsum) {
      scan_rows_kernel<T, false><<<blocks_for(rows), kThreads>>>(ptr<T>(work), ptr<O>(result), rows, n);
    } else {
      scan_rows_kernel<T, true><<<blocks_for(rows), kThreads>>>(ptr<T>(work), ptr<O>(result), rows, n);
    }
    LOOM_CUDA_CHECK_LAUNCH();
  });
  if (!result.is_same(out_rows_last)) copy(result, out_rows_last);
}

}  // namespace loom::cuda
