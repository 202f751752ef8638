#pragma once
// The plain Transformer baseline: a decoder-only language model (GPT-2 layout) that the three papers' models are
// compared with. Token and learned position embeddings, `layers` pre-norm blocks with causal self-attention and
// a GELU MLP, a final layer norm and an untied output projection.
//
// Parameters: tok.weight, pos.weight, blocks.<i>.{ln1, attn, ln2, fc1, fc2}, ln_f, head.weight.
#include <cstdint>
#include <memory>
#include <string>

#include "loom/nn/embedding.h"
#include "loom/nn/layer_norm.h"
#include "loom/nn/linear.h"
#include "loom/nn/module.h"
#include "loom/nn/sequential.h"
#include "loom/nn/transformer.h"

namespace loom::models {

struct TransformerLmConfig {
  int64_t vocab_size = 0;
  int64_t d_model = 256;
  int64_t layers = 4;
  int64_t heads = 4;
  int64_t max_seq = 256;  // longest sequence (positions learned)
  double dropout = 0.1;
  // "vocab=.. d_model=.. ..." : checkpoints store it, and resuming with another configuration is an error.
  std::string str() const;
};

class TransformerLm : public nn::Module {
 public:
  explicit TransformerLm(const TransformerLmConfig& config, TensorOptions options = {});

  // tokens int64 [B, T] with T <= max_seq -> logits [B, T, vocab]; position t sees tokens 0..t.
  Tensor forward(const Tensor& tokens) override;
  // Mean cross-entropy (nats) of predicting targets [B, T] from tokens [B, T].
  Tensor loss(const Tensor& tokens, const Tensor& targets);

  const TransformerLmConfig& config() const { return config_; }

  std::shared_ptr<nn::Embedding> tok, pos;
  std::vector<std::shared_ptr<nn::TransformerBlock>> blocks;
  std::shared_ptr<nn::LayerNorm> ln_f;
  std::shared_ptr<nn::Linear> head;

 private:
  TransformerLmConfig config_;
};

}  // namespace loom::models
