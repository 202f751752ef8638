#pragma once
// nn::MultiheadAttention (torch.nn.MultiheadAttention with batch_first=True): scaled dot-product attention over
// num_heads heads of size embed_dim / num_heads, with PyTorch's parameter names and init:
//   in_proj_weight [3E, E] (xavier_uniform_), in_proj_bias [3E] (zeros), out_proj (Linear E -> E, bias zeros).
// Rows of in_proj_weight are the query, key and value projections in that order, so PyTorch weights load as is.
//
// Self-attention (query, key and value the same tensor) projects with one GEMM against the whole [3E, E]
// weight; when only key and value are the same tensor they share one [2E, E] GEMM.
//
// Masks follow loom::softmax: a bool true marks a position that may NOT be attended. A floating attn_mask is
// added to the scores instead (PyTorch's float masks). A query row whose every key is masked gets zero weights
// (and outputs the value projection's bias through out_proj), where PyTorch gives NaN.
#include "loom/nn/linear.h"
#include "loom/nn/module.h"

namespace loom::nn {

class MultiheadAttention : public Module {
 public:
  MultiheadAttention(int64_t embed_dim, int64_t num_heads, double dropout = 0.0, bool bias = true,
                     TensorOptions options = {});

  struct Output {
    Tensor output;   // [B, L, E]
    Tensor weights;  // [B, H, L, S], after dropout (as PyTorch's average_attn_weights=False)
  };

  // query [B, L, E], key and value [B, S, E] (or unbatched [L, E] / [S, E]).
  // attn_mask: [L, S], [B * H, L, S] or [B | 1, H | 1, L, S]; bool (true = masked) or floating (added).
  // key_padding_mask: bool [B, S], true marks padding keys.
  // is_causal: masks key j for query i when j > i (top-left aligned when L != S), on top of any attn_mask.
  // forward() runs the fused scaled_dot_product_attention (attention dropout included, with the same mask the
  // composed path would draw) unless attn_mask is floating; forward_with_weights() always computes the
  // weights explicitly.
  Tensor forward(const Tensor& query, const Tensor& key, const Tensor& value, const Tensor& attn_mask = Tensor(),
                 const Tensor& key_padding_mask = Tensor(), bool is_causal = false);
  Output forward_with_weights(const Tensor& query, const Tensor& key, const Tensor& value,
                              const Tensor& attn_mask = Tensor(), const Tensor& key_padding_mask = Tensor(),
                              bool is_causal = false);
  // Keys and values projected once, as [B, H, S, D] views, for queries that attend to the same source again
  // and again: a weight-shared decoder's encoder-decoder attention reads the encoder output at every
  // recurrent step, and the projection (a GEMM over every source position) need not be redone at each.
  struct ProjectedKeyValue {
    Tensor key;    // [B, H, S, D]
    Tensor value;  // [B, H, S, D]
    // [B, S, 2, H, D] when key and value are views of one projection (split_key_value sets it): the fused
    // attention then takes them packed and returns one gradient for both.
    Tensor packed;
  };
  // key and value [B, S, E] (one GEMM when they are the same tensor).
  ProjectedKeyValue project_key_value(const Tensor& key, const Tensor& value);
  // The key and value rows of the packed projection, [2E, E] and [2E] (views: gradients reach the packed
  // parameters; the bias is undefined without one). project_key_value(x, x) is
  // split_key_value(linear(x, key_value_weight(), key_value_bias())).
  Tensor key_value_weight() const;
  Tensor key_value_bias() const;
  // Keys and values projected by key_value_weight/bias, packed [B, S, 2E] (key then value per position), as
  // the [B, H, S, D] views project_key_value returns; for callers that assemble the projection themselves.
  ProjectedKeyValue split_key_value(const Tensor& packed) const;
  // forward() on keys and values from project_key_value: the same result as forward(query, key, value, ...).
  Tensor forward(const Tensor& query, const ProjectedKeyValue& key_value, const Tensor& attn_mask = Tensor(),
                 const Tensor& key_padding_mask = Tensor(), bool is_causal = false);
  // Unmasked self-attention, for Sequential.
  Tensor forward(const Tensor& x) override { return forward(x, x, x); }
  void reset_parameters();

  int64_t embed_dim() const { return embed_dim_; }
  int64_t num_heads() const { return num_heads_; }
  int64_t head_dim() const { return embed_dim_ / num_heads_; }

  Tensor in_proj_weight;
  Tensor in_proj_bias;  // undefined when bias = false
  std::shared_ptr<Linear> out_proj;

 private:
  // Both forwards; weights stay undefined when !need_weights and the fused path ran.
  Output attend(const Tensor& query, const Tensor& key, const Tensor& value, const Tensor& attn_mask,
                const Tensor& key_padding_mask, bool is_causal, bool need_weights);
  // The attention after the projections: either the packed self-attention projection qkv [B, L, 3, H, D] or
  // q [B, H, L, D] with k and v [B, H, S, D]; query is the module's [B, L, E] input (for shapes and
  // messages).
  Output attend_projected(const Tensor& query, const Tensor& qkv, Tensor q, Tensor k, Tensor v,
                          const Tensor& attn_mask, const Tensor& key_padding_mask, bool is_causal,
                          bool need_weights, const Tensor& kv_packed = Tensor());
  // The query projection of query [B, L, E], as a [B, H, L, D] view.
  Tensor project_query(const Tensor& query);

  int64_t embed_dim_;
  int64_t num_heads_;
  double dropout_;
};

}  // namespace loom::nn
