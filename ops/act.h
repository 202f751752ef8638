#pragma once
// Adaptive Computation Time (Graves 2016) as the Universal Transformer uses it: a per-position halting loop
// around a caller-supplied step. Spec and reference numbers: shared/research/ut_act.md sections 2.1-2.5
// and 8.
//
// Per position, with halting probabilities p^n in [0, 1] and threshold 1 - eps:
//   N   = min(M, min{n : p^1 + ... + p^n >= 1 - eps})      (steps taken; a constant for autodiff)
//   R   = 1 - (p^1 + ... + p^{N-1})                         (remainder; carries the ponder gradient)
//   w^n = p^n for n < N, R for n = N                        (update weights; they sum to 1)
//   S   = sum_n w^n Y^n                    (Accumulate: Graves)
//   S^n = w^n Y^n + (1 - w^n) S^{n-1}      (Interpolate: T2T "basic")
//   ponder time rho = N + R; ponder cost = mean of rho over real (non-padding) positions.
// The loop runs until every real position has halted or M steps have run. The halting probability of the
// halting step itself gets no gradient (Graves eq. 20), and N none at all. Padding positions start halted:
// never computed in compact mode, never weighted, excluded from the cost and from the "anyone still running"
// test.
//
// What the step sees. Each step n (0-based) the loop state H [B, L, d] (the input x at first) becomes
// X = preprocess(H, n) (the caller's coordinate signals; identity when none), the halting unit gives p from X
// (Pre, T2T) or from the step's output (Post, Graves), and the step maps X to new states Y for the positions
// in `rows`: the flattened indices b * L + l still running (compact) or all of them (dense), ascending. A
// step that mixes positions (attention) reads every position of X but need only compute the rows asked for;
// position-wise parts then cost in proportion to the positions still running, so the loop's cost follows the
// total ponder time rather than M times the length (act_positionwise and nn::transformer_act_step do this).
//
// Halted positions. T2T keeps transforming halted positions (H = Y everywhere: the accumulator is frozen but
// the state others attend to keeps evolving) and computes every position every step; DGL freezes them.
// Compact mode (the default) computes only running rows, so halted states are frozen (DGL). Dense mode
// computes all rows and either freezes them too (freeze_halted_state, same results as compact) or keeps
// transforming them (T2T).
#include <cstdint>
#include <functional>

#include "loom/core/tensor.h"

namespace loom {

enum class ActMix {
  Accumulate,   // S = sum_n w^n Y^n: Graves' mean field; T2T act_type "accumulated"
  Interpolate,  // S = w Y + (1 - w) S: T2T act_type "basic" (the UT paper's listing); weights sum to < 1
};

enum class ActHaltingInput {
  Pre,   // p^n from the state entering step n (T2T, the UT paper)
  Post,  // p^n from step n's output (Graves, DGL)
};

struct ActOptions {
  int64_t max_steps = 8;  // M (T2T act_max_steps)
  double epsilon = 0.01;  // threshold 1 - epsilon (T2T act_epsilon)
  ActMix mix = ActMix::Accumulate;
  ActHaltingInput halting_input = ActHaltingInput::Pre;
  // Positions still running at step M halt there with R = 1 - sum p (Graves eq. 13), keeping their ponder
  // gradient. Off (T2T): they stop with R = 0, weights summing to sum p < 1, and no ponder gradient at all.
  bool force_halt_at_cap = true;
  // T2T's comparisons: halt when cum + p > 1 - eps (strict), and a position whose cumulative probability sits
  // exactly at 1 - eps does not keep the loop alive (it exits with R = 0, unless others keep the loop going).
  bool t2t_boundary = false;
  // T2T act_type "global": one halting decision per sequence, p averaged over the sequence's real positions
  // (T2T also averages over padding, which makes results depend on padding; we do not).
  bool global_halting = false;
  // Compact: gather the running rows, step them, scatter back (halted states frozen). Dense: every row every
  // step.
  bool compact = true;
  // Dense mode only: keep halted positions' states frozen (true) or keep transforming them (false, T2T).
  bool freeze_halted_state = true;
  // > 0: run exactly this many steps with p = 0 and a forced halt at the last (w = 0, ..., 0, 1; N = k, R =
  // 1): a k-layer weight-shared Transformer when the step is one (ut_act.md B2). The halting function is not
  // called.
  int64_t fixed_steps = 0;

