#pragma once
// Sentence classifiers built on Bi-BloSAN (Shen et al., ICLR 2018) and its two baselines, as the reference TF
// code assembles them (taoshen58/BiBloSA exp_*/src/model; spec: shared/research/biblosa.md sections 2.6, 2.7):
//
//   ids [B, n] -> Embedding[V, d_e] -> encoder -> U [B, n, 2d] -> Source2Token (two layers) -> s [B, 2d]
//   single sentence:  s -> Dropout -> Linear(2d -> d) -> act -> Dropout -> Linear(d -> C, no bias)
//   sentence pair:    z = [s1; s2; s1 - s2; s1 * s2] (8d) -> Dropout -> Linear(8d -> d) -> act = p
//                     highway: t = act(Linear(Drop(p))), g = sigmoid(Linear(Drop(p))), q = g t + (1 - g) p
//                     logits = Linear(Drop(q)) (C, with bias)
//                     ("disan" follows DiSAN's own SNLI head, which has no highway: logits = Linear(Drop(p));
//                     the spec §4 counts, 2,800,803 for biblosa at d 240 and 2,345,403 for disan at d 300,
//                     depend on this)
//
// The encoders, all of output width 2d:
//   "biblosa"   nn::BiBlockSelfAttention (forward and backward mBloSA, untied) (spec 2.5, 2.6)
//   "disan"     forward and backward nn::DirectionalSelfAttention over the whole sentence, concatenated
//   (DiSAN) "multihead" the reference's multi-head baseline: the embeddings plus sinusoidal positions, then
//               scaled dot-product self-attention with `heads` heads of 2d / heads (the reference: 8 x 75 =
//               600), input and attention dropout, no residual, feed-forward or LayerNorm. As the reference
//               (self_attn.py multi_head_attention): one weight W [3, heads, d_e, 2d / heads], no bias,
//               projects the d_e-wide input straight to each head's queries, keys and values; heads are
//               concatenated to 2d with no output projection (models/biblosa/encoders.h)
//
// Conventions: padding_mask bool [B, n], true = padding (data::EncodedBatch's). Every dense layer drops out
// its input (spec P8), so the embedded tokens get no dropout of their own. Weights Glorot-uniform, biases
// zero (TF's defaults); embeddings uniform(-0.05, 0.05) (the reference's init of words missing from GloVe).
// The embedding row of PAD (0) is never read by any output: every part masks padded positions.
//
// Parameter names: embedding.weight; encoder.*; pooling.*; head.*.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "loom/nn/module.h"

namespace loom::nn {
class Embedding;
class Source2Token;
class Linear;
class Dropout;
}  // namespace loom::nn

namespace loom::models {

struct TextClassifierConfig {
  std::string encoder = "biblosa";  // "biblosa", "disan" or "multihead"
  int64_t vocab_size = 0;
  int64_t num_classes = 0;
  int64_t embed_dim = 300;          // d_e (the reference: GloVe 300d)
  int64_t hidden_dim = 300;         // d, the width of one direction; the sentence vector has 2d
  int64_t block_len = 0;            // biblosa r; 0: BlockSelfAttention::default_block_length of each batch
  int64_t heads = 8;                // multihead: heads of 2d / heads each (2d must divide)
  std::string activation = "relu";  // "relu" (single-sentence tasks) or "elu" (SNLI)
  double dropout = 0.3;             // 1 - keep_prob (SST keeps 0.7)
  bool pair = false;                // the sentence-pair head instead of the single-sentence one
  bool reference_parity = false;    // biblosa: empty blocks stay in the inter-block attention (TF behaviour)

  // Checks every value; throws loom::Error naming the bad one.
  TextClassifierConfig resolved() const;
  // The architecture ("encoder=biblosa vocab=.. classes=.. d_e=.. d=.. r=.. heads=.. act=.. pair=0|1
  // parity=0|1": not dropout): checkpoints store it, and resuming or predicting with another architecture is
  // an error.
  std::string str() const;
};

class TextClassifier : public nn::Module {
 public:
  explicit TextClassifier(const TextClassifierConfig& config, TensorOptions options = {});

  // ids int64 [B, n], padding_mask bool [B, n] (true = padding; undefined = none) -> the encoder's token
  // features U [B, n, 2d] (values at padded positions are unspecified).
  Tensor encode_tokens(const Tensor& ids, const Tensor& padding_mask);
  // -> the sentence vectors s [B, 2d]; a row that is all padding gives 0.
  Tensor encode(const Tensor& ids, const Tensor& padding_mask);
  // Single-sentence head: logits [B, num_classes]. Requires !config.pair.
  Tensor forward(const Tensor& ids, const Tensor& padding_mask);
  Tensor forward(const Tensor& ids) override { return forward(ids, Tensor()); }
  // Sentence-pair head: logits [B, num_classes]; both sentences go through the same encoder. Requires pair.
  Tensor forward_pair(const Tensor& ids1, const Tensor& mask1, const Tensor& ids2, const Tensor& mask2);

  // The reference's weight decay term sum over decayed weights of ||W||^2 / 2 (tf.nn.l2_loss): every weight
  // matrix of a dense layer, not biases, embeddings, DiSA's W_1 / W_2 (key_query), as the TF code (spec 2.7).
  // A scalar of the parameters' dtype, differentiable; the driver adds wd times it to the loss.
  Tensor l2_penalty() const;
  // The parameters l2_penalty sums over, by name (registration order).
  std::vector<std::string> decayed_parameter_names() const;

  // Parameters excluding the embedding (the reference's count), from the closed-form formula per encoder and
  // head (the tests check it against the modules): for biblosa with the pair head 46 d^2 + (2 d_e + 30) d + 3
  // (with C = 3; spec §4); for disan with the pair head 2 (d_e d + 4 d^2 + 5 d) + 16 d^2 + 8 d + 3.
  int64_t encoder_and_head_parameters() const;

  const TextClassifierConfig& config() const { return config_; }

  std::shared_ptr<nn::Embedding> embedding;
  std::shared_ptr<nn::Module> encoder;  // nn::BiBlockSelfAttention, DisanEncoder or MultiheadEncoder (.cpp)
  std::shared_ptr<nn::Source2Token> pooling;
  std::shared_ptr<nn::Module> head;

 private:
  // ids int64 [B, n] (B, n >= 1) and padding_mask bool [B, n] or undefined; errors name `who`.
  void check_tokens(const char* who, const Tensor& ids, const Tensor& padding_mask) const;

  TextClassifierConfig config_;
};

}  // namespace loom::models
