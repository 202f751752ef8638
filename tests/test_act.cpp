// Adaptive Computation Time (ops/act.h, nn/act.h): the halting loop against the hand-computed cases of
// shared/research/ut_act.md section 8 (injected probabilities: step counts, remainders, weights, the
// threshold boundary, the cap, the ponder gradient), forced k steps against a k-layer weight-shared
// Transformer, float64 gradchecks, compact (gather/step/scatter) against dense, padding and batch invariance.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numeric>
#include <random>

#include "loom/autograd/gradcheck.h"
#include "loom/loom.h"
#include "loom/nn/act.h"
#include "loom/ops/backend.h"
#include "support/expect.h"

using namespace loom;
using test::error_of;
using test::max_abs_diff;

namespace {

// ut_act.md section 8 A: rows = steps, columns = 4 positions (one sequence of length 4).
const std::vector<double> kP = {0.995, 0.3, 0.5, 0.1,   // step 1
                                0.5,   0.8, 0.3, 0.1,   // step 2
                                0.5,   0.5, 0.3, 0.1,   // step 3
                                0.5,   0.5, 0.5, 0.1};  // step 4

// Injected halting: p = P[step][position]; step n outputs the one-hot e_n, so the output is the effective
// weights.
ActHaltingFn injected(const Tensor& P) {
  return [P](const Tensor&, const Tensor& rows, int64_t t) { return index_select(P.select(0, t), 0, rows); };
}

ActStepFn one_hot_step(int64_t d) {
  return [d](const Tensor& x, const Tensor& rows, int64_t t) {
    Tensor e = zeros({rows.numel(), d}, x.options());
    e.select(1, t).fill_(1.0);
    return e;
  };
}

ActResult run_injected(const std::vector<double>& p, int64_t steps, int64_t positions, ActOptions o,
                       Tensor* P_out = nullptr) {
  Tensor P = tensor(p, {steps, positions}).requires_grad_();
  if (P_out) *P_out = P;
  Tensor x = zeros({1, positions, steps}, kFloat64);
  return adaptive_computation_time(x, one_hot_step(steps), injected(P), o);
}

void expect_values(const Tensor& t, const std::vector<double>& want, double tol, const std::string& what) {
  std::vector<double> got = t.to(kFloat64).contiguous().to_vector<double>();
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << what << " [" << i << "]";
}

std::vector<int64_t> steps_of(const ActResult& r) { return r.steps.contiguous().to_vector<int64_t>(); }

}  // namespace

TEST(Act, InjectedProbabilitiesT2TSemantics) {
  // A1: N = [1, 2, 3, 4], R = [1, 0.7, 0.2, 0] (position 3 hits the cap unforced).
  for (bool compact : {false, true}) {
    ActOptions o = ActOptions::t2t(4, 0.01);
    o.compact = compact;
    o.freeze_halted_state = compact;
    o.mix = ActMix::Accumulate;
    ActResult acc = run_injected(kP, 4, 4, o);
    EXPECT_EQ(steps_of(acc), (std::vector<int64_t>{1, 2, 3, 4}));
    expect_values(acc.remainders, {1.0, 0.7, 0.2, 0.0}, 1e-15, "R");
    expect_values(acc.output, {1, 0, 0, 0, 0.3, 0.7, 0, 0, 0.5, 0.3, 0.2, 0, 0.1, 0.1, 0.1, 0.1}, 1e-15,
                  "accumulated weights");
    expect_values(acc.ponder_times, {2.0, 2.7, 3.2, 4.0}, 1e-15, "N + R");
    EXPECT_NEAR(acc.ponder_cost.item<double>(), (2.0 + 2.7 + 3.2 + 4.0) / 4, 1e-15);
    EXPECT_EQ(acc.iterations, 4);
    o.mix = ActMix::Interpolate;
    ActResult basic = run_injected(kP, 4, 4, o);
    expect_values(basic.output, {1, 0, 0, 0, 0.09, 0.7, 0, 0, 0.28, 0.24, 0.2, 0, 0.0729, 0.081, 0.09, 0.1},
                  1e-15, "basic weights");
  }
}

TEST(Act, InjectedProbabilitiesForcedHaltAtTheCap) {
  // A2 (Graves eq. 13): position 3 halts at M = 4 with R = 1 - 0.3 = 0.7; every row of weights sums to 1.
  ActOptions o;
  o.max_steps = 4;
  ActResult r = run_injected(kP, 4, 4, o);
  EXPECT_EQ(steps_of(r), (std::vector<int64_t>{1, 2, 3, 4}));
  expect_values(r.remainders, {1.0, 0.7, 0.2, 0.7}, 1e-15, "R");
  expect_values(r.output, {1, 0, 0, 0, 0.3, 0.7, 0, 0, 0.5, 0.3, 0.2, 0, 0.1, 0.1, 0.1, 0.7}, 1e-15,
                "weights");
  expect_values(sum(r.output, {2}), {1, 1, 1, 1}, 1e-15, "weight sums");
}

