#pragma once
// What the multi-head attention layers over [B, L, d_model] share: their head geometry and their input check.
#include <cstdint>

#include "loom/core/tensor.h"

namespace loom::nn {

// head_dim as given, or d_model / num_heads when it is -1; throws naming `layer` when the sizes do not fit.
int64_t resolve_head_dim(const char* layer, int64_t d_model, int64_t num_heads, int64_t head_dim);

// x must be [B, L, d_model]; the error names the layer, its d_model and x's shape.
void check_sequence_input(const char* layer, int64_t d_model, const Tensor& x);

// x [B, L, H * head_dim] (a projection's output) viewed as heads [B, H, L, head_dim], without a copy.
Tensor split_heads(const Tensor& x, int64_t num_heads);

}  // namespace loom::nn
