#pragma once
// The two baseline sentence encoders TextClassifier offers next to Bi-BloSA (models/biblosa/text_classifier.h),
// as the reference TF code builds them (taoshen58/BiBloSA context_fusion/context_fusion.py and self_attn.py):
//
//   DisanEncoder      DiSAN's encoder: forward and backward DiSA over the whole sentence, untied, concatenated
//                     ('disa' in context_fusion_layers): [B, n, d_in] -> [B, n, 2d].
//   MultiheadEncoder  'multi_head' (self_attn.py multi_head_attention): the input plus the reference's sinusoid
//                     positions, zeroed at padding, projected straight to per-head queries, keys and values by
//                     one weight W [3, heads, d_in, head_dim] with no bias, scaled dot-product attention per
//                     head, heads concatenated: [B, n, d_in] -> [B, n, heads * head_dim]. No output
//                     projection, residual, feed-forward or LayerNorm. The reference calls it with 8 heads of
//                     75 (600 = 2d at d = 300).
#include <cstdint>
#include <memory>

#include "loom/nn/block_attention.h"
#include "loom/nn/module.h"

namespace loom::models {

class DisanEncoder : public nn::Module {
 public:
  // Parameters: 2 (d_in d + 4 d^2 + 5 d) (spec §4).
  DisanEncoder(int64_t input_dim, int64_t hidden_dim, nn::DirectionalSelfAttentionOptions opts = {});

  // x [B, n, input_dim], padding_mask bool [B, n] (true = padding) or undefined -> [B, n, 2 hidden_dim], zero
  // at padding (DiSA zeroes its output there).
  Tensor forward(const Tensor& x, const Tensor& padding_mask);
  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }

  std::shared_ptr<nn::DirectionalSelfAttention> fw;
  std::shared_ptr<nn::DirectionalSelfAttention> bw;
};

class MultiheadEncoder : public nn::Module {
 public:
  // Parameters: 3 heads input_dim head_dim (W only).
  MultiheadEncoder(int64_t input_dim, int64_t heads, int64_t head_dim, double dropout = 0.0,
                   TensorOptions options = {});

  // x [B, n, input_dim], padding_mask bool [B, n] (true = padding) or undefined -> [B, n, heads * head_dim];
  // rows at padded positions are unspecified (the sentence pooling masks them). Padded keys get weight 0.
  //
  // In training mode the reference's layout runs: the input tiled once per (projection, head), so each of the
  // 3 heads projections drops out its input with its own mask (as TF's dropout on the tiled tensor), and the
  // attention probabilities are dropped out before the weighted sum. In eval mode (no dropout) the same
  // values come from one packed GEMM and the fused scaled_dot_product_attention.
  Tensor forward(const Tensor& x, const Tensor& padding_mask);
  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }
  // TF's default init of W: Glorot-uniform with TF's fans for a rank-4 variable (fan_in = 3 heads input_dim,
  // fan_out = 3 heads head_dim).
  void reset_parameters();

  // The reference's position signal [n, dim] (not tensor2tensor's timing_signal_1d): feature f even is
  // sin(t / 10000^(2 f / dim)), f odd is cos(t / 10000^(2 (f - 1) / dim)): interleaved sin/cos pairs whose
  // exponent uses f where the Transformer paper uses f / 2, kept for parity.
  static Tensor positions(int64_t n, int64_t dim, TensorOptions options = {});

  int64_t input_dim() const { return input_dim_; }
  int64_t heads() const { return heads_; }
  int64_t head_dim() const { return head_dim_; }

  Tensor weight;  // W [3, heads, input_dim, head_dim]: index 0 queries, 1 keys, 2 values

 private:
  int64_t input_dim_, heads_, head_dim_;
  double dropout_;
};

}  // namespace loom::models
