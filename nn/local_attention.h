#pragma once
// nn::LocalSelfAttention: Reformer's local (chunked) self-attention layer (HF LocalSelfAttention followed by
// ReformerSelfOutput; trax SelfAttention(chunk_len, n_chunks_before, ...)):
//   q, k, v = x Wq^T, x Wk^T, x Wv^T  (no bias), split into heads [B, H, L, head_dim]
//   a = local_attention(q, k, v, chunk_len, n_chunks_before, n_chunks_after, causal, padding_mask)
//   out = Dropout(merge_heads(a) Wo^T)  (no bias)
// Parameters: query, key, value [H * head_dim, D], output [D, H * head_dim] (HF's self_attention.query/key/value
// .weight and output.dense.weight). There is no attention-probability dropout: the fused kernel has none (HF's
// local_attention_probs_dropout_prob; set it to 0 there for comparisons). Init: PyTorch's Linear init.
#include <memory>

#include "loom/nn/dropout.h"
#include "loom/nn/linear.h"
#include "loom/nn/module.h"

namespace loom::nn {

struct LocalSelfAttentionOptions {
  int64_t d_model = 0;
  int64_t num_heads = 1;
  int64_t head_dim = -1;  // -1: d_model / num_heads
  int64_t chunk_len = 64;
  int64_t n_chunks_before = 1;
  int64_t n_chunks_after = 0;
  bool causal = false;
  double dropout = 0.0;  // on the output projection (HF hidden_dropout_prob)
};

class LocalSelfAttention : public Module {
 public:
  explicit LocalSelfAttention(const LocalSelfAttentionOptions& options, TensorOptions tensor_options = {});

  // x [B, L, d_model]; padding_mask bool [B, L], true = padding. L must be <= chunk_len or a multiple of it.
  Tensor forward(const Tensor& x, const Tensor& padding_mask);
  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }

  const LocalSelfAttentionOptions& options() const { return options_; }

  std::shared_ptr<Linear> query;
  std::shared_ptr<Linear> key;
  std::shared_ptr<Linear> value;
  std::shared_ptr<Linear> output;
  std::shared_ptr<Dropout> dropout;

 private:
  LocalSelfAttentionOptions options_;
};

}  // namespace loom::nn
