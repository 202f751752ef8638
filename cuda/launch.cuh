#pragma once
// Device-side building blocks shared by the kernel files: an offset calculator for strided operands
// (broadcast operands are stride-0 views), grid-stride elementwise launchers with a contiguous fast path, and
// the dtype conversion every copy uses.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <concepts>
#include <cstdint>
#include <type_traits>

#include "loom/core/tensor.h"
#include "loom/cuda/cuda_check.h"

namespace loom::cuda {

constexpr int kThreads = 256;
// Grid-stride loops cover any size; more blocks than this only adds scheduling overhead.
constexpr int64_t kMaxBlocks = int64_t{1} << 16;

inline unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

// Kernel launches report configuration errors only through cudaGetLastError.
#define LOOM_CUDA_CHECK_LAUNCH() LOOM_CUDA_CHECK(cudaGetLastError())

template <typename T>
T* ptr(const Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

// static_cast, except that conversion to bool tests != 0 (as the CPU does).
template <typename To, typename From>
__host__ __device__ __forceinline__ To convert(From v) {
  if constexpr (std::is_same_v<To, bool>) {
    return v != From(0);
  } else {
    return static_cast<To>(v);
  }
}

template <int N>
struct Offsets {
  int64_t v[N];
};

// Element offsets of N operands sharing one shape. Dims of size 1 are dropped and neighbouring dims merged
// when every operand's strides allow it (as cpu::StridedLoop does), so most tensors need one or two dims.
// Stored innermost first and passed to kernels by value; the loop is unrolled so the arrays stay in registers
// and constant memory.
template <int N>
struct StridedIndexer {
  int ndim = 1;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims][N] = {};

  __device__ __forceinline__ Offsets<N> get(int64_t linear) const {
    Offsets<N> o;
#pragma unroll
    for (int k = 0; k < N; ++k) o.v[k] = 0;
#pragma unroll
    for (int d = 0; d < kMaxDims; ++d) {
      if (d == ndim - 1) {  // the outermost dim needs no division
#pragma unroll
        for (int k = 0; k < N; ++k) o.v[k] += linear * strides[d][k];
        break;
      }
      int64_t i = linear % sizes[d];
      linear /= sizes[d];
#pragma unroll
      for (int k = 0; k < N; ++k) o.v[k] += i * strides[d][k];
    }
    return o;
  }

  bool contiguous() const {
    if (ndim != 1) return false;
    for (int k = 0; k < N; ++k)
      if (strides[0][k] != 1) return false;
    return true;
  }
};

template <int N>
StridedIndexer<N> make_indexer(const std::array<Tensor, N>& operands) {
  const Shape& full = operands[0].shape();
  Shape shape;
  Shape strides[N];
  for (size_t d = 0; d < full.size(); ++d) {
    if (full[d] == 1) continue;
    bool merge = !shape.empty();
    for (int k = 0; merge && k < N; ++k) merge = strides[k].back() == operands[k].strides()[d] * full[d];
    if (merge) {
      shape.back() *= full[d];
      for (int k = 0; k < N; ++k) strides[k].back() = operands[k].strides()[d];
    } else {
      shape.push_back(full[d]);
      for (int k = 0; k < N; ++k) strides[k].push_back(operands[k].strides()[d]);
    }
  }
  StridedIndexer<N> idx;
  if (shape.empty()) {  // one element: the contiguous path reads it at offset 0
    idx.sizes[0] = 1;
    for (int k = 0; k < N; ++k) idx.strides[0][k] = 1;
    return idx;
  }
  idx.ndim = static_cast<int>(shape.size());
  for (int d = 0; d < idx.ndim; ++d) {
    idx.sizes[d] = shape[idx.ndim - 1 - d];
    for (int k = 0; k < N; ++k) idx.strides[d][k] = strides[k][idx.ndim - 1 - d];
  }
  return idx;
}

// f(i) for contiguous operands, f(offsets) otherwise: every functor below provides both.
template <typename F>
__global__ void contiguous_kernel(int64_t n, F f) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    f(i);
}

