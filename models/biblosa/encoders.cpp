// DisanEncoder and MultiheadEncoder (models/biblosa/encoders.h).
#include "loom/models/biblosa/encoders.h"

#include <cmath>
#include <vector>

#include "loom/nn/init.h"
#include "loom/ops/ops.h"

namespace loom::models {
namespace {

// x [B, n, features] and its padding mask bool [B, n] (or undefined).
void check_input(const char* who, const Tensor& x, int64_t features, const Tensor& padding_mask) {
  LOOM_CHECK(x.defined() && x.dim() == 3 && x.size(2) == features, who, ": expected an input [B, n, ",
             features, "], got ", x.defined() ? describe(x) : std::string("an undefined tensor"));
  if (!padding_mask.defined()) return;
  LOOM_CHECK(padding_mask.dtype() == DType::Bool && padding_mask.dim() == 2 &&
                 padding_mask.size(0) == x.size(0) && padding_mask.size(1) == x.size(1),
             who, ": padding_mask must be bool [", x.size(0), ", ", x.size(1),
             "] (true = padding) for an input ", x.shape(), ", got ", describe(padding_mask));
}

}  // namespace

// ---- DiSAN ------------------------------------------------------------------------------------------------

DisanEncoder::DisanEncoder(int64_t input_dim, int64_t hidden_dim, nn::DirectionalSelfAttentionOptions opts)
    : Module("DisanEncoder") {
  fw = register_module("fw", std::make_shared<nn::DirectionalSelfAttention>(
                                 input_dim, hidden_dim, AttentionDirection::Forward, opts));
  bw = register_module("bw", std::make_shared<nn::DirectionalSelfAttention>(
                                 input_dim, hidden_dim, AttentionDirection::Backward, opts));
}

Tensor DisanEncoder::forward(const Tensor& x, const Tensor& padding_mask) {
  check_input("DisanEncoder", x, fw->input_dim(), padding_mask);
  return cat({fw->forward(x, padding_mask), bw->forward(x, padding_mask)}, 2);
}

// ---- multi-head -------------------------------------------------------------------------------------------

MultiheadEncoder::MultiheadEncoder(int64_t input_dim, int64_t heads, int64_t head_dim, double dropout,
                                   TensorOptions options)
    : Module("MultiheadEncoder"),
      input_dim_(input_dim),
      heads_(heads),
      head_dim_(head_dim),
      dropout_(dropout) {
  LOOM_CHECK(input_dim > 0 && heads > 0 && head_dim > 0,
             "MultiheadEncoder: input_dim, heads and head_dim must be ", "positive, got ", input_dim, ", ",
             heads, " and ", head_dim);
  LOOM_CHECK(dropout >= 0 && dropout < 1, "MultiheadEncoder: dropout must be in [0, 1), got ", dropout);
  weight = register_parameter("weight", empty({3, heads, input_dim, head_dim}, options));
  reset_parameters();
}

void MultiheadEncoder::reset_parameters() {
  // TF's glorot_uniform for shape [3, h, in, out]: receptive field 3 h, fan_in = 3 h in, fan_out = 3 h out.
  const double fans = static_cast<double>(3 * heads_ * (input_dim_ + head_dim_));
  const double limit = std::sqrt(6.0 / fans);
  nn::init::uniform_(weight, -limit, limit);
}

Tensor MultiheadEncoder::positions(int64_t n, int64_t dim, TensorOptions options) {
  LOOM_CHECK(n >= 0 && dim > 0, "MultiheadEncoder::positions: expected length >= 0 and dim > 0, got ", n,
             " and ", dim);
  std::vector<double> pe(static_cast<size_t>(n * dim));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t f = 0; f < dim; ++f) {
      const int64_t even = f - f % 2;
      const double angle =
          static_cast<double>(t) / std::pow(1e4, 2.0 * static_cast<double>(even) / static_cast<double>(dim));
      pe[static_cast<size_t>(t * dim + f)] = f % 2 == 0 ? std::sin(angle) : std::cos(angle);
    }
  return tensor(pe, {n, dim}).to(options.dtype).to(options.device);
}

Tensor MultiheadEncoder::forward(const Tensor& x, const Tensor& padding_mask) {
  check_input("MultiheadEncoder", x, input_dim_, padding_mask);
  const int64_t batch = x.size(0), n = x.size(1), h = heads_, hd = head_dim_, in = input_dim_;
  Tensor rep = add(x, positions(n, in, x.options()));
  if (padding_mask.defined()) rep = masked_fill(rep, padding_mask.unsqueeze(-1), 0.0);
  // Padded keys are excluded (true = may not attend). Padded queries are left attending to the real keys:
  // their rows are unspecified either way (TF gives them a uniform softmax over -1e30 logits).
  Tensor key_mask = padding_mask.defined() ? padding_mask.view({batch, 1, 1, n}) : Tensor();
  if (!is_training()) {
    // [in, 3 h hd] with columns ordered (projection, head, feature): x @ it viewed as [B, n, 3, h, hd] is the
    // packed layout scaled_dot_product_attention_packed takes.
    Tensor w = weight.permute({2, 0, 1, 3}).reshape({in, 3 * h * hd});
    Tensor qkv = matmul(rep, w).view({batch, n, 3, h, hd});
    // [B, h, n, hd] laid out as [B, n, h, hd]: merging the heads is a view.
    return scaled_dot_product_attention_packed(qkv, key_mask)
        .permute({0, 2, 1, 3})
        .reshape({batch, n, h * hd});
  }
  // The reference's training graph: rep tiled [3 h, B n, in], dropped out (a mask per projection and head),
  // one batched GEMM against W viewed [3 h, in, hd].
  Tensor tiled = dropout(rep.reshape({1, batch * n, in}).expand({3 * h, batch * n, in}), dropout_, true);
  Tensor maps = matmul(tiled, weight.view({3 * h, in, hd})).view({3, h, batch, n, hd});
  auto part = [&](int64_t i) { return maps.select(0, i).permute({1, 0, 2, 3}); };  // [B, h, n, hd]
  Tensor q = part(0), k = part(1), v = part(2);
  Tensor scores = mul(matmul(q, k.transpose(-1, -2)), 1.0 / std::sqrt(static_cast<double>(hd)));
  Tensor probs = dropout(softmax(scores, -1, key_mask), dropout_, true);
  return matmul(probs, v).permute({0, 2, 1, 3}).reshape({batch, n, h * hd});
}

}  // namespace loom::models
