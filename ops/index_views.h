#pragma once
// Views that index kernels of every backend walk elementwise (gather, scatter, sort, ... in ops/cpu/ and
// cuda/).
#include <cstdint>

#include "loom/core/tensor.h"

namespace loom {

// `t` viewed with extents `shape` (t's strides kept) and then with `dim` removed: one element per row along
// dim.
inline Tensor rows_of(const Tensor& t, Shape shape, int64_t dim) {
  shape[dim] = 1;
  return t.as_strided(shape, t.strides(), t.offset()).select(dim, 0);
}

// `t` viewed with extents `shape` and stride 0 along `dim`, so an elementwise walk over `shape` visits the
// start of the matching row of t; the kernel adds index * t.stride(dim).
inline Tensor row_starts(const Tensor& t, const Shape& shape, int64_t dim) {
  Shape strides = t.strides();
  strides[dim] = 0;
  return t.as_strided(shape, strides, t.offset());
}

}  // namespace loom