TEST(Act, PonderGradientFlowsOnlyThroughTheRemainder) {
  // A3: d sum(N + R) / dP is -1 at (step 1, pos 1), (step 1, pos 2), (step 2, pos 2) and 0 elsewhere,
  // including every halting-step entry and, unforced, the whole capped column; forced, the capped column gets
  // -1 at steps 1-3. C3: the task loss has no gradient at the halting step's probability (Graves eq. 20).
  for (bool forced : {false, true}) {
    ActOptions o = ActOptions::t2t(4, 0.01);
    o.force_halt_at_cap = forced;
    Tensor P;
    ActResult r = run_injected(kP, 4, 4, o, &P);
    sum(r.ponder_times).backward();
    std::vector<double> want = {0, -1, -1, 0, 0, 0, -1, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    if (forced) want[3] = want[7] = want[11] = -1;
    expect_values(P.grad(), want, 0, forced ? "forced" : "T2T");

    P.set_grad(Tensor());
    ActResult task = run_injected(kP, 4, 4, o, &P);
    sum(task.output * randn(task.output.shape(), kFloat64)).backward();
    std::vector<double> g = P.grad().to_vector<double>();
    for (int k : {0, 1, 2})
      EXPECT_EQ(g[k * 4 + k], 0.0);  // (step k, position k) is position k's halting step
    if (forced) {
      EXPECT_EQ(g[3 * 4 + 3], 0.0);
    }
  }
}

TEST(Act, PonderAndWeightedOutputGradcheckWithInjectedProbabilities) {
  for (ActMix mix : {ActMix::Accumulate, ActMix::Interpolate}) {
    for (bool t2t : {false, true}) {
      ActOptions o = t2t ? ActOptions::t2t(4, 0.01) : ActOptions{};
      o.max_steps = 4;
      o.mix = mix;
      Tensor P = tensor(kP, {4, 4}).requires_grad_();
      Tensor c = randn({1, 4, 4}, kFloat64);
      EXPECT_TRUE(gradcheck(
          [&](const std::vector<Tensor>& in) {
            ActResult r =
                adaptive_computation_time(zeros({1, 4, 4}, kFloat64), one_hot_step(4), injected(in[0]), o);
            return std::vector<Tensor>{r.ponder_cost, sum(r.output * c), r.output};
          },
          {P}));
    }
  }
}

TEST(Act, BiasInitHaltsEveryPositionAtTwoSteps) {
  // A4: p = sigmoid(1) = 0.7311 everywhere -> N = 2, R = 0.2689, ponder 2.2689.
  nn::AdaptiveComputationTimeOptions opts;
  opts.d_model = 6;
  opts.act.max_steps = 8;
  nn::AdaptiveComputationTime act(opts, kFloat64);
  {
    NoGradGuard no_grad;
    act.halting->weight.zero_();
  }
  ActResult r = act.forward(randn({2, 3, 6}, kFloat64),
                            act_positionwise([](const Tensor& x, int64_t) { return tanh(x); }));
  const double p = 1.0 / (1.0 + std::exp(-1.0));
  for (int64_t n : steps_of(r)) EXPECT_EQ(n, 2);
  expect_values(r.remainders, std::vector<double>(6, 1 - p), 1e-15, "R");
  EXPECT_NEAR(r.ponder_cost.item<double>(), 3 - p, 1e-15);
  EXPECT_NEAR(3 - p, 2.2689, 1e-4);
}

TEST(Act, ThresholdBoundaryLandingExactlyOnOneMinusEpsilon) {
  // A5, binary-exact numbers: eps = 0.25, p = 0.375, so cum + p = 0.75 = 1 - eps exactly at step 2.
  for (DType dtype : {kFloat64, kFloat32}) {
    auto run = [&](ActOptions o, std::vector<double> p_cols) {
      const int64_t n = static_cast<int64_t>(p_cols.size());
      std::vector<double> p;
      for (int i = 0; i < 4; ++i) p.insert(p.end(), p_cols.begin(), p_cols.end());
      Tensor P = tensor(p, {4, n}).to(dtype);
      return adaptive_computation_time(zeros({1, n, 4}, dtype), one_hot_step(4), injected(P), o);
    };
    // Ours (Graves, >=): halts at step 2 with R = 0.625, weights (0.375, 0.625).
    ActOptions ours;
    ours.max_steps = 4;
    ours.epsilon = 0.25;
    ActResult a = run(ours, {0.375});
    EXPECT_EQ(steps_of(a), std::vector<int64_t>{2});
    expect_values(a.remainders, {0.625}, 0, "R");
    expect_values(a.output, {0.375, 0.625, 0, 0}, 0, "weights");
    // T2T (strict >, and sitting on the threshold does not keep the loop alive): N = 2, R = 0.
    ActOptions t2t = ActOptions::t2t(4, 0.25);
    t2t.mix = ActMix::Accumulate;
    ActResult b = run(t2t, {0.375});
    EXPECT_EQ(steps_of(b), std::vector<int64_t>{2});
    expect_values(b.remainders, {0.0}, 0, "T2T R");
    expect_values(b.output, {0.375, 0.375, 0, 0}, 0, "T2T accumulated");
    t2t.mix = ActMix::Interpolate;
    expect_values(run(t2t, {0.375}).output, {0.234375, 0.375, 0, 0}, 0, "T2T basic");
    // ...and T2T's answer depends on the batch: a slow neighbour keeps the loop alive, the position runs a
    // third step and halts there with R = 0.25. Ours does not move.
    t2t.mix = ActMix::Accumulate;
    ActResult c = run(t2t, {0.375, 0.1});
    EXPECT_EQ(steps_of(c), (std::vector<int64_t>{3, 4}));
    expect_values(c.remainders.select(1, 0), {0.25}, 0, "T2T R with a neighbour");
    ActResult e = run(ours, {0.375, 0.1});
    EXPECT_EQ(steps_of(e)[0], 2);
    expect_values(e.remainders.select(1, 0), {0.625}, 0, "R with a neighbour");
  }
}

TEST(Act, HaltingInputPreSeesTheEnteringStatePostTheStepOutput) {
  for (ActHaltingInput input : {ActHaltingInput::Pre, ActHaltingInput::Post}) {
    ActOptions o;
    o.max_steps = 3;
    o.halting_input = input;
    Tensor x = randn({1, 2, 3}, kFloat64);
    std::vector<Tensor> seen;
    auto halt = [&](const Tensor& h, const Tensor&, int64_t) {
      seen.push_back(h.detach().clone());
      return full({h.size(0)}, 0.1, kFloat64);
    };
    ActResult r = adaptive_computation_time(x, one_hot_step(3), halt, o);
    ASSERT_EQ(seen.size(), 3u);
    if (input == ActHaltingInput::Pre) {
      EXPECT_TRUE(allclose(seen[0], x.view({2, 3}), 0, 0));  // step 0 sees the input itself
      EXPECT_TRUE(allclose(seen[1], one_hot(tensor(std::vector<int64_t>{0, 0}), 3).to(kFloat64), 0, 0));
    } else {
      EXPECT_TRUE(allclose(seen[0], one_hot(tensor(std::vector<int64_t>{0, 0}), 3).to(kFloat64), 0, 0));
    }
    EXPECT_EQ(steps_of(r), (std::vector<int64_t>{3, 3}));
  }
}

namespace {

struct TinyUt {
  std::shared_ptr<nn::TransformerBlock> block;
  std::shared_ptr<nn::AdaptiveComputationTime> act;
};

TinyUt make_ut(int64_t d, int64_t heads, ActOptions o, uint64_t seed, double halting_scale = 1.0,
               double halting_bias = 1.0) {
  manual_seed(seed);
  TinyUt m;
  nn::TransformerBlockOptions bo;
  bo.d_model = d;
  bo.num_heads = heads;
  bo.hidden = 2 * d;
  m.block = std::make_shared<nn::TransformerBlock>(bo, kFloat64);
  nn::AdaptiveComputationTimeOptions ao;
  ao.d_model = d;
  ao.act = o;
  ao.position_signal = true;
  ao.step_signal = nn::ActStepSignal::Sinusoid;
  ao.halting_bias_init = halting_bias;
  m.act = std::make_shared<nn::AdaptiveComputationTime>(ao, kFloat64);
  NoGradGuard no_grad;
  mul_(m.act->halting->weight, halting_scale);
  return m;
}

}  // namespace

TEST(Act, ForcingKStepsEqualsAKLayerWeightSharedTransformer) {
  // ut_act.md B1/B2: k fixed steps, weights (0, ..., 0, 1), the same coordinate signals before every step.
  for (int64_t k : {1, 3, 5}) {
    for (ActMix mix : {ActMix::Accumulate, ActMix::Interpolate}) {
      ActOptions o;
      o.fixed_steps = k;
      o.mix = mix;
      TinyUt ut = make_ut(8, 2, o, 3);
      Tensor x = randn({2, 5, 8}, kFloat64);
      ActResult r = ut.act->forward(x, nn::transformer_act_step(ut.block));
      Tensor h = x;
      for (int64_t t = 0; t < k; ++t) h = ut.block->forward(ut.act->add_signals(h, t));
      EXPECT_EQ(max_abs_diff(r.output, h), 0.0) << "k " << k;
      for (int64_t n : steps_of(r)) EXPECT_EQ(n, k);
      EXPECT_NEAR(r.ponder_cost.item<double>(), k + 1.0, 1e-15);  // N = k, R = 1
    }
  }
  // The same through the halting unit: bias -30 (p ~ 1e-13) and a forced halt at M = 3 agree to ~1e-12; bias
  // +30 halts everyone after one step (B3).
  ActOptions o;
  o.max_steps = 3;
  TinyUt ut = make_ut(8, 2, o, 3, 0.0, -30.0);
  Tensor x = randn({2, 5, 8}, kFloat64);
  Tensor h = x;
  for (int64_t t = 0; t < 3; ++t) h = ut.block->forward(ut.act->add_signals(h, t));
  EXPECT_LE(max_abs_diff(ut.act->forward(x, nn::transformer_act_step(ut.block)).output, h), 1e-11);
  {
    NoGradGuard no_grad;
    ut.act->halting->bias.fill_(30.0);
  }
  ActResult one = ut.act->forward(x, nn::transformer_act_step(ut.block));
  EXPECT_LE(max_abs_diff(one.output, ut.block->forward(ut.act->add_signals(x, 0))), 1e-12);
  for (int64_t n : steps_of(one)) EXPECT_EQ(n, 1);
}

TEST(Act, CompactEqualsDenseWithFrozenHaltedStates) {
  // The gather/step/scatter path (queries of running rows only) against every row every step, on a
  // Transformer step with padding and a causal mask, where positions halt at different steps.
  for (bool causal : {false, true}) {
    ActOptions o;
    o.max_steps = 6;
    TinyUt ut = make_ut(8, 2, o, 5, 3.0, 0.0);
    Tensor x = randn({3, 7, 8}, kFloat64);
    Tensor pad = zeros({3, 7}, kBool);
    pad.select(0, 1).narrow(0, 5, 2).fill_(1.0);
    Tensor c = randn({3, 7, 8}, kFloat64);
    auto run = [&](bool compact) {
      ActOptions oo = ut.act->options().act;
      oo.compact = compact;
      oo.freeze_halted_state = true;
      nn::AdaptiveComputationTimeOptions ao = ut.act->options();
      ao.act = oo;
      nn::AdaptiveComputationTime act(ao, kFloat64);
      act.load_state_dict(
          {{"halting.weight", ut.act->halting->weight}, {"halting.bias", ut.act->halting->bias}});
      ut.block->zero_grad();
      ActResult r = act.forward(x, nn::transformer_act_step(ut.block, pad, causal), pad);
      (sum(r.output * c) + r.ponder_cost).backward();
      std::vector<Tensor> grads = {act.halting->weight.grad()};
      for (const Tensor& p : ut.block->parameters()) grads.push_back(p.grad());
      return std::pair{r, grads};
    };
    auto [dense, dense_grads] = run(false);
    auto [compact, compact_grads] = run(true);
    std::vector<int64_t> n = steps_of(dense);
    EXPECT_EQ(steps_of(compact), n);
    EXPECT_GT(*std::max_element(n.begin(), n.end()), 1 + *std::min_element(n.begin(), n.end()))
        << "halting must vary for this test to mean anything";
    EXPECT_LE(max_abs_diff(compact.output, dense.output), 1e-12);
    EXPECT_LE(max_abs_diff(compact.ponder_times, dense.ponder_times), 1e-12);
    for (size_t i = 0; i < dense_grads.size(); ++i)
      EXPECT_LE(max_abs_diff(compact_grads[i], dense_grads[i]), 1e-11) << i;
    // Padding: never computed, never weighted, not in the cost.
    EXPECT_EQ(n[1 * 7 + 5], 0);
    EXPECT_EQ(n[1 * 7 + 6], 0);
    EXPECT_EQ(max_abs_diff(compact.output.select(0, 1).narrow(0, 5, 2), zeros({2, 8}, kFloat64)), 0.0);
  }
}

TEST(Act, GradcheckOfPonderCostAndWeightedOutputThroughATransformerStep) {
  // C1: d = 8, 2 heads, L = 5, B = 3, M = 4, float64. The halting unit, the block's first MLP weight and the
  // input all get finite-difference checked; halting varies over positions (checked), and no cumulative
  // probability sits near the threshold (a discontinuity would make gradcheck fail).
  for (bool compact : {true, false}) {
    ActOptions o;
    o.max_steps = 4;
    o.compact = compact;
    TinyUt ut = make_ut(8, 2, o, 11, 2.0, 0.0);
    Tensor x = randn({3, 5, 8}, kFloat64).requires_grad_();
    Tensor c = randn({3, 5, 8}, kFloat64);
    ActResult probe = ut.act->forward(x, nn::transformer_act_step(ut.block));
    std::vector<int64_t> n = steps_of(probe);
    ASSERT_GT(*std::max_element(n.begin(), n.end()), *std::min_element(n.begin(), n.end()));
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) {
          ActResult r = ut.act->forward(in[0], nn::transformer_act_step(ut.block));
          return std::vector<Tensor>{r.ponder_cost, sum(r.output * c)};
        },
        {x, ut.act->halting->weight, ut.act->halting->bias, ut.block->fc1->weight}));
    // The step counts did not move under the perturbations gradcheck made.
    EXPECT_EQ(steps_of(ut.act->forward(x, nn::transformer_act_step(ut.block))), n);
  }
}

