#pragma once
// The multi-dimensional attention problem as the backends' kernels see it (ops/cpu/cpu_multidim_attention.cpp
// and cuda/cuda_multidim_attention.cu): the operands' pointers and strides, and which (query, key) pairs may
// meet. One definition serves both, in host and device code, so the two kernels cannot disagree on a mask.
#include <cstdint>

#include "loom/core/host_device.h"
#include "loom/ops/multidim_attention.h"

namespace loom {

// [N, L, d] operands with a unit last stride (any strides in N and L), a [d] bias, and an optional [N, L]
// contiguous padding mask.
template <typename T>
struct MultiDimProblem {
  int64_t n, l, d;
  T c, inv_c;
  const T *q, *k, *v, *bias;
  int64_t q0, q1, k0, k1, v0, v1;  // strides of dims 0 and 1
  const bool* pad;                 // [N, L] contiguous, or null
  AttentionDirection dir;
  bool mask_queries;

  // From the op's operands, already checked (dtype T, one device, the shapes above) by multi_dim_attention.
  MultiDimProblem(const Tensor& tq, const Tensor& tk, const Tensor& tv, const Tensor& tb, const Tensor& tpad,
                  AttentionDirection dir_, double c_, bool mask_queries_)
      : n(tq.size(0)),
        l(tq.size(1)),
        d(tq.size(2)),
        c(static_cast<T>(c_)),
        inv_c(static_cast<T>(1.0 / c_)),
        q(static_cast<const T*>(tq.data_ptr())),
        k(static_cast<const T*>(tk.data_ptr())),
        v(static_cast<const T*>(tv.data_ptr())),
        bias(static_cast<const T*>(tb.data_ptr())),
        q0(tq.stride(0)),
        q1(tq.stride(1)),
        k0(tk.stride(0)),
        k1(tk.stride(1)),
        v0(tv.stride(0)),
        v1(tv.stride(1)),
        pad(tpad.defined() ? static_cast<const bool*>(tpad.data_ptr()) : nullptr),
        dir(dir_),
        mask_queries(mask_queries_) {}

  // Row i of sequence b of each operand.
  LOOM_HOST_DEVICE const T* q_at(int64_t b, int64_t i) const { return q + b * q0 + i * q1; }
  LOOM_HOST_DEVICE const T* k_at(int64_t b, int64_t j) const { return k + b * k0 + j * k1; }
  LOOM_HOST_DEVICE const T* v_at(int64_t b, int64_t j) const { return v + b * v0 + j * v1; }

  LOOM_HOST_DEVICE bool padded(int64_t b, int64_t t) const { return pad != nullptr && pad[b * l + t]; }
  // Whether query i of sequence b sees no key at all because it is padding itself.
  LOOM_HOST_DEVICE bool query_blocked(int64_t b, int64_t i) const { return mask_queries && padded(b, i); }

  // Whether the direction lets query i see key j (padding is checked separately).
  LOOM_HOST_DEVICE bool sees(int64_t i, int64_t j) const {
    switch (dir) {
      case AttentionDirection::Forward:
        return j < i;
      case AttentionDirection::Backward:
        return j > i;
      case AttentionDirection::NoDiagonal:
        return j != i;
      default:
        return true;
    }
  }
  // The keys the direction lets query i see: [begin, end), skipping `skip` (-1: none).
  LOOM_HOST_DEVICE void keys(int64_t i, int64_t& begin, int64_t& end, int64_t& skip) const {
    begin = dir == AttentionDirection::Backward ? i + 1 : 0;
    end = dir == AttentionDirection::Forward ? i : l;
    skip = dir == AttentionDirection::NoDiagonal ? i : -1;
  }
  // The queries the direction lets see key j (the transpose of keys()).
  LOOM_HOST_DEVICE void queries(int64_t j, int64_t& begin, int64_t& end, int64_t& skip) const {
    begin = dir == AttentionDirection::Forward ? j + 1 : 0;
    end = dir == AttentionDirection::Backward ? j : l;
    skip = dir == AttentionDirection::NoDiagonal ? j : -1;
  }
  // The keys that queries [first, last) may see between them, as [begin, end).
  LOOM_HOST_DEVICE void key_range(int64_t first, int64_t last, int64_t& begin, int64_t& end) const {
    int64_t unused_end, unused_begin, skip;
    keys(first, begin, unused_end, skip);
    keys(last - 1, unused_begin, end, skip);
  }
  // The queries that keys [first, last) may be seen by, as [begin, end).
  LOOM_HOST_DEVICE void query_range(int64_t first, int64_t last, int64_t& begin, int64_t& end) const {
    int64_t unused_end, unused_begin, skip;
    queries(first, begin, unused_end, skip);
    queries(last - 1, unused_begin, end, skip);
  }
};

}  // namespace loom
