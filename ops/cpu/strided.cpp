#include "loom/ops/cpu/strided.h"

namespace loom::cpu {

StridedLoop::StridedLoop(const std::vector<Tensor>& operands) {
  n_operands = static_cast<int>(operands.size());
  LOOM_CHECK(n_operands >= 1 && n_operands <= kMaxOperands, "StridedLoop: expected 1 to ", kMaxOperands, " operands");
  const Shape& full = operands[0].shape();
  for (int k = 0; k < n_operands; ++k) {
    base[k] = static_cast<char*>(operands[k].data_ptr());
    elem_size[k] = static_cast<int64_t>(operands[k].element_size());
  }
  // Drop size-1 dims, then merge dim i into i+1 when stride[i] == stride[i+1] * size[i+1] for every operand.
  for (size_t d = 0; d < full.size(); ++d) {
    if (full[d] == 1) continue;
    bool merge = !shape.empty();
    for (int k = 0; merge && k < n_operands; ++k)
      merge = strides[k].back() == operands[k].strides()[d] * full[d];
    if (merge) {
      shape.back() *= full[d];
      for (int k = 0; k < n_operands; ++k) strides[k].back() = operands[k].strides()[d];
    } else {
      shape.push_back(full[d]);
      for (int k = 0; k < n_operands; ++k) strides[k].push_back(operands[k].strides()[d]);
    }
  }
  if (shape_numel(full) == 0) {
    shape = Shape{0};
    for (int k = 0; k < n_operands; ++k) strides[k] = Shape{1};
  }
}

int64_t StridedLoop::numel() const { return shape_numel(shape); }

char* StridedLoop::row_ptr(int op, int64_t row) const {
  int64_t off = 0;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 2; d >= 0; --d) {
    int64_t i = row % shape[d];
    row /= shape[d];
    off += i * strides[op][d];
  }
  return base[op] + off * elem_size[op];
}

}  // namespace loom::cpu