TEST(Act, PaddingInvariance) {
  // D1: appending padding changes neither the real positions' outputs, N, R nor the ponder cost.
  for (bool t2t : {false, true}) {
    ActOptions o = t2t ? ActOptions::t2t(6, 0.01) : ActOptions{};
    o.max_steps = 6;
    TinyUt ut = make_ut(8, 2, o, 7, 3.0, 0.0);
    Tensor x = randn({1, 5, 8}, kFloat64);
    ActResult alone = ut.act->forward(x, nn::transformer_act_step(ut.block));
    Tensor padded = cat({x, randn({1, 3, 8}, kFloat64)}, 1);
    Tensor pad = cat({zeros({1, 5}, kBool), ones({1, 3}, kBool)}, 1);
    ActResult r = ut.act->forward(padded, nn::transformer_act_step(ut.block, pad), pad);
    EXPECT_LE(max_abs_diff(r.output.narrow(1, 0, 5), alone.output), 1e-12);
    EXPECT_EQ(r.steps.narrow(1, 0, 5).contiguous().to_vector<int64_t>(), steps_of(alone));
    EXPECT_LE(max_abs_diff(r.remainders.narrow(1, 0, 5), alone.remainders), 1e-12);
    EXPECT_NEAR(r.ponder_cost.item<double>(), alone.ponder_cost.item<double>(), 1e-12);
  }
}

