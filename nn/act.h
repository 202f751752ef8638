#pragma once
// nn::AdaptiveComputationTime: the Universal Transformer's ACT loop (ops/act.h) with its halting unit
// p = sigmoid(Linear(d, 1)(h)) (bias initialised to 1.0, so p = 0.731 at first: T2T act_halting_bias_init and
// Graves' b_h), and optionally T2T's coordinate signals added to the state before every step:
//   X = H + position_signal + step_signal[step]
// (position: get_timing_signal_1d over the length; step: row `step` of get_timing_signal_1d(max_steps, d), or
// a learned [max_steps, d] table initialised N(0, d^-1/2) and scaled by sqrt(d) at use, T2T's default). The
// step itself is the caller's; transformer_act_step makes one weight-shared TransformerBlock the step.
// Returns ops/act.h's ActResult; add options.ponder_weight * result.ponder_cost to the loss (T2T: 0.01).
#include <memory>

#include "loom/nn/linear.h"
#include "loom/nn/module.h"
#include "loom/nn/transformer.h"
#include "loom/ops/act.h"

namespace loom::nn {

enum class ActStepSignal { None, Sinusoid, Learned };

struct AdaptiveComputationTimeOptions {
  int64_t d_model = 0;
  ActOptions act;
  double halting_bias_init = 1.0;
  // T2T act_type "random": p ~ U(0, 1) from the default generator each step, no halting unit used.
  bool random_halting = false;
  bool position_signal = false;
  ActStepSignal step_signal = ActStepSignal::None;
  double ponder_weight = 0.01;  // tau (T2T act_loss_weight); informational: the caller forms the loss
};

class AdaptiveComputationTime : public Module {
 public:
  explicit AdaptiveComputationTime(const AdaptiveComputationTimeOptions& options,
                                   TensorOptions tensor_options = {});

  // x [B, L, d_model]; padding_mask bool [B, L], true = padding.
  ActResult forward(const Tensor& x, const ActStepFn& step, const Tensor& padding_mask = Tensor());
  // X for step `step` from the state: the signals above (identity when none are on).
  Tensor add_signals(const Tensor& state, int64_t step) const;

  const AdaptiveComputationTimeOptions& options() const { return options_; }

  std::shared_ptr<Linear> halting;  // d_model -> 1
  Tensor step_embedding;            // [max_steps, d_model] when step_signal == Learned

 private:
  AdaptiveComputationTimeOptions options_;
};

// One weight-shared pre-norm TransformerBlock as the ACT step, computing only the rows asked for: LayerNorm
// and the key/value projections run over every position (running queries attend to all positions' current
// states), while the query projection, attention, output projection and MLP run on the requested rows only,
// batch element by batch element. With every row requested it is block->forward itself. key_padding_mask bool
// [B, L] (true = padding) and is_causal as TransformerBlock::forward; a causal mask follows each row's own
// position.
ActStepFn transformer_act_step(std::shared_ptr<TransformerBlock> block, Tensor key_padding_mask = Tensor(),
                               bool is_causal = false);

}  // namespace loom::nn
