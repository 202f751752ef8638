// Head geometry and input checks of the multi-head attention layers.
#include "loom/nn/attention_heads.h"

#include <string>

namespace loom::nn {

int64_t resolve_head_dim(const char* layer, int64_t d_model, int64_t num_heads, int64_t head_dim) {
  LOOM_CHECK(d_model > 0 && num_heads > 0, layer, ": d_model and num_heads must be positive, got ", d_model, " and ",
             num_heads);
  if (head_dim < 0) {
    LOOM_CHECK(d_model % num_heads == 0, layer, ": d_model ", d_model, " is not divisible by num_heads ", num_heads,
               " (or give head_dim)");
    head_dim = d_model / num_heads;
  }
  LOOM_CHECK(head_dim > 0, layer, ": head_dim must be positive, got ", head_dim);
  return head_dim;
}

void check_sequence_input(const char* layer, int64_t d_model, const Tensor& x) {
  LOOM_CHECK(x.defined() && x.dim() == 3 && x.size(2) == d_model, layer, "(d_model=", d_model,
             "): input must be [B, L, ", d_model, "], got ",
             x.defined() ? shape_str(x.shape()) : std::string("undefined"));
}

Tensor split_heads(const Tensor& x, int64_t num_heads) {
  return x.view({x.size(0), x.size(1), num_heads, x.size(2) / num_heads}).transpose(1, 2);
}

}  // namespace loom::nn