TEST(Act, BatchInvariance) {
  // D2: a sequence gives the same results alone and next to a sequence that ponders to the cap.
  for (bool t2t : {false, true}) {
    ActOptions o = t2t ? ActOptions::t2t(8, 0.01) : ActOptions{};
    o.max_steps = 8;
    TinyUt ut = make_ut(8, 2, o, 9, 1.0, 1.0);
    nn::AdaptiveComputationTime& act = *ut.act;
    // Batch element 1 halts slowly (p = 0.02); element 0 uses the halting unit, squashed.
    ActHaltingFn halt = [&act](const Tensor& h, const Tensor& rows, int64_t) {
      // In (0.3, 0.7): two to four steps, still a function of the state.
      Tensor p = sigmoid(act.halting->forward(h).view({h.size(0)})) * 0.4 + 0.3;
      Tensor slow = ge(rows, 5);
      return where(slow, full({h.size(0)}, 0.02, kFloat64), p);
    };
    auto pre = [&act](const Tensor& s, int64_t t) { return act.add_signals(s, t); };
    Tensor a = randn({1, 5, 8}, kFloat64);
    ActResult alone =
        adaptive_computation_time(a, nn::transformer_act_step(ut.block), halt, o, Tensor(), pre);
    ActResult both = adaptive_computation_time(cat({a, randn({1, 5, 8}, kFloat64)}, 0),
                                               nn::transformer_act_step(ut.block), halt, o, Tensor(), pre);
    EXPECT_EQ(both.iterations, 8);
    EXPECT_LT(alone.iterations, 8) << "t2t " << t2t << ": " << alone.steps;
    EXPECT_LE(max_abs_diff(both.output.narrow(0, 0, 1), alone.output), 1e-12);
    EXPECT_EQ(both.steps.narrow(0, 0, 1).contiguous().to_vector<int64_t>(), steps_of(alone));
    EXPECT_LE(max_abs_diff(both.remainders.narrow(0, 0, 1), alone.remainders), 1e-12);
  }
}

