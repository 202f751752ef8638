// Sorting on the GPU: a stable segmented radix sort (CUB) of order-preserving unsigned keys, one segment per
// row along the sorted dim; topk is the first k of that sort. The keys are those of the CPU kernel
// (ops/cpu/cpu_index.cpp): NaN above +inf, -0.0 equal to +0.0, and complemented for descending order, so a
// stable ascending sort gives exactly the CPU's order, ties included (the lower index first).
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>
#include <vector>

#include "loom/cuda/cuda_backend_impl.h"
#include "loom/cuda/launch.cuh"

namespace loom::cuda {
namespace {

template <typename T>
struct SortKey;
template <>
struct SortKey<float> {
  using type = uint32_t;
  __device__ static type of(float x) {
    if (x != x) return ~type(0);
    const uint32_t u = __float_as_uint(x == 0.0f ? 0.0f : x);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  }
};
template <>
struct SortKey<double> {
  using type = uint64_t;
  __device__ static type of(double x) {
    if (x != x) return ~type(0);
    const uint64_t u = static_cast<uint64_t>(__double_as_longlong(x == 0.0 ? 0.0 : x));
    return (u & (uint64_t(1) << 63)) ? ~u : (u | (uint64_t(1) << 63));
  }
};
template <>
struct SortKey<int64_t> {
  using type = uint64_t;
  __device__ static type of(int64_t x) { return static_cast<uint64_t>(x) ^ (uint64_t(1) << 63); }
};
template <>
struct SortKey<int32_t> {
  using type = uint32_t;
  __device__ static type of(int32_t x) { return static_cast<uint32_t>(x) ^ 0x80000000u; }
};
template <>
struct SortKey<bool> {
  using type = uint32_t;
  __device__ static type of(bool x) { return x ? 1u : 0u; }
};

// keys[i] = key of x[i] (complemented when flip); positions[i] = i's position in its row; segment offsets.
template <typename T>
__global__ void make_keys_kernel(const T* x, typename SortKey<T>::type* keys, int64_t* positions,
                                 int64_t numel, int64_t n, bool flip) {
  using K = typename SortKey<T>::type;
  const K mask = flip ? ~K(0) : K(0);
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < numel;
       i += int64_t{gridDim.x} * blockDim.x) {
    keys[i] = SortKey<T>::of(x[i]) ^ mask;
    positions[i] = i % n;
  }
}

__global__ void segment_offsets_kernel(int* offsets, int64_t segments, int64_t n) {
  for (int64_t s = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; s <= segments;
       s += int64_t{gridDim.x} * blockDim.x)
    offsets[s] = static_cast<int>(s * n);
}

// values[i] = x[row start + order[i]]: the sorted values, read back from the input so that NaN payloads and
// signed zeros survive.
template <typename T>
__global__ void take_sorted_kernel(const T* x, const int64_t* order, T* values, int64_t numel, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < numel;
       i += int64_t{gridDim.x} * blockDim.x)
    values[i] = x[i - i % n + order[i]];
}

// Raw device scratch from the caching allocator (so it shows in the memory statistics).
Tensor scratch_bytes(size_t bytes, Device device) {
  return Tensor::empty({static_cast<int64_t>((bytes + 7) / 8)}, {DType::Int64, device});
}

struct SortedRows {
  Tensor values;              // [..., n] contiguous, the sorted dim last
  Tensor indices;             // int64, like values
  std::vector<int64_t> perm;  // the permutation of in's dims that put the sorted dim last
};

__global__ void iota_kernel(int64_t* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    out[i] = i;
}

// CUB's radix sort of (key, value) pairs, stable: one segmented sort of `segments` rows of n, or, for a
// single row, the device-wide sort (the segmented one gives each segment one thread block, so a single long
// row would run on one multiprocessor).
template <typename K>
void sort_pairs(const K* keys_in, K* keys_out, const int64_t* values_in, int64_t* values_out, int64_t numel,
                int64_t segments, int64_t n, int end_bit, Device device) {
  size_t temp_bytes = 0;
  const int items = static_cast<int>(numel);
  if (segments == 1) {
    LOOM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in, keys_out, values_in,
                                                    values_out, items, 0, end_bit));
    Tensor temp = scratch_bytes(temp_bytes, device);
    LOOM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.data_ptr(), temp_bytes, keys_in, keys_out, values_in,
                                                    values_out, items, 0, end_bit));
    return;
  }
  Tensor offsets = Tensor::empty({segments + 1}, {DType::Int32, device});
  segment_offsets_kernel<<<blocks_for(segments + 1), kThreads>>>(ptr<int>(offsets), segments, n);
  LOOM_CUDA_CHECK_LAUNCH();
  const int* begin = ptr<int>(offsets);
  LOOM_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairs(nullptr, temp_bytes, keys_in, keys_out, values_in,
                                                           values_out, items, static_cast<int>(segments),
                                                           begin, begin + 1, 0, end_bit));
  Tensor temp = scratch_bytes(temp_bytes, device);
  LOOM_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairs(
      temp.data_ptr(), temp_bytes, keys_in, keys_out, values_in, values_out, items,
      static_cast<int>(segments), begin, begin + 1, 0, end_bit));
}

