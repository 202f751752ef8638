// nn::LocalSelfAttention: projections, head split (views), local_attention, head merge (a view: the fused op
// lays its output out like q, i.e. [B, L, H, head_dim] underneath), output projection.
#include "loom/nn/local_attention.h"

#include "loom/nn/attention_heads.h"
#include "loom/ops/local_attention.h"

namespace loom::nn {

LocalSelfAttention::LocalSelfAttention(const LocalSelfAttentionOptions& options, TensorOptions tensor_options)
    : Module("LocalSelfAttention"), options_(options) {
  const char* op = "LocalSelfAttention";
  options_.head_dim = resolve_head_dim(op, options.d_model, options.num_heads, options.head_dim);
  LOOM_CHECK(options.chunk_len > 0 && options.n_chunks_before >= 0 && options.n_chunks_after >= 0, op,
             ": chunk_len must be positive and n_chunks_before, n_chunks_after >= 0, got ", options.chunk_len, ", ",
             options.n_chunks_before, ", ", options.n_chunks_after);
  const int64_t all = options_.num_heads * options_.head_dim;
  query = register_module("query", std::make_shared<Linear>(options.d_model, all, false, tensor_options));
  key = register_module("key", std::make_shared<Linear>(options.d_model, all, false, tensor_options));
  value = register_module("value", std::make_shared<Linear>(options.d_model, all, false, tensor_options));
  output = register_module("output", std::make_shared<Linear>(all, options.d_model, false, tensor_options));
  dropout = register_module("dropout", std::make_shared<Dropout>(options.dropout));
}

Tensor LocalSelfAttention::forward(const Tensor& x, const Tensor& padding_mask) {
  check_sequence_input("LocalSelfAttention", options_.d_model, x);
  const int64_t B = x.size(0), L = x.size(1), H = options_.num_heads, hd = options_.head_dim;
  auto heads = [&](const std::shared_ptr<Linear>& proj) { return split_heads(proj->forward(x), H); };
  Tensor a = local_attention(heads(query), heads(key), heads(value), options_.chunk_len, options_.n_chunks_before,
                             options_.n_chunks_after, options_.causal, padding_mask);
  return dropout->forward(output->forward(a.transpose(1, 2).reshape({B, L, H * hd})));
}

}  // namespace loom::nn
