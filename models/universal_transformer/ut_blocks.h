#pragma once
// The Universal Transformer's layer (tensor2tensor universal_transformer_util.py, pre-norm as every T2T
// hparams set runs it; shared/research/ut_act.md section 1.3), one class for both sides:
//   encoder:  x = x + Drop(SelfAttn(LN(x)))                 keys: every real source position
//             x = x + Drop(Transition(LN(x)))
//   decoder:  x = x + Drop(SelfAttn(LN(x)))                 causal (T2T passes no target padding bias)
//             x = x + Drop(CrossAttn(LN(x), K = V = memory)) memory: the FINAL encoder output
//             x = x + Drop(Transition(LN(x)))
// Transition "ffn": dense(d_ff) -> ReLU -> Drop -> dense(d) (T2T transformer_ffn_type "fc"). "sepconv": T2T's
// sepconv_relu_sepconv: separable conv kernel 3 to d_ff, ReLU, Drop, separable conv kernel 5 to d; a
// separable conv is a depthwise conv over positions (one kernel per channel, no bias) then a pointwise dense
// with bias (tf separable_conv1d); each conv's input is zeroed at padding (maybe_zero_out_padding) so padding
// never leaks into real positions; SAME padding in the encoder, LEFT (causal) in the decoder. Layer norms
// have eps 1e-6 (T2T). The same class is the vanilla Transformer's layer.
//
// forward_rows computes the layer's output only at some positions, the ACT step of a compact loop
// (ops/act.h): layer norm and the self-attention keys/values run over every position (running queries see
// every position's current state, halted ones included), the queries, output projections and a position-wise
// transition only on the rows asked for. A sepconv transition mixes positions, so it computes every row and
// keeps those asked for.
//
// Parameters: ln_self, self_attn (MultiheadAttention names), [ln_cross, cross_attn], ln_transition,
// transition.{fc1, fc2} | transition.{depthwise1, pointwise1, depthwise2, pointwise2}.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "loom/nn/attention.h"
#include "loom/nn/dropout.h"
#include "loom/nn/layer_norm.h"
#include "loom/nn/linear.h"
#include "loom/nn/module.h"
#include "loom/ops/act.h"

namespace loom::models {

struct TransitionOptions {
  int64_t d_model = 0;
  int64_t d_ff = 0;
  std::string type = "ffn";  // "ffn" | "sepconv"
  bool causal = false;       // sepconv: LEFT padding (decoder) instead of SAME
  double dropout = 0.0;      // on the hidden layer (T2T relu_dropout)
};

class Transition : public nn::Module {
 public:
  explicit Transition(const TransitionOptions& options, TensorOptions tensor_options = {});

  // x [B, L, d]; padding bool [B, L] (true = padding, optional): sepconv zeroes each conv's input there.
  Tensor forward(const Tensor& x, const Tensor& padding);
  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }
  // Position-wise transitions ("ffn") only: x_rows [n, d] -> [n, d].
  Tensor forward_rows(const Tensor& x_rows);
  bool positionwise() const { return options_.type == "ffn"; }
  const TransitionOptions& options() const { return options_; }

  std::shared_ptr<nn::Linear> fc1, fc2;                // ffn
  Tensor depthwise1, depthwise2;                       // sepconv: [3, d], [5, d_ff]
  std::shared_ptr<nn::Linear> pointwise1, pointwise2;  // sepconv: d -> d_ff, d_ff -> d
  std::shared_ptr<nn::Dropout> dropout;

 private:
  TransitionOptions options_;
};

// out[b, l, c] = sum_j w[j, c] x[b, l + j - left, c] with zeros outside [0, L): left = k - 1 when causal,
// (k - 1) / 2 otherwise (SAME). x [B, L, c], w [k, c].
Tensor depthwise_conv1d(const Tensor& x, const Tensor& w, bool causal);

struct UTBlockOptions {
  int64_t d_model = 0;
  int64_t heads = 1;
  int64_t d_ff = 0;
  std::string transition = "ffn";
  bool decoder = false;  // causal self-attention + encoder-decoder attention; causal sepconv
  double dropout = 0.0;  // residual branches, attention weights, transition hidden layer
  double eps = 1e-6;
};

// What a layer reads besides its input.
struct UTBlockContext {
  Tensor padding;         // bool [B, L], true = padding: encoder self-attention keys; sepconv zeroing
  Tensor memory;          // decoder: [B, S, d], the encoder's final output
  Tensor memory_padding;  // decoder: bool [B, S], true = padding source position
  // decoder, optional: memory already projected by the block's cross_attn (project_key_value), so that the
  // recurrent steps share one projection of the encoder output instead of redoing it at each.
  nn::MultiheadAttention::ProjectedKeyValue memory_key_value;
};

