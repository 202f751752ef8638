#pragma once
// The sentence encoders of DiSAN (Shen et al., AAAI 2018) and Bi-BloSAN (Shen et al., ICLR 2018), as the
// reference TF code computes them (taoshen58/BiBloSA, taoshen58/DiSAN; the spec is shared/research/biblosa.md):
//
//   DirectionalSelfAttention  DiSA (spec 2.3): FC + act, feature-wise directional attention over the tokens
//                             (keys masked by padding), a fusion gate, output zeroed at padding.
//   Source2Token              feature-wise attention pooling (spec 2.4): one linear layer for the block
//                             summaries inside mBloSA, two (with act between) for the sentence vector.
//   BlockSelfAttention        mBloSA, one direction (spec 2.5 and §3): pad to whole blocks of r tokens, FC + act,
//                             intra-block directional attention, block summaries, DiSA over the blocks,
//                             gated fusion, unpad. Output [B, n, d]; padded positions are NOT zeroed.
//   BiBlockSelfAttention      Bi-BloSA (spec 2.6): forward and backward mBloSA, untied, concatenated: [B, n, 2d].
//
// Conventions: x is [B, n, d_in] (batch first), padding_mask bool [B, n] with true marking padding (undefined =
// no padding). Weights are nn::Linear [out, in]; initialisation follows TF (Glorot-uniform weights, zero biases).
// Every dense layer drops out its input (nn::Dropout, off in eval mode), attention values are never dropped
// (spec P8). The score scale c is 5, as hard-coded in the reference.
//
// Empty blocks (every token padding, which happens when a short sentence shares a batch with a long one) are
// masked out of the inter-block attention as keys, and their DiSA output is zeroed (spec P4's recommendation):
// outputs at real tokens do not depend on how much padding the batch adds. The reference TF code instead
// treats every block as valid (an empty block's summary is 0, and backward-direction blocks attend to it);
// BlockSelfAttentionOptions::reference_parity reproduces that.
#include <cstdint>
#include <memory>

#include "loom/nn/dropout.h"
#include "loom/nn/linear.h"
#include "loom/nn/module.h"
#include "loom/ops/multidim_attention.h"

namespace loom::nn {

// The nonlinearity of every dense layer: ELU for SNLI, ReLU for the single-sentence tasks (spec §1).
enum class DenseActivation : uint8_t { Elu, Relu };

// The attention scale c of c * tanh(x / c) in every multi-dimensional attention of these modules.
inline constexpr double kTokenAttentionScale = 5.0;

struct DirectionalSelfAttentionOptions {
  DenseActivation activation = DenseActivation::Elu;
  double dropout = 0.0;  // 1 - keep_prob
  TensorOptions options = {};
};

class DirectionalSelfAttention : public Module {
 public:
  DirectionalSelfAttention(int64_t input_dim, int64_t hidden_dim, AttentionDirection direction,
                           DirectionalSelfAttentionOptions opts = {});

  // What forward computes, step by step (the tests compare the steps with Bi-BloSA's).
  struct Parts {
    Tensor rep;       // Hm = act(fc(x)), [B, T, d]
    Tensor attended;  // S = multi_dim_attention over Hm (the pre-gate output), [B, T, d]
    Tensor output;    // U = G * Hm + (1 - G) * S, zero at padding, [B, T, d]
  };
  // x [B, T, input_dim] (or any [..., T, input_dim]), padding_mask bool [..., T] (true = padding) or undefined.
  Parts forward_parts(const Tensor& x, const Tensor& padding_mask = Tensor());
  Tensor forward(const Tensor& x, const Tensor& padding_mask) { return forward_parts(x, padding_mask).output; }
  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }
  void reset_parameters();

  int64_t input_dim() const { return input_dim_; }
  int64_t hidden_dim() const { return hidden_dim_; }
  AttentionDirection direction() const { return direction_; }

  std::shared_ptr<Linear> fc;         // W_h, b_h
  std::shared_ptr<Linear> key_query;  // [2d, d], no bias: rows [0, d) = W_1 (keys), rows [d, 2d) = W_2 (queries)
  Tensor f_bias;                      // b_f [d], inside the tanh
  std::shared_ptr<Linear> gate_in;    // W_gi, b_gi: applied to Hm
  std::shared_ptr<Linear> gate_attn;  // W_ga, b_ga: applied to S
  Tensor o_bias;                      // b_o [d]
  std::shared_ptr<Dropout> dropout;

 private:
  int64_t input_dim_, hidden_dim_;
  AttentionDirection direction_;
  DenseActivation activation_;
};

struct Source2TokenOptions {
  int64_t layers = 2;  // 1: the block summary inside mBloSA; 2: the sentence encoder's pooling
  DenseActivation activation = DenseActivation::Elu;  // between the two layers
  double dropout = 0.0;
  TensorOptions options = {};
};

