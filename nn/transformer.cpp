// nn::TransformerBlock.
#include "loom/nn/transformer.h"

#include "loom/ops/elementwise.h"

namespace loom::nn {
namespace {

TransformerBlockOptions make_options(int64_t d_model, int64_t num_heads, double dropout) {
  TransformerBlockOptions o;
  o.d_model = d_model;
  o.num_heads = num_heads;
  o.dropout = dropout;
  return o;
}

}  // namespace

TransformerBlock::TransformerBlock(int64_t d_model, int64_t num_heads, double dropout_p,
                                   TensorOptions tensor_options)
    : TransformerBlock(make_options(d_model, num_heads, dropout_p), tensor_options) {}

TransformerBlock::TransformerBlock(const TransformerBlockOptions& options, TensorOptions tensor_options)
    : Module("TransformerBlock"), options_(options) {
  const int64_t d = options.d_model;
  LOOM_CHECK(d > 0, "TransformerBlock: d_model must be positive, got ", d);
  if (options_.hidden < 0) options_.hidden = 4 * d;
  LOOM_CHECK(options_.hidden > 0, "TransformerBlock: hidden must be positive, got ", options.hidden);
  ln1 = register_module("ln1", std::make_shared<LayerNorm>(d, options.eps, true, tensor_options));
  attn = register_module("attn", std::make_shared<MultiheadAttention>(d, options.num_heads, options.dropout,
                                                                       options.bias, tensor_options));
  dropout1 = register_module("dropout1", std::make_shared<Dropout>(options.dropout));
  ln2 = register_module("ln2", std::make_shared<LayerNorm>(d, options.eps, true, tensor_options));
  fc1 = register_module("fc1", std::make_shared<Linear>(d, options_.hidden, options.bias, tensor_options));
  dropout = register_module("dropout", std::make_shared<Dropout>(options.dropout));
  fc2 = register_module("fc2", std::make_shared<Linear>(options_.hidden, d, options.bias, tensor_options));
  dropout2 = register_module("dropout2", std::make_shared<Dropout>(options.dropout));
}

Tensor TransformerBlock::forward(const Tensor& x, const Tensor& attn_mask, const Tensor& key_padding_mask,
                                 bool is_causal) {
  LOOM_CHECK(x.defined() && x.dim() == 3 && x.size(2) == options_.d_model, "TransformerBlock(d_model=",
             options_.d_model, "): input must be [B, T, ", options_.d_model, "], got ",
             x.defined() ? shape_str(x.shape()) : std::string("undefined"));
  Tensor h = ln1->forward(x);
  Tensor y = add(x, dropout1->forward(attn->forward(h, h, h, attn_mask, key_padding_mask, is_causal)));
  Tensor m = fc2->forward(dropout->forward(gelu(fc1->forward(ln2->forward(y)))));
  return add(y, dropout2->forward(m));
}

}  // namespace loom::nn