TEST(Act, CompactCostFollowsThePonderTime) {
  // Rows handed to the step: the sum of N over real positions in compact mode, iterations x B x L in dense
  // mode.
  for (bool compact : {true, false}) {
    ActOptions o;
    o.max_steps = 8;
    o.compact = compact;
    int64_t rows_computed = 0;
    auto step = [&](const Tensor& x, const Tensor& rows, int64_t) {
      rows_computed += rows.numel();
      return index_select(x.reshape({-1, 4}), 0, rows) * 0.5;
    };
    manual_seed(13);
    Tensor P = rand({8, 24}, kFloat64) * 0.6;
    Tensor pad = zeros({2, 12}, kBool);
    pad.select(0, 0).narrow(0, 9, 3).fill_(1.0);
    ActResult r = adaptive_computation_time(randn({2, 12, 4}, kFloat64), step, injected(P), o, pad);
    int64_t total = 0;
    for (int64_t n : steps_of(r)) total += n;
    EXPECT_EQ(rows_computed, compact ? total : r.iterations * 24);
    EXPECT_LT(total, r.iterations * 21);
  }
}

TEST(Act, GlobalHaltingDecidesPerSequence) {
  ActOptions o;
  o.max_steps = 6;
  o.global_halting = true;
  manual_seed(17);
  Tensor P = rand({6, 8}, kFloat64);
  Tensor pad = zeros({2, 4}, kBool);
  pad.select(0, 1).narrow(0, 3, 1).fill_(1.0);
  ActResult r = adaptive_computation_time(zeros({2, 4, 6}, kFloat64), one_hot_step(6), injected(P), o, pad);
  std::vector<int64_t> n = steps_of(r);
  for (int i = 1; i < 4; ++i) EXPECT_EQ(n[i], n[0]);
  for (int i = 5; i < 7; ++i) EXPECT_EQ(n[i], n[4]);
  EXPECT_EQ(n[7], 0);  // padding
  // Step 1's weight is the mean of the sequence's real probabilities.
  std::vector<double> p0 = P.select(0, 0).to_vector<double>();
  double mean1 = (p0[4] + p0[5] + p0[6]) / 3;
  ASSERT_GT(n[4], 1);
  EXPECT_NEAR(r.output.select(0, 1).select(0, 0).select(0, 0).item<double>(), mean1, 1e-15);
}

