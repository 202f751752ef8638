#pragma once
// nn::LSHSelfAttention: Reformer's LSH self-attention layer (HF LSHSelfAttention followed by ReformerSelfOutput;
// trax LSHSelfAttention):
//   qk, v = x Wqk^T, x Wv^T  (no bias; ONE projection gives both queries and keys), split into heads
//   a = lsh_attention(qk, v, options, padding_mask)            (ops/lsh_attention.h)
//   out = Dropout(merge_heads(a) Wo^T)  (no bias)
// Parameters: query_key, value [H * head_dim, D], output [D, H * head_dim] (HF's self_attention.query_key /
// value .weight and output.dense.weight). Init: PyTorch's Linear init.
//
// The random rotations are drawn from the default generator on every call (fresh hashes each step, as trax and
// HF in training), so a recompute that rewinds the generator (checkpoint, chunked_apply, reversible_sequence)
// hashes identically. The buckets of the last call are kept, and a caller may also hand buckets back to
// forward() to replay them explicitly.
#include <memory>
#include <vector>

#include "loom/nn/dropout.h"
#include "loom/nn/linear.h"
#include "loom/nn/module.h"
#include "loom/ops/lsh_attention.h"

namespace loom::nn {

struct LSHSelfAttentionOptions {
  int64_t d_model = 0;
  int64_t num_heads = 1;
  int64_t head_dim = -1;  // -1: d_model / num_heads
  int64_t chunk_len = 64;
  int64_t n_chunks_before = 1;
  int64_t n_chunks_after = 0;
  int64_t n_hashes = 1;
  std::vector<int64_t> n_buckets;  // empty: lsh_default_buckets(L, chunk_len) for each input length
  bool causal = false;
  bool allow_duplicate_attention = true;
  bool dense_when_short = true;
  double dropout = 0.0;  // on the output projection (HF hidden_dropout_prob)
};

class LSHSelfAttention : public Module {
 public:
  explicit LSHSelfAttention(const LSHSelfAttentionOptions& options, TensorOptions tensor_options = {});

  // x [B, L, d_model]; padding_mask bool [B, L], true = padding; buckets int64 [B, H, n_hashes, L] to replay
  // (optional). L must be a multiple of chunk_len, or at most chunk_len with dense_when_short.
  Tensor forward(const Tensor& x, const Tensor& padding_mask, const Tensor& buckets = Tensor());
  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }

  // The buckets the last forward used (undefined after a dense short-sequence call).
  const Tensor& last_buckets() const { return last_buckets_; }
  const LSHSelfAttentionOptions& options() const { return options_; }
  // Evaluation knobs of the paper's Table 2: more hash rounds than in training, or full attention (the same
  // shared-QK weights, self-mask and causal mask over the whole sequence, no hashing; O(L^2) memory).
  void set_n_hashes(int64_t n_hashes);
  void set_full_attention(bool on) { full_attention_ = on; }
  bool full_attention() const { return full_attention_; }

  std::shared_ptr<Linear> query_key;
  std::shared_ptr<Linear> value;
  std::shared_ptr<Linear> output;
  std::shared_ptr<Dropout> dropout;

 private:
  LSHSelfAttentionOptions options_;
  bool full_attention_ = false;
  Tensor last_buckets_;
};

}  // namespace loom::nn