class Source2Token : public Module {
 public:
  explicit Source2Token(int64_t dim, Source2TokenOptions opts = {});

  // x [..., n, dim], padding_mask bool [..., n] (true = padding) or undefined -> [..., dim]: the feature-wise
  // softmax over n of the scores (one or two dense layers of x) weighting x itself. All-padding rows give 0.
  Tensor forward(const Tensor& x, const Tensor& padding_mask);
  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }
  void reset_parameters();

  int64_t dim() const { return dim_; }
  int64_t layers() const { return layers_; }

  std::shared_ptr<Linear> hidden;  // W_a, b_a (two-layer variant only)
  std::shared_ptr<Linear> score;   // W_b, b_b (or W_s, b_s for the one-layer variant)
  std::shared_ptr<Dropout> dropout;

 private:
  int64_t dim_, layers_;
  DenseActivation activation_;
};

struct BlockSelfAttentionOptions {
  int64_t block_len = 0;  // r; 0 = default_block_length(n) of each batch's padded length n (the library rule)
  DenseActivation activation = DenseActivation::Elu;
  double dropout = 0.0;  // 1 - keep_prob, on the input of every dense layer
  TensorOptions options = {};
  bool reference_parity = false;  // true: empty blocks stay in the inter-block attention, as in the TF code
};

class BlockSelfAttention : public Module {
 public:
  // One mBloSA direction (Forward or Backward) mapping input_dim features to hidden_dim = d.
  // Parameters: 14 d^2 + (input_dim + 10) d (spec §4).
  BlockSelfAttention(int64_t input_dim, int64_t hidden_dim, AttentionDirection direction,
                     BlockSelfAttentionOptions opts = {});

  // The block length of the experiments (spec 2.8): r = ceil(cbrt(2 n_hat)) + 1 with the expected longest
  // sentence of a training batch n_hat = mean + std * sqrt(2 ln batch_size), from the training set's length
  // statistics. Fix it once per dataset (spec P5) and pass it as BlockSelfAttentionOptions::block_len.
  static int64_t block_length_for(double mean, double std, int64_t batch_size);
  // The library fallback used when no block length is given: ceil(cbrt(2 n)), n the batch's padded length
  // (at least 1). It minimises n r + (n / r)^2, the intra- plus inter-block attention sizes.
  static int64_t default_block_length(int64_t n);

  struct Parts {
    int64_t block_len;  // r
    Tensor h0;          // act(fc(x)) on the block-padded input, [B, m, r, d]
    Tensor h;           // intra-block attention output, [B, m, r, d] (0 at padding and rows with no key)
    Tensor v;           // block summaries, [B, m, d]
    Tensor e;           // inter-block DiSA output, [B, m, d] (0 at empty blocks unless reference_parity)
    Tensor output;      // the fused result unpadded, [B, n, d]
  };
  // x [B, n, input_dim], padding_mask bool [B, n] (true = padding) or undefined.
  Parts forward_parts(const Tensor& x, const Tensor& padding_mask = Tensor());
  Tensor forward(const Tensor& x, const Tensor& padding_mask) { return forward_parts(x, padding_mask).output; }
  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }
  void reset_parameters();

  int64_t input_dim() const { return input_dim_; }
  int64_t hidden_dim() const { return hidden_dim_; }
  AttentionDirection direction() const { return direction_; }
  int64_t block_len() const { return block_len_; }

  std::shared_ptr<Linear> fc;          // W_x, b_x
  std::shared_ptr<Linear> key_query;   // W_kq as [2d, d], no bias: rows [0, d) keys, rows [d, 2d) queries
  Tensor f_bias;                       // b_f [d]
  std::shared_ptr<Source2Token> block_summary;            // one layer: W_s, b_s
  std::shared_ptr<DirectionalSelfAttention> inter_block;  // DiSA over the block summaries (d -> d)
  std::shared_ptr<Linear> fusion;      // W_c as [2d, 3d], b_c [2d]: rows [0, d) give Zc, rows [d, 2d) give Zg
  std::shared_ptr<Dropout> dropout;

 private:
  int64_t input_dim_, hidden_dim_;
  AttentionDirection direction_;
  int64_t block_len_;
  DenseActivation activation_;
  bool reference_parity_;
};

class BiBlockSelfAttention : public Module {
 public:
  // Forward and backward mBloSA with untied parameters ("fw", "bw"); output width 2 * hidden_dim.
  BiBlockSelfAttention(int64_t input_dim, int64_t hidden_dim, BlockSelfAttentionOptions opts = {});

  // x [B, n, input_dim], padding_mask bool [B, n] or undefined -> [B, n, 2d] = [fw(x) ; bw(x)].
  Tensor forward(const Tensor& x, const Tensor& padding_mask);
  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }

  std::shared_ptr<BlockSelfAttention> fw;
  std::shared_ptr<BlockSelfAttention> bw;
};

}  // namespace loom::nn