// What the Universal Transformer's step preprocessing hands an ACT step besides its input X = v + s: v, the
// loop state plus the position signal, and s, the step signal. In the compact ACT loop a halted position's
// state is frozen and (with one position signal for every step) so is its v, which is what lets UTBlock keep
// its keys and values up to date in O(d) per step (HaltedKeyValues).
struct UTStepInput {
  int64_t step = -1;   // the step the preprocessing last ran for
  Tensor v;            // [B, L, d]
  Tensor step_signal;  // [d]
};

// The self-attention keys and values of the halted positions of one ACT loop. For x = v + s and the block's
// LN(x) = gamma * (x - mean x) / sigma + beta, sigma = sqrt(var x + eps): x - mean x = v~ + s~ (both centred)
// and var x = (|v~|^2 + 2 v~ . s~ + |s~|^2) / d, so the packed projection [K V] = LN(x) W^T + b is
//   ((gamma * v~) W^T + (gamma * s~) W^T) / sigma + (beta W^T + b).
// (gamma * v~) W^T is computed once, when the position halts; at each later step a halted position costs a
// dot with s~ and a scaled add, O(d), instead of a layer norm and a [2d, d] projection, O(d^2). Exact up to
// rounding; every term is an ordinary differentiable op, so gradients reach v, s and the parameters.
struct HaltedKeyValues {
  std::vector<int64_t> rows;  // flattened b * L + l, in the order they halted
  Tensor centred;             // [h, d]   v~
  Tensor projected;           // [h, 2d]  (gamma * v~) W_kv^T, no bias
  Tensor squared_norm;        // [h]      |v~|^2
};

class UTBlock : public nn::Module {
 public:
  explicit UTBlock(const UTBlockOptions& options, TensorOptions tensor_options = {});

  // x [B, L, d] -> [B, L, d].
  Tensor forward(const Tensor& x, const UTBlockContext& context);
  Tensor forward(const Tensor& x) override { return forward(x, UTBlockContext{}); }
  // The output at `rows` (int64 [n], flattened b * L + l, ascending) only: [n, d]. Equal to those rows of
  // forward(x, context).
  Tensor forward_rows(const Tensor& x, const Tensor& rows, const UTBlockContext& context);
  // The same, as a step of the compact ACT loop (x = input.v + input.step_signal, the positions not in `rows`
  // halted with their v frozen): those positions' keys and values come from `halted`, which the call extends
  // with the positions that halted since the previous one; the layer norm and projections run on `rows` only.
  // A sepconv transition computes every position anyway and ignores `halted`.
  Tensor forward_rows(const Tensor& x, const Tensor& rows, const UTBlockContext& context,
                      const UTStepInput& input, HaltedKeyValues& halted);

  const UTBlockOptions& options() const { return options_; }

  std::shared_ptr<nn::LayerNorm> ln_self, ln_cross, ln_transition;
  std::shared_ptr<nn::MultiheadAttention> self_attn, cross_attn;  // cross_attn: decoder only
  std::shared_ptr<Transition> transition;
  std::shared_ptr<nn::Dropout> dropout;  // residual branches (T2T layer_prepostprocess_dropout)

 private:
  void check_input(const Tensor& x, const UTBlockContext& context) const;
  // The context's projected memory, or cross_attn's projection of context.memory when it has none.
  nn::MultiheadAttention::ProjectedKeyValue memory_key_value(const UTBlockContext& context);
  // forward_rows' `rows` as host indices, checked: ascending, within the B * L positions of x.
  std::vector<int64_t> row_indices(const Tensor& x, const Tensor& rows) const;
  // forward_rows after the self-attention keys and values: x_rows [n, d] the input rows, h_rows [n, d] their
  // layer norm (the queries' input), kv every position's projected keys and values.
  Tensor rows_after_key_values(const Tensor& x_rows, const Tensor& h_rows, const std::vector<int64_t>& idx,
                               int64_t L, const nn::MultiheadAttention::ProjectedKeyValue& kv,
                               const UTBlockContext& context);

  UTBlockOptions options_;
};

// The layer as an ACT step (ops/act.h): step(x, rows, t) = block->forward_rows(x, rows, context). With
// `input` (which the loop's preprocessing fills in at every step; only for the compact loop with one position
// signal for all steps) the step keeps the halted positions' keys and values (HaltedKeyValues) for the loop's
// life.
ActStepFn ut_act_step(std::shared_ptr<UTBlock> block, UTBlockContext context,
                      std::shared_ptr<const UTStepInput> input = nullptr);

}  // namespace loom::models
