// nn::LSHSelfAttention: the shared query/key and value projections, head split, lsh_attention, head merge and
// the output projection.
#include "loom/nn/lsh_attention.h"

#include "loom/nn/attention_heads.h"

namespace loom::nn {

LSHSelfAttention::LSHSelfAttention(const LSHSelfAttentionOptions& options, TensorOptions tensor_options)
    : Module("LSHSelfAttention"), options_(options) {
  const char* op = "LSHSelfAttention";
  options_.head_dim = resolve_head_dim(op, options.d_model, options.num_heads, options.head_dim);
  LOOM_CHECK(options.chunk_len > 0 && options.n_chunks_before >= 0 && options.n_chunks_after >= 0 &&
                 options.n_hashes > 0,
             op, ": chunk_len and n_hashes must be positive and n_chunks_before, n_chunks_after >= 0, got ",
             options.chunk_len, ", ", options.n_hashes, ", ", options.n_chunks_before, ", ", options.n_chunks_after);
  const int64_t all = options_.num_heads * options_.head_dim;
  query_key = register_module("query_key", std::make_shared<Linear>(options.d_model, all, false, tensor_options));
  value = register_module("value", std::make_shared<Linear>(options.d_model, all, false, tensor_options));
  output = register_module("output", std::make_shared<Linear>(all, options.d_model, false, tensor_options));
  dropout = register_module("dropout", std::make_shared<Dropout>(options.dropout));
}

Tensor LSHSelfAttention::forward(const Tensor& x, const Tensor& padding_mask, const Tensor& buckets) {
  check_sequence_input("LSHSelfAttention", options_.d_model, x);
  const int64_t B = x.size(0), L = x.size(1), H = options_.num_heads, hd = options_.head_dim;
  auto heads = [&](const std::shared_ptr<Linear>& proj) { return split_heads(proj->forward(x), H); };
  LshAttentionOptions o;
  o.chunk_len = options_.chunk_len;
  o.n_chunks_before = options_.n_chunks_before;
  o.n_chunks_after = options_.n_chunks_after;
  o.n_hashes = options_.n_hashes;
  o.n_buckets = options_.n_buckets;
  o.causal = options_.causal;
  o.allow_duplicate_attention = options_.allow_duplicate_attention;
  o.dense_when_short = options_.dense_when_short;
  if (full_attention_) {  // one chunk covering the sequence takes lsh_attention's dense path
    o.chunk_len = L;
    o.n_chunks_before = o.n_chunks_after = 0;
    o.dense_when_short = true;
  }
  LshAttentionResult r = lsh_attention(heads(query_key), heads(value), o, padding_mask, buckets);
  last_buckets_ = r.buckets;
  return dropout->forward(output->forward(r.out.transpose(1, 2).reshape({B, L, H * hd})));
}

void LSHSelfAttention::set_n_hashes(int64_t n_hashes) {
  LOOM_CHECK(n_hashes > 0, "LSHSelfAttention::set_n_hashes: n_hashes must be positive, got ", n_hashes);
  options_.n_hashes = n_hashes;
}

}  // namespace loom::nn