// Sorts every row of `in` along dim (ascending, or descending when flip), stably.
SortedRows sort_rows(const Tensor& in, int64_t dim, bool flip, const char* op) {
  const int64_t numel = in.numel(), n = in.size(dim), segments = numel / n;
  LOOM_CHECK(numel <= INT_MAX, op, ": a CUDA tensor of ", numel, " elements (shape ", in.shape(),
             ") is beyond the 2^31 - 1 elements CUB's radix sort takes");
  SortedRows r;
  for (int64_t d = 0; d < in.dim(); ++d)
    if (d != dim) r.perm.push_back(d);
  r.perm.push_back(dim);
  Tensor rows_last = in.permute(r.perm);
  Tensor work = rows_last;
  if (!rows_last.is_contiguous()) {
    work = Tensor::empty(rows_last.shape(), in.options());
    backend_for(in.device()).copy(rows_last, work);
  }
  const Device device = in.device();
  r.values = Tensor::empty(rows_last.shape(), in.options());
  r.indices = Tensor::empty(rows_last.shape(), {DType::Int64, device});
  LOOM_DISPATCH_ALL(in.dtype(), op, [&] {
    using T = scalar_t;
    using K = typename SortKey<T>::type;
    const DType key_dtype = sizeof(K) == 4 ? DType::Int32 : DType::Int64;  // bit patterns only
    Tensor keys_in = Tensor::empty({numel}, {key_dtype, device});
    Tensor keys_out = Tensor::empty({numel}, {key_dtype, device});
    Tensor positions = Tensor::empty({numel}, {DType::Int64, device});
    K* k_in = static_cast<K*>(keys_in.data_ptr());
    K* k_out = static_cast<K*>(keys_out.data_ptr());
    make_keys_kernel<T>
        <<<blocks_for(numel), kThreads>>>(ptr<T>(work), k_in, ptr<int64_t>(positions), numel, n, flip);
    LOOM_CUDA_CHECK_LAUNCH();
    // bool keys are 0 and 1, or complemented ~0 and ~1: either way the lowest bit alone orders them.
    const int end_bit = std::is_same_v<T, bool> ? 1 : static_cast<int>(sizeof(K) * 8);
    sort_pairs<K>(k_in, k_out, ptr<int64_t>(positions), ptr<int64_t>(r.indices), numel, segments, n, end_bit,
                  device);
    take_sorted_kernel<T>
        <<<blocks_for(numel), kThreads>>>(ptr<T>(work), ptr<int64_t>(r.indices), ptr<T>(r.values), numel, n);
    LOOM_CUDA_CHECK_LAUNCH();
  });
  return r;
}

}  // namespace

void stable_sort_keys(const Tensor& keys, int key_bits, const Tensor& sorted_keys, const Tensor& order) {
  const int64_t n = keys.numel();
  if (n == 0) return;
  LOOM_CHECK(n <= INT_MAX, "index_add: ", n, " indices are beyond the 2^31 - 1 keys CUB's radix sort takes");
  const Device device = keys.device();
  Tensor positions = Tensor::empty({n}, {DType::Int64, device});
  iota_kernel<<<blocks_for(n), kThreads>>>(ptr<int64_t>(positions), n);
  LOOM_CUDA_CHECK_LAUNCH();
  // Non-negative int64 keys order as their unsigned bit patterns.
  sort_pairs<uint64_t>(static_cast<const uint64_t*>(keys.data_ptr()),
                       static_cast<uint64_t*>(sorted_keys.data_ptr()), ptr<int64_t>(positions),
                       ptr<int64_t>(order), n, 1, n, std::clamp(key_bits, 1, 64), device);
}

void CudaBackend::sort(const Tensor& in, int64_t dim, bool descending, const Tensor& values,
                       const Tensor& indices) {
  if (in.numel() == 0) return;
  DeviceGuard guard(device_);
  SortedRows r = sort_rows(in, dim, descending, "sort");
  copy(r.values, values.permute(r.perm));
  copy(r.indices, indices.permute(r.perm));
}

void CudaBackend::topk(const Tensor& in, int64_t k, int64_t dim, bool largest, const Tensor& values,
                       const Tensor& indices) {
  if (values.numel() == 0) return;
  DeviceGuard guard(device_);
  // A full sort: the first k of the stable order are the k extremes, ties to the lower index.
  SortedRows r = sort_rows(in, dim, largest, "topk");
  const int64_t last = in.dim() - 1;
  copy(r.values.narrow(last, 0, k), values.permute(r.perm));
  copy(r.indices.narrow(last, 0, k), indices.permute(r.perm));
}

}  // namespace loom::cuda