  // tensor2tensor's universal_transformer_act with act_type "basic": its comparisons, no forced halt,
  // interpolation, p from the entering state, every position computed and halted ones kept transforming.
  static ActOptions t2t(int64_t max_steps = 8, double epsilon = 0.01);
};

// x [B, L, d] (the input to step 0 after preprocess); rows int64 [n]. Returns Y [n, d] for those rows.
using ActStepFn = std::function<Tensor(const Tensor& x, const Tensor& rows, int64_t step)>;
// h [n, d]: X's rows (Pre) or the step's output rows (Post). Returns p [n] (or [n, 1]) in [0, 1], x's dtype.
using ActHaltingFn = std::function<Tensor(const Tensor& h, const Tensor& rows, int64_t step)>;
// state [B, L, d] -> X [B, L, d], e.g. H + position signal + step signal[step].
using ActPreprocessFn = std::function<Tensor(const Tensor& state, int64_t step)>;

struct ActResult {
  Tensor output;  // [B, L, d]: the accumulator S (T2T applies a final LayerNorm to it; so should callers)
  Tensor ponder_cost;      // scalar: mean over real positions of N + R; gradient through R only
  Tensor ponder_times;     // [B, L]: N + R per position (0 at padding); gradient through R only
  Tensor remainders;       // [B, L]: R
  Tensor steps;            // int64 [B, L]: N (0 at padding)
  int64_t iterations = 0;  // loop iterations run: the largest N over real positions
};

// padding_mask: bool [B, L], true = padding (MultiheadAttention's key_padding_mask convention); optional.
ActResult adaptive_computation_time(const Tensor& x, const ActStepFn& step, const ActHaltingFn& halting,
                                    const ActOptions& options = {}, const Tensor& padding_mask = Tensor(),
                                    const ActPreprocessFn& preprocess = nullptr);

// A position-wise step (an MLP, a GRU cell): fn(x_rows [n, d], step) -> [n, d] runs on the requested rows
// only.
ActStepFn act_positionwise(std::function<Tensor(const Tensor& x_rows, int64_t step)> fn);

// A layer norm's projection LN(x) W^T + b (attention keys and values, say) of every position at a step of the
// compact ACT loop whose input is x = v + s with s a per-step signal (a step embedding): the running
// positions' rows arrive computed, and the frozen (halted) positions', whose v no longer changes, come from
// terms made once when they halted. With v~, s~ the centred vectors and d their width:
//   LN(v + s) W^T + b = (P + (gamma * s~) W^T) / sigma + (beta W^T + b),   P = (gamma * v~) W^T,
//   sigma = sqrt((|v~|^2 + 2 v~ . s~ + |s~|^2) / d + eps),
// O(d + C) per frozen position and step instead of a layer norm and an O(d C) projection. Exact up to
// rounding.
struct ActFrozenRows {
  Tensor rows;          // int64 [h]: where they go in the output
  Tensor projected;     // [h, C]  P
  Tensor centred;       // [h, d]  v~
  Tensor squared_norm;  // [h]     |v~|^2
};
struct ActStepSignalTerms {
  Tensor centred;    // [d]  s~
  Tensor projected;  // [C]  (gamma * s~) W^T
  Tensor shift;      // [C]  beta W^T + b
};
// running [n, C] goes to rows running_rows (int64 [n]); returns [n + h, C], every row written once (the two
// index sets partition it). Differentiable in every floating tensor. The CPU runs one fused pass each way;
// other backends compose ops.
Tensor act_frozen_projection(const Tensor& running, const Tensor& running_rows, const ActFrozenRows& frozen,
                             const ActStepSignalTerms& signal, double eps);

// tensor2tensor's get_timing_signal_1d: [length, channels], channels [0, c/2) sin(pos * inv_ts[k]) and
// [c/2, c) cos(pos * inv_ts[k]), inv_ts[k] = exp(-k ln(1e4) / max(c/2 - 1, 1)), pos = start + 0..length-1;
// one zero channel at the end when c is odd.
Tensor timing_signal_1d(int64_t length, int64_t channels, TensorOptions options = {}, double start = 0);

}  // namespace loom
