// DiSA, source2token pooling, mBloSA and Bi-BloSA (nn/block_attention.h), following the reference TF code step
// by step; the comments name the spec's symbols (shared/research/biblosa.md §2-3).
#include "loom/nn/block_attention.h"

#include <cmath>

#include "loom/nn/init.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/factory.h"
#include "loom/ops/reduce.h"
#include "loom/ops/shape_ops.h"

namespace loom::nn {
namespace {

Tensor activate(const Tensor& x, DenseActivation a) { return a == DenseActivation::Relu ? relu(x) : elu(x); }

// TF's default initialisation of a dense layer: Glorot-uniform weight, zero bias.
void init_dense(Linear& layer) {
  init::xavier_uniform_(layer.weight);
  if (layer.bias.defined()) init::zeros_(layer.bias);
}

// Halves [0, d) and [d, 2d) of the last dim of a packed [..., 2d] projection (views).
Tensor first_half(const Tensor& t) { return t.narrow(-1, 0, t.size(-1) / 2); }
Tensor second_half(const Tensor& t) { return t.narrow(-1, t.size(-1) / 2, t.size(-1) / 2); }

void check_dims(const char* who, int64_t input_dim, int64_t hidden_dim, double dropout) {
  LOOM_CHECK(input_dim > 0 && hidden_dim > 0, who, ": input_dim and hidden_dim must be positive, got ", input_dim,
             " and ", hidden_dim);
  LOOM_CHECK(dropout >= 0 && dropout < 1, who, ": dropout must be in [0, 1), got ", dropout);
}

void check_direction(const char* who, AttentionDirection direction) {
  LOOM_CHECK(direction == AttentionDirection::Forward || direction == AttentionDirection::Backward, who,
             ": direction must be Forward or Backward, got ", attention_direction_name(direction));
}

// x [..., T, features] and its padding mask [..., T] (or undefined).
void check_input(const char* who, const Tensor& x, int64_t features, const Tensor& padding_mask) {
  LOOM_CHECK(x.defined(), who, ": undefined input");
  LOOM_CHECK(x.dim() >= 2 && x.size(-1) == features, who, ": expected an input [..., T, ", features, "], got shape ",
             x.shape());
  if (!padding_mask.defined()) return;
  Shape lead = x.shape();
  lead.pop_back();
  LOOM_CHECK(padding_mask.dtype() == DType::Bool && padding_mask.shape() == lead, who,
             ": padding_mask must be bool ", lead, " (true = padding) for an input of shape ", x.shape(), ", got ",
             describe(padding_mask));
}

}  // namespace

// ---- DiSA --------------------------------------------------------------------------------------------------

DirectionalSelfAttention::DirectionalSelfAttention(int64_t input_dim, int64_t hidden_dim,
                                                   AttentionDirection direction, DirectionalSelfAttentionOptions opts)
    : Module("DirectionalSelfAttention"), input_dim_(input_dim), hidden_dim_(hidden_dim), direction_(direction),
      activation_(opts.activation) {
  check_dims("DirectionalSelfAttention", input_dim, hidden_dim, opts.dropout);
  const int64_t d = hidden_dim;
  fc = register_module("fc", std::make_shared<Linear>(input_dim, d, true, opts.options));
  key_query = register_module("key_query", std::make_shared<Linear>(d, 2 * d, false, opts.options));
  f_bias = register_parameter("f_bias", empty({d}, opts.options));
  gate_in = register_module("gate_in", std::make_shared<Linear>(d, d, true, opts.options));
  gate_attn = register_module("gate_attn", std::make_shared<Linear>(d, d, true, opts.options));
  o_bias = register_parameter("o_bias", empty({d}, opts.options));
  dropout = register_module("dropout", std::make_shared<Dropout>(opts.dropout));
  reset_parameters();
}

void DirectionalSelfAttention::reset_parameters() {
  init_dense(*fc);
  init_dense(*gate_in);
  init_dense(*gate_attn);
  // W_1 and W_2 are two d x d matrices in TF: Glorot with the fans of each.
  init::xavier_uniform_(key_query->weight.narrow(0, 0, hidden_dim_));
  init::xavier_uniform_(key_query->weight.narrow(0, hidden_dim_, hidden_dim_));
  init::zeros_(f_bias);
  init::zeros_(o_bias);
}

DirectionalSelfAttention::Parts DirectionalSelfAttention::forward_parts(const Tensor& x, const Tensor& padding_mask) {
  check_input("DirectionalSelfAttention", x, input_dim_, padding_mask);
  Parts p;
  p.rep = activate(fc->forward(dropout->forward(x)), activation_);
  // One dropout mask shared by the key and the query projection (a single packed GEMM).
  Tensor kq = key_query->forward(dropout->forward(p.rep));
  // Keys masked by padding, queries not (the output is zeroed at padding below instead).
  p.attended = multi_dim_attention(second_half(kq), first_half(kq), p.rep, f_bias, direction_, padding_mask,
                                   kTokenAttentionScale, /*mask_queries=*/false);
  // Each gate input has its own dropout mask.
  Tensor g = sigmoid(add(add(gate_in->forward(dropout->forward(p.rep)), gate_attn->forward(dropout->forward(p.attended))),
                         o_bias));
  Tensor u = add(mul(g, p.rep), mul(1.0 - g, p.attended));
  p.output = padding_mask.defined() ? masked_fill(u, padding_mask.unsqueeze(-1), 0.0) : u;
  return p;
}

// ---- source2token ------------------------------------------------------------------------------------------

Source2Token::Source2Token(int64_t dim, Source2TokenOptions opts)
    : Module("Source2Token"), dim_(dim), layers_(opts.layers), activation_(opts.activation) {
  check_dims("Source2Token", dim, dim, opts.dropout);
  LOOM_CHECK(opts.layers == 1 || opts.layers == 2, "Source2Token: layers must be 1 or 2, got ", opts.layers);
  if (layers_ == 2) hidden = register_module("hidden", std::make_shared<Linear>(dim, dim, true, opts.options));
  score = register_module("score", std::make_shared<Linear>(dim, dim, true, opts.options));
  dropout = register_module("dropout", std::make_shared<Dropout>(opts.dropout));
  reset_parameters();
}

void Source2Token::reset_parameters() {
  if (hidden) init_dense(*hidden);
  init_dense(*score);
}

Tensor Source2Token::forward(const Tensor& x, const Tensor& padding_mask) {
  check_input("Source2Token", x, dim_, padding_mask);
  Tensor t = dropout->forward(x);
  if (hidden) t = dropout->forward(activate(hidden->forward(t), activation_));
  // The pooled values are x itself, not its dropped-out copy (spec P8).
  return source2token(score->forward(t), x, padding_mask);
}

// ---- mBloSA ------------------------------------------------------------------------------------------------

int64_t BlockSelfAttention::block_length_for(double mean, double std, int64_t batch_size) {
  LOOM_CHECK(std::isfinite(mean) && std::isfinite(std) && mean >= 0 && std >= 0 && batch_size >= 1,
             "BlockSelfAttention::block_length_for: expected a finite mean >= 0, std >= 0 and batch_size >= 1, got ",
             mean, ", ", std, " and ", batch_size);
  const double n_hat = mean + std * std::sqrt(2.0 * std::log(static_cast<double>(batch_size)));
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(std::cbrt(2.0 * n_hat)))) + 1;
}