TEST(Act, RandomHaltingRunsWithinTheCap) {
  nn::AdaptiveComputationTimeOptions ao;
  ao.d_model = 4;
  ao.act.max_steps = 5;
  ao.random_halting = true;
  nn::AdaptiveComputationTime act(ao, kFloat64);
  manual_seed(1);
  ActResult r =
      act.forward(randn({2, 6, 4}, kFloat64), act_positionwise([](const Tensor& x, int64_t) { return x; }));
  for (int64_t n : steps_of(r)) {
    EXPECT_GE(n, 1);
    EXPECT_LE(n, 5);
  }
}

TEST(Act, TimingSignalMatchesTensor2Tensor) {
  // get_timing_signal_1d(3, 6): inv_ts = exp(-k ln(1e4) / 2), k = 0..2; [sin | cos].
  Tensor s = timing_signal_1d(3, 6, kFloat64);
  for (int64_t pos = 0; pos < 3; ++pos)
    for (int64_t k = 0; k < 3; ++k) {
      double a = pos * std::exp(-k * std::log(1e4) / 2);
      EXPECT_NEAR(s.select(0, pos).select(0, k).item<double>(), std::sin(a), 1e-15);
      EXPECT_NEAR(s.select(0, pos).select(0, 3 + k).item<double>(), std::cos(a), 1e-15);
    }
  EXPECT_EQ(timing_signal_1d(2, 5).select(1, 4).abs().sum().item<float>(), 0.0f);  // odd: one zero channel
}

TEST(Act, ErrorsNameTheProblem) {
  Tensor x = zeros({1, 3, 4}, kFloat64);
  auto halt = [](const Tensor&, const Tensor&, int64_t) { return zeros({2}, kFloat64); };
  std::string msg = error_of([&] { adaptive_computation_time(x, one_hot_step(4), halt); });
  EXPECT_NE(msg.find("the halting function must return 3 probabilities"), std::string::npos) << msg;
  auto bad_step = [](const Tensor&, const Tensor&, int64_t) { return zeros({2, 4}, kFloat64); };
  auto ok_halt = [](const Tensor& h, const Tensor&, int64_t) { return zeros({h.size(0)}, kFloat64); };
  msg = error_of([&] { adaptive_computation_time(x, bad_step, ok_halt); });
  EXPECT_NE(msg.find("the step function must return [3, 4]"), std::string::npos) << msg;
  msg = error_of([&] {
    adaptive_computation_time(x, one_hot_step(4), ok_halt, {}, zeros({1, 3}, kFloat64));
  });
  EXPECT_NE(msg.find("padding_mask must be bool [1, 3]"), std::string::npos) << msg;
  msg = error_of([&] { adaptive_computation_time(zeros({3, 4}), one_hot_step(4), ok_halt); });
  EXPECT_NE(msg.find("x must be a floating [B, L, d] tensor"), std::string::npos) << msg;
}

TEST(Act, ComposesWithCheckpointAndLshAttention) {
  // A step built on the LSH attention op (random rotations drawn from the default generator at every step)
  // and wrapped in checkpoint(): the rerun in backward rewinds to each step's Philox state, so the rotations,
  // hence the buckets, are the forward's and the gradients equal the unwrapped loop's.
  manual_seed(23);
  const int64_t B = 2, L = 8, d = 8;
  TensorOptions o{kFloat64};
  std::vector<Tensor> w = {randn({d, d}, o) * 0.5, randn({d, d}, o) * 0.5, randn({d, d}, o) * 0.5,
                           randn({1, d}, o), randn({1}, o)};
  for (Tensor& t : w) t = t.detach().requires_grad_();
  Tensor x0 = randn({B, L, d}, o);
  auto lsh_step = [&w](const Tensor& x, const Tensor& rows, int64_t) {
    auto heads = [&](const Tensor& t) { return t.view({B, L, 2, 4}).permute({0, 2, 1, 3}); };
    LshAttentionOptions lo;
    lo.chunk_len = 4;
    lo.n_buckets = {4};
    Tensor a = lsh_attention(heads(linear(x, w[0])), heads(linear(x, w[1])), lo).out;
    Tensor y = x + linear(a.permute({0, 2, 1, 3}).reshape({B, L, d}), w[2]);
    return index_select(y.reshape({B * L, d}), 0, rows);
  };
  auto halt = [&w](const Tensor& h, const Tensor&, int64_t) {
    return sigmoid(linear(h, w[3], w[4]).view({h.size(0)}));
  };
  auto run = [&](bool wrapped) {
    for (Tensor& t : w) t.set_grad(Tensor());
    Tensor x = x0.clone().requires_grad_();
    ActStepFn step = lsh_step;
    if (wrapped)
      step = [&lsh_step](const Tensor& in, const Tensor& rows, int64_t t) {
        // By value: the checkpoint entry reruns this after the step has returned.
        auto fn = [&lsh_step, rows, t](const std::vector<Tensor>& v) {
          return std::vector<Tensor>{lsh_step(v[0], rows, t)};
        };
        return checkpoint(fn, {in})[0];
      };
    ActOptions ao;
    ao.max_steps = 5;
    manual_seed(29);
    ActResult r = adaptive_computation_time(x, step, halt, ao);
    (void)rand({3});
    (sum(r.output * r.output) + r.ponder_cost).backward();
    std::vector<Tensor> g = {x.grad()};
    for (const Tensor& t : w) g.push_back(t.grad());
    return std::pair{r, g};
  };
  auto [plain, plain_grads] = run(false);
  auto [ckpt, ckpt_grads] = run(true);
  EXPECT_EQ(steps_of(ckpt), steps_of(plain));
  EXPECT_EQ(max_abs_diff(ckpt.output, plain.output), 0.0);
  for (size_t i = 0; i < plain_grads.size(); ++i) {
    ASSERT_TRUE(ckpt_grads[i].defined() && plain_grads[i].defined()) << i;
    EXPECT_LE(max_abs_diff(ckpt_grads[i], plain_grads[i]), 1e-12) << i;
  }
}

