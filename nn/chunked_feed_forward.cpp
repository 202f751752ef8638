// nn::ChunkedFeedForward.
#include "loom/nn/chunked_feed_forward.h"

#include "loom/autograd/chunked.h"
#include "loom/ops/elementwise.h"

namespace loom::nn {

ChunkedFeedForward::ChunkedFeedForward(const ChunkedFeedForwardOptions& options, TensorOptions tensor_options)
    : Module("ChunkedFeedForward"), options_(options) {
  LOOM_CHECK(options.d_model > 0 && options.d_ff > 0, "ChunkedFeedForward: d_model and d_ff must be positive, got ",
             options.d_model, " and ", options.d_ff);
  LOOM_CHECK(options.activation == "relu" || options.activation == "gelu",
             "ChunkedFeedForward: activation must be \"relu\" or \"gelu\", got \"", options.activation, "\"");
  layer_norm = register_module("layer_norm", std::make_shared<LayerNorm>(options.d_model, options.eps, true,
                                                                         tensor_options));
  dense = register_module("dense", std::make_shared<Linear>(options.d_model, options.d_ff, true, tensor_options));
  dropout1 = register_module("dropout1", std::make_shared<Dropout>(options.dropout));
  output = register_module("output", std::make_shared<Linear>(options.d_ff, options.d_model, true, tensor_options));
  dropout2 = register_module("dropout2", std::make_shared<Dropout>(options.dropout));
}

Tensor ChunkedFeedForward::block(const Tensor& x) {
  Tensor h = dropout1->forward(dense->forward(layer_norm->forward(x)));
  h = options_.activation == "gelu" ? gelu(h) : relu(h);
  return dropout2->forward(output->forward(h));
}

Tensor ChunkedFeedForward::forward(const Tensor& x) {
  LOOM_CHECK(x.defined() && x.dim() == 3 && x.size(2) == options_.d_model, "ChunkedFeedForward(d_model=",
             options_.d_model, "): input must be [B, L, ", options_.d_model, "], got ",
             x.defined() ? shape_str(x.shape()) : std::string("undefined"));
  return chunked_apply([this](const Tensor& slice) { return block(slice); }, x, options_.chunk_size, 1);
}

}  // namespace loom::nn