// V consecutive elements, loaded or stored as one 16-byte (or narrower) access where they are aligned to it.
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <int V, typename T>
__device__ __forceinline__ Pack<std::remove_const_t<T>, V> load_pack(T* p, int64_t i) {
  return *reinterpret_cast<const Pack<std::remove_const_t<T>, V>*>(p + i);
}
template <int V, typename T>
__device__ __forceinline__ void store_pack(T* p, int64_t i, const Pack<T, V>& x) {
  *reinterpret_cast<Pack<T, V>*>(p + i) = x;
}

// Whether p may be accessed V elements at a time (the allocator's blocks are; a view at an odd offset is not).
template <int V, typename T>
bool pack_aligned(const T* p) {
  return reinterpret_cast<uintptr_t>(p) % (sizeof(T) * V) == 0;
}

// A functor that can run V elements at once: pack<V>(i) does elements i .. i+V-1 (i a multiple of V) with one
// vector access per operand; aligned<V>() says whether every operand's pointer allows it; kWidest is its
// widest operand's size in bytes, which sets V so that access is 16 bytes.
template <typename F>
concept Packable = requires(const F& f) {
  { F::kWidest } -> std::convertible_to<int>;
  { f.template aligned<2>() } -> std::same_as<bool>;
};

// The contiguous path, V elements a thread per step: a warp's loads are 16-byte vector loads, a quarter of
// the memory instructions of scalar ones (PyTorch's vectorized_elementwise_kernel does the same). The tail,
// fewer than V elements, goes one at a time.
template <int V, typename F>
__global__ void packed_kernel(int64_t n, F f) {
  const int64_t packs = n / V, first = blockIdx.x * int64_t{blockDim.x} + threadIdx.x,
                stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t p = first; p < packs; p += stride) f.template pack<V>(p * V);
  for (int64_t i = packs * V + first; i < n; i += stride) f(i);
}

template <int N, typename F>
__global__ void strided_kernel(int64_t n, StridedIndexer<N> idx, F f) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    f(idx.get(i));
}

// Runs f over every element of operands[0]'s shape (the output comes first).
template <int N, typename F>
void launch_elementwise(const std::array<Tensor, N>& operands, const F& f) {
  int64_t n = operands[0].numel();
  if (n == 0) return;
  StridedIndexer<N> idx = make_indexer<N>(operands);
  if (idx.contiguous()) {
    if constexpr (Packable<F>) {
      constexpr int V = F::kWidest >= 16 ? 1 : 16 / F::kWidest;
      if (V > 1 && n >= V && f.template aligned<V>()) {
        packed_kernel<V><<<blocks_for((n + V - 1) / V), kThreads>>>(n, f);
        LOOM_CUDA_CHECK_LAUNCH();
        return;
      }
    }
    contiguous_kernel<<<blocks_for(n), kThreads>>>(n, f);
  } else {
    strided_kernel<N><<<blocks_for(n), kThreads>>>(n, idx, f);
  }
  LOOM_CUDA_CHECK_LAUNCH();
}

// out = op(in)
template <typename Out, typename In, typename Op>
struct Map1 {
  Out* out;
  const In* in;
  Op op;
  __device__ __forceinline__ void operator()(int64_t i) const { out[i] = op(in[i]); }
  __device__ __forceinline__ void operator()(const Offsets<2>& o) const { out[o.v[0]] = op(in[o.v[1]]); }

  static constexpr int kWidest = static_cast<int>(std::max(sizeof(Out), sizeof(In)));
  template <int V>
  bool aligned() const {
    return pack_aligned<V>(out) && pack_aligned<V>(in);
  }
  template <int V>
  __device__ __forceinline__ void pack(int64_t i) const {
    const Pack<In, V> x = load_pack<V>(in, i);
    Pack<Out, V> y;
#pragma unroll
    for (int k = 0; k < V; ++k) y.v[k] = op(x.v[k]);
    store_pack<V>(out, i, y);
  }
};

}  // namespace loom::cuda