namespace {

// act_frozen_projection's inputs made from v [h, d] as the Universal Transformer makes them, next to the
// reference it must equal: LN(v + s) W^T + b placed at the frozen rows, running rows copied.
struct FrozenCase {
  Tensor v, s, gamma, beta, W, b, running;
  std::vector<int64_t> running_rows, frozen_rows;
  double eps = 1e-6;

  Tensor reference() const {
    const int64_t N = static_cast<int64_t>(running_rows.size() + frozen_rows.size());
    Tensor kv = linear(layer_norm(v + s, {v.size(1)}, gamma, beta, eps), W, b);
    Tensor both = cat({running, kv}, 0);
    std::vector<int64_t> order(static_cast<size_t>(N));
    for (size_t j = 0; j < running_rows.size(); ++j)
      order[static_cast<size_t>(running_rows[j])] = static_cast<int64_t>(j);
    for (size_t j = 0; j < frozen_rows.size(); ++j)
      order[static_cast<size_t>(frozen_rows[j])] = static_cast<int64_t>(running_rows.size() + j);
    return index_select(both, 0, tensor(order, {N}));
  }
  Tensor decomposed() const {
    const int64_t d = v.size(1), C = W.size(0);
    Tensor centred = v - mean(v, {1}, true);
    ActFrozenRows frozen{tensor(frozen_rows, {static_cast<int64_t>(frozen_rows.size())}),
                         linear(centred * gamma, W), centred, sum(centred * centred, {1})};
    Tensor sc = s - mean(s);
    ActStepSignalTerms signal{sc, linear((sc * gamma).view({1, d}), W).view({C}),
                              linear(beta.view({1, d}), W, b).view({C})};
    return act_frozen_projection(running, tensor(running_rows, {static_cast<int64_t>(running_rows.size())}),
                                 frozen, signal, eps);
  }
  std::vector<Tensor> leaves() const { return {v, s, gamma, beta, W, b, running}; }
};

FrozenCase frozen_case(DType dtype, uint64_t seed) {
  manual_seed(seed);
  const int64_t h = 5, d = 6, C = 4;
  FrozenCase f;
  f.v = (randn({h, d}, dtype) * 2.0 + 0.5).requires_grad_();
  f.s = randn({d}, dtype).requires_grad_();
  f.gamma = (randn({d}, dtype) * 0.3 + 1.0).requires_grad_();
  f.beta = randn({d}, dtype).requires_grad_();
  f.W = randn({C, d}, dtype).requires_grad_();
  f.b = randn({C}, dtype).requires_grad_();
  f.running = randn({3, C}, dtype).requires_grad_();
  f.running_rows = {2, 5, 6};
  f.frozen_rows = {7, 0, 1, 4, 3};
  return f;
}

}  // namespace

TEST(Act, FrozenProjectionEqualsTheLayerNormProjection) {
  // The decomposition through act_frozen_projection against LN(v + s) W^T + b computed directly: values and
  // the gradients of every leaf (v, s, the layer norm's and the projection's parameters, the running rows),
  // float64 to 1e-12 and float32 to 1e-5.
  for (DType dtype : {kFloat64, kFloat32}) {
    SCOPED_TRACE(dtype_name(dtype));
    const double tol = dtype == kFloat64 ? 1e-12 : 1e-5;
    FrozenCase f = frozen_case(dtype, 3);
    Tensor probe = randn({8, 4}, dtype);
    Tensor want = f.reference();
    sum(want * probe).backward();
    std::vector<Tensor> want_grads;
    for (Tensor& t : f.leaves()) {
      want_grads.push_back(t.grad().clone());
      t.set_grad(Tensor());
    }
    Tensor got = f.decomposed();
    EXPECT_LE(max_abs_diff(got, want), tol);
    sum(got * probe).backward();
    const char* names[] = {"v", "s", "gamma", "beta", "W", "b", "running"};
    for (size_t i = 0; i < want_grads.size(); ++i)
      EXPECT_LE(max_abs_diff(f.leaves()[i].grad(), want_grads[i]), tol * 10) << names[i];
  }
}

