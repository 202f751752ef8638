#pragma once
// nn::TransformerBlock: a pre-norm Transformer layer (GPT-2 style; torch.nn.TransformerEncoderLayer with
// norm_first=True, activation="gelu", batch_first=True):
//   x = x + dropout1(attn(ln1(x)))
//   x = x + dropout2(fc2(dropout(gelu(fc1(ln2(x))))))
// Parameters: ln1, attn (in_proj_weight, in_proj_bias, out_proj), ln2, fc1 [hidden, d], fc2 [d, hidden].
// PyTorch's encoder layer maps as norm1 -> ln1, self_attn -> attn, norm2 -> ln2, linear1 -> fc1,
// linear2 -> fc2.
#include <memory>

#include "loom/nn/attention.h"
#include "loom/nn/dropout.h"
#include "loom/nn/layer_norm.h"
#include "loom/nn/linear.h"
#include "loom/nn/module.h"

namespace loom::nn {

struct TransformerBlockOptions {
  int64_t d_model = 0;
  int64_t num_heads = 1;
  int64_t hidden = -1;   // MLP width; -1 means 4 * d_model
  double dropout = 0.0;  // attention weights, the MLP hidden layer and both residual branches
  double eps = 1e-5;     // layer norms
  bool bias = true;      // projections and MLP
};

class TransformerBlock : public Module {
 public:
  explicit TransformerBlock(const TransformerBlockOptions& options, TensorOptions tensor_options = {});
  TransformerBlock(int64_t d_model, int64_t num_heads, double dropout = 0.0, TensorOptions tensor_options = {});

  // x [B, T, d_model]; masks as MultiheadAttention's self-attention (attn_mask [T, T] or [B * H, T, T],
  // key_padding_mask [B, T], is_causal for decoder-style blocks).
  Tensor forward(const Tensor& x, const Tensor& attn_mask, const Tensor& key_padding_mask = Tensor(),
                 bool is_causal = false);
  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }

  const TransformerBlockOptions& options() const { return options_; }

  std::shared_ptr<LayerNorm> ln1;
  std::shared_ptr<MultiheadAttention> attn;
  std::shared_ptr<Dropout> dropout1;
  std::shared_ptr<LayerNorm> ln2;
  std::shared_ptr<Linear> fc1;
  std::shared_ptr<Dropout> dropout;
  std::shared_ptr<Linear> fc2;
  std::shared_ptr<Dropout> dropout2;

 private:
  TransformerBlockOptions options_;
};

}  // namespace loom::nn
