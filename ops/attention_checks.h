#pragma once
// Argument checks the attention ops (scaled_dot_product_attention, multi_dim_attention, local_attention)
// share (internal to ops/).
#include "loom/core/tensor.h"

namespace loom::detail {

// One operand `name` of attention op `op` next to q: defined, floating, and of q's dtype and device (pass q
// itself to check q). The error names the op, the operand and what differs.
void check_attention_operand(const char* op, const char* name, const Tensor& t, const Tensor& q);

}  // namespace loom::detail