TEST(Act, FrozenProjectionCpuKernelEqualsComposedDefault) {
  // The CPU's fused kernels against the backend's default (composed of ops, what CUDA runs), forward and
  // backward, on rows enough for several threads and backward chunks.
  for (DType dtype : {kFloat64, kFloat32}) {
    SCOPED_TRACE(dtype_name(dtype));
    manual_seed(9);
    const int64_t n = 150, h = 300, d = 32, C = 48;
    std::vector<int64_t> perm(static_cast<size_t>(n + h));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), std::mt19937(7));
    Backend::ActFrozenProjection a{tensor(std::vector<int64_t>(perm.begin(), perm.begin() + n), {n}),
                                   tensor(std::vector<int64_t>(perm.begin() + n, perm.end()), {h}),
                                   randn({h, C}, dtype),
                                   randn({h, d}, dtype),
                                   Tensor(),
                                   randn({d}, dtype),
                                   randn({C}, dtype),
                                   randn({C}, dtype),
                                   1e-6};
    a.squared_norm = sum(a.centred * a.centred, {1});
    Tensor running = randn({n, C}, dtype), grad = randn({n + h, C}, dtype);
    auto run = [&](bool fused) {
      Tensor out = Tensor::empty({n + h, C}, dtype), inv = Tensor::empty({h}, dtype);
      Backend::ActFrozenProjectionGrads g{Tensor::empty({n, C}, dtype), Tensor::empty({h, C}, dtype),
                                          Tensor::empty({h, d}, dtype), Tensor::empty({h}, dtype),
                                          Tensor::empty({d}, dtype),    Tensor::empty({C}, dtype),
                                          Tensor::empty({C}, dtype)};
      Backend& cpu = cpu_backend();
      if (fused) {
        cpu.act_frozen_projection(running, a, out, inv);
        cpu.act_frozen_projection_backward(grad, a, inv, g);
      } else {
        cpu.Backend::act_frozen_projection(running, a, out, inv);
        cpu.Backend::act_frozen_projection_backward(grad, a, inv, g);
      }
      return std::vector<Tensor>{out,
                                 inv,
                                 g.running,
                                 g.projected,
                                 g.centred,
                                 g.squared_norm,
                                 g.signal_centred,
                                 g.signal_projected,
                                 g.shift};
    };
    std::vector<Tensor> fused = run(true), composed = run(false);
    const double tol = dtype == kFloat64 ? 1e-12 : 2e-4;
    for (size_t i = 0; i < fused.size(); ++i)
      EXPECT_LE(max_abs_diff(fused[i], composed[i]), tol) << "output " << i;
  }
}

TEST(Act, FrozenProjectionGradcheck) {
  FrozenCase f = frozen_case(kFloat64, 4);
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>&) { return f.decomposed(); }, f.leaves()));
}

TEST(Act, FrozenProjectionErrors) {
  FrozenCase f = frozen_case(kFloat64, 5);
  Tensor centred = f.v.detach();
  ActFrozenRows frozen{tensor(std::vector<int64_t>{0, 1, 3, 4, 7}, {5}), randn({5, 4}, kFloat64), centred,
                       sum(centred * centred, {1})};
  ActStepSignalTerms signal{randn({6}, kFloat64), randn({4}, kFloat64), randn({4}, kFloat64)};
  Tensor running = randn({3, 4}, kFloat64);
  test::expect_error(
      [&] {
        act_frozen_projection(running, tensor(std::vector<int64_t>{2, 5, 5}, {3}), frozen, signal, 1e-6);
      },
      "running_rows and frozen.rows must split [0, 8) between them; row 5 appears twice");
  test::expect_error(
      [&] {
        act_frozen_projection(running, tensor(std::vector<int64_t>{2, 5, 8}, {3}), frozen, signal, 1e-6);
      },
      "row 8 is out of range");
  ActStepSignalTerms narrow = signal;
  narrow.projected = randn({3}, kFloat64);
  test::expect_error(
      [&] {
        act_frozen_projection(running, tensor(std::vector<int64_t>{2, 5, 6}, {3}), frozen, narrow, 1e-6);
      },
      "act_frozen_projection: signal.projected must be float64 [4] on cpu");
  test::expect_error(
      [&] {
        act_frozen_projection(running.to(kFloat32), tensor(std::vector<int64_t>{2, 5, 6}, {3}), frozen,
                              signal, 1e-6);
      },
      "frozen.projected must be float32 [5, 4]");
}
