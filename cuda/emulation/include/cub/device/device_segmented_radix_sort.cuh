#pragma once
// CUB's segmented stable radix sort as the CUDA emulation provides it (see device_radix_sort.cuh).
#include "cub/device/device_radix_sort.cuh"

namespace cub {

struct DeviceSegmentedRadixSort {
  template <typename K, typename V, typename BeginOffsets, typename EndOffsets>
  static cudaError_t SortPairs(void* temp, size_t& temp_bytes, const K* keys_in, K* keys_out,
                               const V* values_in, V* values_out, int /*num_items*/, int num_segments,
                               BeginOffsets begin_offsets, EndOffsets end_offsets, int begin_bit = 0,
                               int end_bit = sizeof(K) * 8, cudaStream_t = nullptr) {
    if (temp == nullptr) {
      temp_bytes = 1;
      return cudaSuccess;
    }
    for (int s = 0; s < num_segments; ++s)
      emulation::sort_range(keys_in, keys_out, values_in, values_out, begin_offsets[s], end_offsets[s],
                            begin_bit, end_bit);
    return cudaSuccess;
  }
};

}  // namespace cub
