#pragma once
// Walking strided tensors on the CPU. StridedLoop coalesces dims that are contiguous with each other and visits
// the tensor as (outer index, inner run); kernels write their inner loop once for unit or general strides.
#include <cstdint>
#include <vector>

#include "loom/core/tensor.h"

namespace loom::cpu {

// Up to 4 operands sharing one shape (out first). Dims of size 1 are dropped and adjacent dims merged when every
// operand's strides allow it, so a contiguous tensor becomes one run.
struct StridedLoop {
  static constexpr int kMaxOperands = 4;
  int n_operands = 0;
  Shape shape;  // after coalescing; shape.back() is the inner run length
  Shape strides[kMaxOperands];  // in elements
  char* base[kMaxOperands] = {};
  int64_t elem_size[kMaxOperands] = {};

  explicit StridedLoop(const std::vector<Tensor>& operands);
  int64_t numel() const;
  int64_t inner_size() const { return shape.empty() ? 1 : shape.back(); }
  int64_t outer_size() const { return inner_size() == 0 ? 0 : numel() / inner_size(); }
  int64_t inner_stride(int op) const { return shape.empty() ? 0 : strides[op].back(); }
  // Element pointer of operand `op` at the start of outer row `row` (row-major over all dims but the last).
  char* row_ptr(int op, int64_t row) const;
};

// Calls fn(ptrs, inner_strides_in_elements, n) for each inner run, rows split over the thread pool.
template <typename Fn>
void for_each_run(const StridedLoop& loop, int64_t grain_elems, Fn&& fn);

}  // namespace loom::cpu

#include "loom/ops/cpu/strided_impl.h"
