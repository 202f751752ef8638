#pragma once
// ReformerLM (Kitaev, Kaiser, Levskaya 2020; trax reformer.py ReformerLM, HF ReformerModelWithLMHead): a causal
// character/token language model built from Loom's Reformer primitives (research/reformer.md section 1):
//
//   tokens [B, L] -> Embedding[V, D] + positions (axial or learned) -> Dropout -> (x1, x2) = (e, e)
//   for each layer l:  y1 = x1 + Attn_l(LayerNorm(x2))     Attn = LSH (shared QK) or local, chosen per layer
//                      y2 = x2 + FF_l(LayerNorm(y1))       FF = chunked feed-forward (pre-norm inside)
//   concat(y1, y2) [B, L, 2D] -> LayerNorm(2D) -> Dropout -> Linear(2D -> V) -> cross-entropy
//
// The layers run as one reversible stack (autograd/reversible.h): no per-layer activations are kept, each
// layer's input is rebuilt in backward, and its dropout masks and LSH rotations are drawn again from the same
// Philox states. With reversible = false the same layers run on the ordinary tape (the plain two-stream
// network, for tests and comparisons). The loss head can run chunked along the sequence (loss_chunk), so
// [B, L, V] logits never exist at once.
//
// Inputs and targets are given by the caller (the data is shifted outside, as for TransformerLm); a target of
// -100 is ignored (the duplication task scores only the second copy).
//
// Parameter names: tok.weight; pos.<k> (axial) or pos.weight (learned); layers.<l>.f.{layer_norm, lsh or
// local}.*; layers.<l>.g.{layer_norm, dense, output}.*; ln_f.*; head.{weight, bias}.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "loom/nn/layer_norm.h"
#include "loom/nn/linear.h"
#include "loom/nn/module.h"
#include "loom/nn/reversible.h"

#include "loom/nn/chunked_feed_forward.h"
#include "loom/nn/local_attention.h"
#include "loom/nn/lsh_attention.h"

namespace loom::nn {
class Embedding;
}  // namespace loom::nn

namespace loom::models {

// Defaults follow HF's ReformerConfig (hidden 256, ff 512, relu, layers [local, lsh] cycled, chunks 64,
// look one chunk back, axial positions, hidden dropout 0.05) except where noted; trax's crime-and-punishment
// configuration has the same width and depth.
struct ReformerConfig {
  int64_t vocab_size = 0;
  int64_t d_model = 256;  // the width of ONE stream (HF hidden_size); the head reads 2 d_model
  int64_t d_ff = 512;
  int64_t layers = 6;
  int64_t heads = 2;       // trax LSHSelfAttention and the crime-and-punishment model (HF: 12)
  int64_t head_dim = 64;   // d_qk = d_v
  // Attention of each layer, cycled: "lsh" or "local" (HF attn_layers ["local", "lsh"] x 3).
  std::vector<std::string> attention = {"local", "lsh"};
  int64_t lsh_chunk = 64;
  int64_t lsh_chunks_before = 1;
  int64_t n_hashes = 1;            // training rounds; raise at evaluation with set_n_hashes
  std::vector<int64_t> n_buckets;  // empty: trax's rule for each input length (ops/lsh.h)
  int64_t local_chunk = 64;
  int64_t local_chunks_before = 1;
  int64_t max_seq = 4096;  // longest sequence; the axial grid (or learned table) covers at least this
  // "axial" or "learned". Axial shape / dims empty: a two-axis grid of powers of two covering max_seq with
  // dims d_model / 4 and 3 d_model / 4 (HF's 64 / 192 of 256).
  std::string positions = "axial";
  std::vector<int64_t> axial_shape, axial_dims;
  double dropout = 0.05;            // embedding, attention output and feed-forward (HF hidden_dropout_prob)
  std::string activation = "relu";  // "relu" or "gelu"
  double eps = 1e-12;               // layer norms (HF; trax 1e-6)
  int64_t ff_chunk = 0;             // positions per feed-forward chunk (0: unchunked)
  int64_t loss_chunk = 0;           // positions per loss-head chunk (0: unchunked)
  bool reversible = true;

  // Fills the derived fields (axial grid) and checks every value; throws loom::Error naming the bad one.
  ReformerConfig resolved() const;
  // The architecture ("vocab=.. d_model=.. ..."; no chunk sizes, dropout or reversibility, which change how
  // the same parameters are computed with, not what they are): checkpoints store it, and resuming or sampling
  // with another architecture is an error.
  std::string str() const;
};

// The options of one layer's branches as ReformerLM builds them (causal; dropout on the outputs).
nn::LSHSelfAttentionOptions lsh_attention_options(const ReformerConfig& config);
nn::LocalSelfAttentionOptions local_attention_options(const ReformerConfig& config);
nn::ChunkedFeedForwardOptions feed_forward_options(const ReformerConfig& config);

class ReformerLM : public nn::Module {
 public:
  explicit ReformerLM(const ReformerConfig& config, TensorOptions options = {});

  // tokens int64 [B, L] -> the final normalised features [B, L, 2 d_model]. L must be a multiple of the LSH
  // and local chunks (or at most one chunk) and at most max_seq. padding_mask bool [B, L] (true = padding) is
  // optional: padded positions are hashed into their own bucket and never attended to.
  Tensor features(const Tensor& tokens, const Tensor& padding_mask = Tensor());
  // Logits [B, L, vocab].
  Tensor forward(const Tensor& tokens, const Tensor& padding_mask);
  Tensor forward(const Tensor& tokens) override { return forward(tokens, Tensor()); }
  // Mean cross-entropy (nats) over the targets [B, L] that are not -100; the head runs loss_chunk positions at
  // a time. Throws when every target is ignored.
  Tensor loss(const Tensor& tokens, const Tensor& targets);

  // Evaluation knobs of the paper's Table 2: hash rounds of every LSH layer, and full attention in place of
  // LSH (same weights, no hashing, O(L^2)).
  void set_n_hashes(int64_t n_hashes);
  void set_full_attention(bool on);
  // Chunk sizes can change between training and evaluation without touching the parameters.
  void set_ff_chunk(int64_t chunk);
  void set_loss_chunk(int64_t chunk) { config_.loss_chunk = chunk; }

  const ReformerConfig& config() const { return config_; }
  // The sequence lengths the attention layers accept are multiples of this (the lcm of the chunk lengths).
  int64_t length_multiple() const;

  std::shared_ptr<nn::Embedding> tok;
  std::shared_ptr<nn::Module> pos;  // nn::AxialPositionEmbedding or nn::Embedding
  std::shared_ptr<nn::ReversibleSequence> layers;
  std::vector<std::shared_ptr<nn::LSHSelfAttention>> lsh_layers;
  std::vector<std::shared_ptr<nn::LocalSelfAttention>> local_layers;
  std::vector<std::shared_ptr<nn::ChunkedFeedForward>> feed_forwards;
  std::shared_ptr<nn::LayerNorm> ln_f;
  std::shared_ptr<nn::Linear> head;

 private:
  Tensor embed(const Tensor& tokens);
  // The output head (LayerNorm(2D) -> Dropout -> Linear) on some positions.
  Tensor head_logits(const Tensor& features_slice);

  ReformerConfig config_;
};

// Samples `count` tokens after `prompt` (int64 [P], P >= 1) one at a time, from softmax(logits / temperature)
// (temperature 0: greedy), with the model in eval mode and no gradients; the context is the last max_seq
// tokens, padded to the model's length multiple. Draws from the default generator. Returns [P + count].
Tensor sample(ReformerLM& model, const Tensor& prompt, int64_t count, double temperature);

}  // namespace loom::models
