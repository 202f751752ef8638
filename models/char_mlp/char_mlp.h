#pragma once
// A character-level MLP language model (Bengio et al. 2003): the previous `context` characters are embedded,
// concatenated, passed through one tanh hidden layer and projected to next-character logits.
//
// Its backward pass is written out by hand with Loom ops (as llm.c writes its GPT-2), because it is Loom's
// first trainable model and predates the tape; it exercises embedding, linear, tanh, softmax, cross-entropy,
// index_add and the reductions on whatever device the parameters live on.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "loom/core/tensor.h"

namespace loom::models {

struct CharMlpConfig {
  int64_t vocab_size = 0;
  int64_t context = 16;   // characters of history
  int64_t embed_dim = 32;
  int64_t hidden = 1024;
};

struct CharMlpGrads;

class CharMlp {
 public:
  CharMlp(const CharMlpConfig& config, Device device);
  const CharMlpConfig& config() const { return config_; }

  // Mean cross-entropy (nats) of predicting y [B] from contexts x [B, context]; fills grads when non-null.
  double loss_and_grads(const Tensor& x, const Tensor& y, CharMlpGrads* grads) const;
  // Next-character logits [B, vocab] for contexts x [B, context].
  Tensor logits(const Tensor& x) const;

  // Parameters with stable names, for the optimizer and checkpoints.
  std::vector<std::pair<std::string, Tensor*>> named_parameters();

 private:
  struct Activations {
    Tensor flat_embed;  // [B, context * embed_dim]
    Tensor hidden;      // tanh output [B, hidden]
    Tensor logits;      // [B, vocab]
  };
  Activations forward(const Tensor& x) const;

  CharMlpConfig config_;
  Tensor embedding_, w1_, b1_, w2_, b2_;
};

struct CharMlpGrads {
  Tensor embedding, w1, b1, w2, b2;
  // In the order of CharMlp::named_parameters().
  std::vector<Tensor*> list() { return {&embedding, &w1, &b1, &w2, &b2}; }
};

}  // namespace loom::models
