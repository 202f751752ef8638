#pragma once
// CUB's stable radix sorts of (key, value) pairs as the CUDA emulation provides them: std::stable_sort on the
// keys' bits [begin_bit, end_bit), which orders exactly as CUB's LSD radix sort does.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <type_traits>
#include <vector>

#include "cuda_runtime_api.h"

namespace cub {
namespace emulation {

template <typename K>
auto radix_bits(K key, int begin_bit, int end_bit) {
  static_assert(std::is_unsigned_v<K>, "CUB emulation: keys are Loom's order-preserving unsigned keys");
  using U = std::conditional_t<(sizeof(K) > 4), uint64_t, uint32_t>;
  U bits = static_cast<U>(key) >> begin_bit;
  const int width = end_bit - begin_bit;
  if (width < static_cast<int>(8 * sizeof(U))) bits &= (U{1} << width) - 1;
  return bits;
}

// Sorts items [begin, end) of the pairs stably by their bits.
template <typename K, typename V>
void sort_range(const K* keys_in, K* keys_out, const V* values_in, V* values_out, int64_t begin, int64_t end,
                int begin_bit, int end_bit) {
  std::vector<int64_t> order(static_cast<size_t>(end - begin));
  std::iota(order.begin(), order.end(), begin);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return radix_bits(keys_in[a], begin_bit, end_bit) < radix_bits(keys_in[b], begin_bit, end_bit);
  });
  std::vector<K> keys(order.size());
  std::vector<V> values(order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    keys[i] = keys_in[order[i]];
    values[i] = values_in[order[i]];
  }
  std::copy(keys.begin(), keys.end(), keys_out + begin);
  std::copy(values.begin(), values.end(), values_out + begin);
}

}  // namespace emulation

struct DeviceRadixSort {
  template <typename K, typename V, typename N>
  static cudaError_t SortPairs(void* temp, size_t& temp_bytes, const K* keys_in, K* keys_out,
                               const V* values_in, V* values_out, N num_items, int begin_bit = 0,
                               int end_bit = sizeof(K) * 8, cudaStream_t = nullptr) {
    if (temp == nullptr) {
      temp_bytes = 1;  // CUB asks for scratch first; the emulation needs none
      return cudaSuccess;
    }
    emulation::sort_range(keys_in, keys_out, values_in, values_out, 0, static_cast<int64_t>(num_items),
                          begin_bit, end_bit);
    return cudaSuccess;
  }
};

}  // namespace cub
