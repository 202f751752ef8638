#include "loom/models/char_mlp/char_mlp.h"

#include <cmath>

#include "loom/ops/ops.h"

namespace loom::models {

CharMlp::CharMlp(const CharMlpConfig& config, Device device) : config_(config) {
  LOOM_CHECK(config.vocab_size > 0 && config.context > 0 && config.embed_dim > 0 && config.hidden > 0,
             "CharMlp: vocab_size, context, embed_dim and hidden must be positive (got ", config.vocab_size, ", ",
             config.context, ", ", config.embed_dim, ", ", config.hidden, ")");
  int64_t in = config.context * config.embed_dim;
  // PyTorch's defaults: N(0, 1) embeddings, Linear weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  auto uniform = [&](const Shape& shape, int64_t fan_in) {
    double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    return (rand(shape) * (2 * bound) - bound).to(device);
  };
  embedding_ = randn({config.vocab_size, config.embed_dim}).to(device);
  w1_ = uniform({config.hidden, in}, in);
  b1_ = uniform({config.hidden}, in);
  w2_ = uniform({config.vocab_size, config.hidden}, config.hidden);
  b2_ = uniform({config.vocab_size}, config.hidden);
}

std::vector<std::pair<std::string, Tensor*>> CharMlp::named_parameters() {
  return {{"embedding.weight", &embedding_}, {"hidden.weight", &w1_}, {"hidden.bias", &b1_},
          {"output.weight", &w2_}, {"output.bias", &b2_}};
}

CharMlp::Activations CharMlp::forward(const Tensor& x) const {
  LOOM_CHECK(x.dim() == 2 && x.size(1) == config_.context, "CharMlp: expected contexts of shape [B, ",
             config_.context, "], got ", x.shape());
  Activations a;
  a.flat_embed = embedding(x, embedding_).reshape({x.size(0), config_.context * config_.embed_dim});
  a.hidden = tanh(linear(a.flat_embed, w1_, b1_));
  a.logits = linear(a.hidden, w2_, b2_);
  return a;
}

Tensor CharMlp::logits(const Tensor& x) const { return forward(x).logits; }

double CharMlp::loss_and_grads(const Tensor& x, const Tensor& y, CharMlpGrads* grads) const {
  Activations a = forward(x);
  double loss = cross_entropy(a.logits, y).item<double>();
  if (grads == nullptr) return loss;
  int64_t batch = x.size(0);
  // d(mean CE)/d logits = (softmax - one_hot(y)) / B
  Tensor dlogits = scatter_add(softmax(a.logits, -1), 1, y.unsqueeze(1), full({batch, 1}, -1.0, a.logits.options()));
  dlogits = div(dlogits, static_cast<double>(batch));
  grads->w2 = matmul(dlogits.t(), a.hidden);
  grads->b2 = sum(dlogits, {0});
  Tensor dhidden = matmul(dlogits, w2_);
  Tensor dpre = mul(dhidden, 1.0 - square(a.hidden));  // tanh' = 1 - tanh^2
  grads->w1 = matmul(dpre.t(), a.flat_embed);
  grads->b1 = sum(dpre, {0});
  Tensor dembed = matmul(dpre, w1_).reshape({batch * config_.context, config_.embed_dim});
  grads->embedding = index_add(zeros_like(embedding_), 0, x.reshape({-1}), dembed);
  return loss;
}

}  // namespace loom::models