int64_t BlockSelfAttention::default_block_length(int64_t n) {
  LOOM_CHECK(n >= 0, "BlockSelfAttention::default_block_length: length must be non-negative, got ", n);
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(std::cbrt(2.0 * static_cast<double>(n)))));
}

BlockSelfAttention::BlockSelfAttention(int64_t input_dim, int64_t hidden_dim, AttentionDirection direction,
                                       BlockSelfAttentionOptions opts)
    : Module("BlockSelfAttention"), input_dim_(input_dim), hidden_dim_(hidden_dim), direction_(direction),
      block_len_(opts.block_len), activation_(opts.activation), reference_parity_(opts.reference_parity) {
  check_dims("BlockSelfAttention", input_dim, hidden_dim, opts.dropout);
  check_direction("BlockSelfAttention", direction);
  LOOM_CHECK(opts.block_len >= 0, "BlockSelfAttention: block_len must be positive (or 0 for the default rule), got ",
             opts.block_len);
  const int64_t d = hidden_dim;
  fc = register_module("fc", std::make_shared<Linear>(input_dim, d, true, opts.options));
  key_query = register_module("key_query", std::make_shared<Linear>(d, 2 * d, false, opts.options));
  f_bias = register_parameter("f_bias", empty({d}, opts.options));
  block_summary = register_module(
      "block_summary", std::make_shared<Source2Token>(d, Source2TokenOptions{1, opts.activation, opts.dropout,
                                                                             opts.options}));
  inter_block = register_module(
      "inter_block", std::make_shared<DirectionalSelfAttention>(
                         d, d, direction, DirectionalSelfAttentionOptions{opts.activation, opts.dropout, opts.options}));
  fusion = register_module("fusion", std::make_shared<Linear>(3 * d, 2 * d, true, opts.options));
  dropout = register_module("dropout", std::make_shared<Dropout>(opts.dropout));
  reset_parameters();
}

