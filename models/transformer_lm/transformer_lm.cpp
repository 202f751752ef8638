#include "loom/models/transformer_lm/transformer_lm.h"

#include "loom/autograd/grad_mode.h"
#include "loom/ops/ops.h"

namespace loom::models {

std::string TransformerLmConfig::str() const {
  return detail::concat("vocab=", vocab_size, " d_model=", d_model, " layers=", layers, " heads=", heads,
                        " max_seq=", max_seq);
}

TransformerLm::TransformerLm(const TransformerLmConfig& config, TensorOptions options)
    : Module("TransformerLm"), config_(config) {
  LOOM_CHECK(config.vocab_size > 0 && config.d_model > 0 && config.layers > 0 && config.heads > 0 &&
                 config.max_seq > 0,
             "TransformerLm: vocab_size, d_model, layers, heads and max_seq must be positive (", config.str(), ")");
  LOOM_CHECK(config.d_model % config.heads == 0, "TransformerLm: d_model ", config.d_model,
             " is not divisible by heads ", config.heads);
  tok = register_module("tok", std::make_shared<nn::Embedding>(config.vocab_size, config.d_model, options));
  pos = register_module("pos", std::make_shared<nn::Embedding>(config.max_seq, config.d_model, options));
  // GPT-2's initialisation: embeddings N(0, 0.02) rather than nn.Embedding's N(0, 1), which would swamp the
  // residual stream at this width.
  {
    NoGradGuard no_grad;
    tok->weight.copy_(mul(randn(tok->weight.shape(), options), 0.02));
    pos->weight.copy_(mul(randn(pos->weight.shape(), options), 0.02));
  }
  auto blocks_module = register_module("blocks", std::make_shared<nn::Module>("ModuleList"));
  for (int64_t i = 0; i < config.layers; ++i) {
    nn::TransformerBlockOptions bo;
    bo.d_model = config.d_model;
    bo.num_heads = config.heads;
    bo.dropout = config.dropout;
    blocks.push_back(
        blocks_module->register_module(std::to_string(i), std::make_shared<nn::TransformerBlock>(bo, options)));
  }
  ln_f = register_module("ln_f", std::make_shared<nn::LayerNorm>(config.d_model, 1e-5, true, options));
  head = register_module("head", std::make_shared<nn::Linear>(config.d_model, config.vocab_size, false, options));
}

Tensor TransformerLm::forward(const Tensor& tokens) {
  LOOM_CHECK(tokens.dim() == 2 && tokens.dtype() == kInt64, "TransformerLm: expected int64 tokens [B, T], got ",
             describe(tokens));
  int64_t t = tokens.size(1);
  LOOM_CHECK(t >= 1 && t <= config_.max_seq, "TransformerLm: sequence length ", t, " is outside [1, max_seq = ",
             config_.max_seq, "]");
  Tensor positions = arange(static_cast<double>(t), {kInt64, tokens.device()});
  Tensor x = add(tok->forward(tokens), pos->forward(positions));
  for (auto& block : blocks) x = block->forward(x, Tensor(), Tensor(), /*is_causal=*/true);
  return head->forward(ln_f->forward(x));
}

Tensor TransformerLm::loss(const Tensor& tokens, const Tensor& targets) {
  LOOM_CHECK(targets.shape() == tokens.shape(), "TransformerLm::loss: targets ", describe(targets),
             " do not match tokens ", describe(tokens));
  Tensor logits = forward(tokens);
  return cross_entropy(logits.reshape({-1, config_.vocab_size}), targets.reshape({-1}));
}

}  // namespace loom::models