void BlockSelfAttention::reset_parameters() {
  init_dense(*fc);
  init::xavier_uniform_(key_query->weight);  // one d x 2d matrix in TF
  init::zeros_(f_bias);
  block_summary->reset_parameters();
  inter_block->reset_parameters();
  init_dense(*fusion);
}

BlockSelfAttention::Parts BlockSelfAttention::forward_parts(const Tensor& x, const Tensor& padding_mask) {
  const char* who = "BlockSelfAttention";
  check_input(who, x, input_dim_, padding_mask);
  LOOM_CHECK(x.dim() == 3, who, ": expected an input [B, n, ", input_dim_, "], got shape ", x.shape());
  const int64_t batch = x.size(0), n = x.size(1), d = hidden_dim_;
  LOOM_CHECK(n >= 1, who, ": expected at least one token, got an input of shape ", x.shape());
  Parts p;
  p.block_len = block_len_ > 0 ? block_len_ : default_block_length(n);
  const int64_t r = p.block_len, m = (n + r - 1) / r, padded = m * r;
  // 0. Pad to whole blocks: zero features, marked as padding (no mask at all when nothing is padding).
  Tensor pad = padding_mask, xp = x;
  if (padded > n) {
    const TensorOptions bools{DType::Bool, x.device()};
    if (!pad.defined()) pad = zeros({batch, n}, bools);
    xp = cat({x, zeros({batch, padded - n, input_dim_}, x.options())}, 1);
    pad = cat({pad, ones({batch, padded - n}, bools)}, 1);
  }
  Tensor block_pad = pad.defined() ? pad.view({batch, m, r}) : Tensor();
  // 1. FC.
  p.h0 = activate(fc->forward(dropout->forward(xp)), activation_).view({batch, m, r, d});
  // 2. Intra-block attention: keys and queries masked, values H0 itself (never dropped out).
  Tensor kq = key_query->forward(dropout->forward(p.h0));
  p.h = multi_dim_attention(second_half(kq), first_half(kq), p.h0, f_bias, direction_, block_pad,
                            kTokenAttentionScale, /*mask_queries=*/true);
  // 3. Block summaries (one-layer source2token).
  p.v = block_summary->forward(p.h, block_pad);
  // 4. Inter-block DiSA; a block is valid iff one of its tokens is (spec P4), or every block is (the TF code).
  Tensor empty_block = block_pad.defined() && !reference_parity_ ? all(block_pad, {-1}) : Tensor();
  p.e = inter_block->forward(p.v, empty_block);
  // 5. Gated fusion of [H0 ; h ; E], E the block's e repeated over its r positions.
  Tensor big_e = p.e.unsqueeze(2).expand({batch, m, r, d});
  Tensor z = fusion->forward(dropout->forward(cat({p.h0, p.h, big_e}, -1)));
  Tensor g = sigmoid(second_half(z));
  Tensor u = add(mul(g, activate(first_half(z), activation_)), mul(1.0 - g, p.h0));
  // 6. Unpad.
  p.output = u.view({batch, padded, d}).narrow(1, 0, n);
  return p;
}

// ---- Bi-BloSA ----------------------------------------------------------------------------------------------

BiBlockSelfAttention::BiBlockSelfAttention(int64_t input_dim, int64_t hidden_dim, BlockSelfAttentionOptions opts)
    : Module("BiBlockSelfAttention") {
  fw = register_module("fw",
                       std::make_shared<BlockSelfAttention>(input_dim, hidden_dim, AttentionDirection::Forward, opts));
  bw = register_module("bw",
                       std::make_shared<BlockSelfAttention>(input_dim, hidden_dim, AttentionDirection::Backward, opts));
}

Tensor BiBlockSelfAttention::forward(const Tensor& x, const Tensor& padding_mask) {
  return cat({fw->forward(x, padding_mask), bw->forward(x, padding_mask)}, -1);
}

}  // namespace loom::nn
