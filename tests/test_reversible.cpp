// Reversible residual stacks (autograd/reversible.h, nn/reversible.h): equality with an explicit two-stream
// network on the ordinary tape (outputs, input grads, every parameter grad) with dropout on, a negative
// control that redraws the randomness in the recompute, reconstruction drift over depth, activation memory
// flat in depth, and composition with checkpoint() and the LSH attention op (shared/research/reformer.md
// section 4, tests 10-12 and 16).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "loom/autograd/reversible.h"
#include "loom/loom.h"
#include "loom/nn/reversible.h"
#include "support/expect.h"

using namespace loom;
using test::error_of;

namespace {

// max |a - b| / max |b|: one relative figure per tensor.
double rel_err(const Tensor& a, const Tensor& b) {
  EXPECT_TRUE(a.defined() && b.defined());
  if (!a.defined() || !b.defined()) return INFINITY;
  double scale = amax(abs(b.to(kFloat64))).item<double>();
  double diff = amax(abs(a.to(kFloat64) - b.to(kFloat64))).item<double>();
  return diff / std::max(scale, 1e-300);
}

// A position-wise residual branch: LayerNorm -> Linear -> GELU -> Dropout -> Linear -> Dropout.
std::shared_ptr<nn::Module> branch(int64_t d, int64_t hidden, double p, DType dtype) {
  TensorOptions o{dtype};
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::LayerNorm>(d, 1e-5, true, o), std::make_shared<nn::Linear>(d, hidden, true, o),
      std::make_shared<nn::GELU>(), std::make_shared<nn::Dropout>(p),
      std::make_shared<nn::Linear>(hidden, d, true, o), std::make_shared<nn::Dropout>(p)});
}

std::shared_ptr<nn::ReversibleSequence> make_stack(int64_t blocks, int64_t d, int64_t hidden, double p,
                                                   DType dtype) {
  auto stack = std::make_shared<nn::ReversibleSequence>();
  for (int64_t i = 0; i < blocks; ++i)
    stack->push_back(branch(d, hidden, p, dtype), branch(d, hidden, p, dtype));
  return stack;
}

// The same stack on the ordinary tape: every activation kept.
ReversibleOutput explicit_two_stream(nn::ReversibleSequence& stack, const Tensor& x1, const Tensor& x2) {
  Tensor a = x1, b = x2;
  for (size_t l = 0; l < stack.size(); ++l) {
    a = a + stack[l]->f->forward(b);
    b = b + stack[l]->g->forward(a);
  }
  return {a, b};
}

struct StepResult {
  Tensor y1, y2, dx1, dx2;
  std::vector<Tensor> param_grads;
};

// One forward + backward of loss = sum(y1 * c1) + sum(y2 * c2), from generator seed 11.
StepResult run_step(nn::ReversibleSequence& stack, const Tensor& x1_data, const Tensor& x2_data,
                    const Tensor& c1, const Tensor& c2, bool reversible) {
  stack.zero_grad();
  Tensor x1 = x1_data.clone().requires_grad_(), x2 = x2_data.clone().requires_grad_();
  manual_seed(11);
  ReversibleOutput y = reversible ? stack.forward(x1, x2) : explicit_two_stream(stack, x1, x2);
  (void)rand({37});  // move the generator: the recompute must rewind to the forward's states regardless
  Tensor loss = sum(y.y1 * c1) + sum(y.y2 * c2);
  // Dropped before backward, as a training step does: the reversible entry then rebuilds the inputs in its
  // saved outputs' buffers (GradientsDoNotDependOnWhetherBackwardMayReuseItsBuffers covers the other path).
  StepResult r{y.y1.clone(), y.y2.clone(), Tensor(), Tensor(), {}};
  y = ReversibleOutput();
  loss.backward();
  r.dx1 = x1.grad(), r.dx2 = x2.grad();
  for (const Tensor& p : stack.parameters()) r.param_grads.push_back(p.grad());
  return r;
}

// Worst relative error over outputs, input grads and parameter grads.
double worst_mismatch(const StepResult& got, const StepResult& want) {
  double worst = std::max({rel_err(got.y1, want.y1), rel_err(got.y2, want.y2), rel_err(got.dx1, want.dx1),
                           rel_err(got.dx2, want.dx2)});
  EXPECT_EQ(got.param_grads.size(), want.param_grads.size());
  for (size_t i = 0; i < got.param_grads.size() && i < want.param_grads.size(); ++i)
    worst = std::max(worst, rel_err(got.param_grads[i], want.param_grads[i]));
  return worst;
}

void check_equals_explicit(DType dtype, double tol) {
  for (int64_t depth : {1, 4, 12}) {
    manual_seed(1);
    const int64_t d = 16;
    auto stack = make_stack(depth, d, 32, 0.2, dtype);
    Tensor x1 = randn({2, 5, d}, dtype), x2 = randn({2, 5, d}, dtype);
    Tensor c1 = randn({2, 5, d}, dtype), c2 = randn({2, 5, d}, dtype);
    StepResult want = run_step(*stack, x1, x2, c1, c2, false);
    StepResult got = run_step(*stack, x1, x2, c1, c2, true);
    double err = worst_mismatch(got, want);
    std::printf("[reversible vs explicit] %s depth %2lld: worst relative error %.3g\n", dtype_name(dtype),
                static_cast<long long>(depth), err);
    EXPECT_LE(err, tol) << "depth " << depth;
    // Forward outputs come from the same ops in the same order: identical.
    EXPECT_TRUE(allclose(got.y1, want.y1, 0, 0));
    EXPECT_TRUE(allclose(got.y2, want.y2, 0, 0));
  }
}

}  // namespace

TEST(Reversible, EqualsTheExplicitTwoStreamNetworkFloat64WithDropout) {
  check_equals_explicit(kFloat64, 1e-12);
}

TEST(Reversible, EqualsTheExplicitTwoStreamNetworkFloat32WithDropout) {
  check_equals_explicit(kFloat32, 1e-6);
}

TEST(Reversible, NegativeControlRedrawnDropoutInTheRecomputeIsDetected) {
  // F draws its dropout masks from a private stream that moves on every call, so the recompute in backward
  // sees a different mask than the forward did. The forward still matches; the gradients must not.
  manual_seed(1);
  const int64_t d = 16;
  auto stack = make_stack(4, d, 32, 0.0, kFloat64);
  auto stream = std::make_shared<Generator>(99);
  for (size_t l = 0; l < stack->size(); ++l) {
    auto inner = (*stack)[l]->f;
    auto redraw = std::make_shared<nn::Functional>([inner, stream](const Tensor& x) {
      Tensor h = inner->forward(x);
      return dropout(h, 0.2, stream->next(static_cast<uint64_t>(h.numel()) + 1));
    });
    (*stack)[l]->f = redraw;  // the forward below reads pair->f; parameters stay registered under the old one
  }
  Tensor x1 = randn({2, 5, d}, kFloat64), x2 = randn({2, 5, d}, kFloat64);
  Tensor c1 = randn({2, 5, d}, kFloat64), c2 = randn({2, 5, d}, kFloat64);
  stream->manual_seed(99);
  StepResult want = run_step(*stack, x1, x2, c1, c2, false);
  stream->manual_seed(99);
  StepResult got = run_step(*stack, x1, x2, c1, c2, true);
  EXPECT_TRUE(allclose(got.y1, want.y1, 0, 0));  // same first draw
  double err = worst_mismatch(got, want);
  std::printf("[negative control] redrawn dropout in the recompute: worst relative error %.3g\n", err);
  EXPECT_GT(err, 1e-2);
}

TEST(Reversible, DropoutReplayReproducesTheOutputsAndFreshStatesDiffer) {
  // HF's create_and_check_reformer_layer_dropout_seed: rerunning with the recorded states gives y again.
  manual_seed(3);
  auto stack = make_stack(3, 8, 16, 0.5, kFloat64);
  Tensor x1 = randn({4, 8}, kFloat64), x2 = randn({4, 8}, kFloat64);
  std::vector<ReversibleBlock> blocks;
  for (size_t l = 0; l < stack->size(); ++l)
    blocks.push_back({[m = (*stack)[l]->f](const Tensor& x) { return m->forward(x); },
                      [m = (*stack)[l]->g](const Tensor& x) { return m->forward(x); }});
  ReversibleTrace trace;
  ReversibleOutput a = reversible_sequence(blocks, x1, x2, {}, &trace);
  ASSERT_EQ(trace.f_rng.size(), 3u);
  default_generator().set_state(trace.f_rng[0]);
  ReversibleOutput replay = reversible_sequence(blocks, x1, x2);
  EXPECT_TRUE(allclose(replay.y1, a.y1, 0, 0));
  EXPECT_TRUE(allclose(replay.y2, a.y2, 0, 0));
  ReversibleOutput fresh = reversible_sequence(blocks, x1, x2);  // the generator has moved on
  EXPECT_FALSE(allclose(fresh.y1, a.y1, 1e-6, 1e-6));
  // Distinct states per branch: no two F/G branches share masks.
  for (size_t i = 0; i < 3; ++i) EXPECT_NE(trace.f_rng[i].offset, trace.g_rng[i].offset);
}

TEST(Reversible, GradientsDoNotDependOnWhetherBackwardMayReuseItsBuffers) {
  // The entry's backward turns its saved outputs and incoming gradients into the inputs and their gradients
  // in place when the pass frees the graph and nothing else holds them; when the caller still holds an
  // output, or under retain_graph, it allocates instead. All paths must give the same gradients bit for bit,
  // and a retained graph must replay.
  manual_seed(3);
  const int64_t d = 16;
  auto stack = make_stack(4, d, 32, 0.2, kFloat64);
  Tensor x1d = randn({2, 5, d}, kFloat64), x2d = randn({2, 5, d}, kFloat64);
  Tensor c1 = randn({2, 5, d}, kFloat64), c2 = randn({2, 5, d}, kFloat64);
  enum class Mode { kDropped, kHeld, kRetainedThenReplayed };
  auto grads_of = [&](Mode mode) {
    stack->zero_grad();
    Tensor x1 = x1d.clone().requires_grad_(), x2 = x2d.clone().requires_grad_();
    manual_seed(11);
    ReversibleOutput y = stack->forward(x1, x2);
    Tensor loss = sum(y.y1 * c1) + sum(y.y2 * c2);
    if (mode != Mode::kHeld) y = ReversibleOutput();
    if (mode == Mode::kRetainedThenReplayed) {
      loss.backward(Tensor(), /*retain_graph=*/true);
      stack->zero_grad();
      x1.set_grad(Tensor()), x2.set_grad(Tensor());
    }
    loss.backward();
    std::vector<Tensor> out{x1.grad(), x2.grad()};
    for (const Tensor& p : stack->parameters()) out.push_back(p.grad());
    if (mode == Mode::kHeld) {  // the outputs the caller held are untouched by the backward
      manual_seed(11);
      ReversibleOutput again = stack->forward(x1d, x2d);
      EXPECT_TRUE(allclose(y.y1, again.y1, 0, 0));
      EXPECT_TRUE(allclose(y.y2, again.y2, 0, 0));
    }
    return out;
  };
  std::vector<Tensor> dropped = grads_of(Mode::kDropped), held = grads_of(Mode::kHeld),
                      replayed = grads_of(Mode::kRetainedThenReplayed);
  ASSERT_EQ(dropped.size(), held.size());
  ASSERT_EQ(dropped.size(), replayed.size());
  for (size_t i = 0; i < dropped.size(); ++i) {
    EXPECT_TRUE(allclose(held[i], dropped[i], 0, 0)) << "gradient " << i;
    EXPECT_TRUE(allclose(replayed[i], dropped[i], 0, 0)) << "gradient " << i;
  }
}

TEST(Reversible, ParametersGetGradientsWhenTheInputsDoNotRequireGrad) {
  // lucidrains/reformer-pytorch#29: with a plain input nothing was trained.
  manual_seed(5);
  auto stack = make_stack(2, 8, 16, 0.1, kFloat64);
  Tensor x = randn({3, 8}, kFloat64);  // needs no grad; both streams start from it (Reformer)
  Tensor y = stack->forward(x);
  EXPECT_EQ(y.size(-1), 16);
  sum(y * y).backward();
  for (const auto& [name, p] : stack->named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_GT(amax(abs(p.grad())).item<double>(), 0.0) << name;
  }
  EXPECT_EQ(stack->named_parameters().front().first, "0.f.0.weight");
}

TEST(Reversible, OneInputForBothStreamsGetsTheSumOfBothGradients) {
  manual_seed(6);
  auto stack = make_stack(3, 8, 16, 0.3, kFloat64);
  Tensor x0 = randn({3, 8}, kFloat64);
  Tensor xa = x0.clone().requires_grad_();
  manual_seed(8);
  ReversibleOutput e = explicit_two_stream(*stack, xa, xa);
  sum(e.y1 * e.y2).backward();
  stack->zero_grad();
  Tensor xb = x0.clone().requires_grad_();
  manual_seed(8);
  ReversibleOutput r = stack->forward(xb, xb);
  sum(r.y1 * r.y2).backward();
  EXPECT_LE(rel_err(xb.grad(), xa.grad()), 1e-12);
}

TEST(Reversible, ReconstructionErrorOverDepth) {
  // x2 = y2 - G(y1), x1 = y1 - F(x2) rebuilds the inputs only up to rounding, and the error compounds with
  // depth.
  for (DType dtype : {kFloat64, kFloat32}) {
    for (int64_t depth : {1, 4, 12, 24, 48}) {
      manual_seed(21);
      auto stack = make_stack(depth, 32, 64, 0.1, dtype);
      Tensor x1 = randn({4, 16, 32}, dtype), x2 = randn({4, 16, 32}, dtype);
      std::vector<ReversibleBlock> blocks;
      for (size_t l = 0; l < stack->size(); ++l)
        blocks.push_back({[m = (*stack)[l]->f](const Tensor& x) { return m->forward(x); },
                          [m = (*stack)[l]->g](const Tensor& x) { return m->forward(x); }});
      ReversibleTrace trace;
      ReversibleOutput y;
      {
        NoGradGuard no_grad;
        y = reversible_sequence(blocks, x1, x2, {}, &trace);
      }
      ReversibleOutput x = reversible_inverse(blocks, y.y1, y.y2, trace);
      double err = std::max(rel_err(x.y1, x1), rel_err(x.y2, x2));
      std::printf("[reconstruction] %s depth %2lld: max |x_rec - x| / max |x| = %.3g\n", dtype_name(dtype),
                  static_cast<long long>(depth), err);
      EXPECT_LE(err, dtype == kFloat64 ? 1e-12 : 1e-4) << depth;
    }
  }
}

TEST(Reversible, TheEntryKeepsOnlyTheOutputsAndBackwardFreesEverything) {
  manual_seed(7);
  auto stack = make_stack(6, 64, 128, 0.1, kFloat32);
  Tensor x = randn({8, 64, 64});
  const int64_t out_bytes = 8 * 64 * 64 * 4;
  autograd::TapeGuard guard;
  int64_t before = memory_stats().current_bytes;
  ReversibleOutput y = stack->forward(x, x);
  EXPECT_EQ(guard.tape().recorded_entries(), 1);
  EXPECT_EQ(guard.tape().live_entries(), 1);
  // y1 and y2, nothing per block.
  EXPECT_LE(memory_stats().current_bytes - before, 2 * out_bytes + 4096);
  Tensor loss = sum(y.y1) + sum(y.y2);
  y = ReversibleOutput();
  loss.backward();
  EXPECT_EQ(guard.tape().live_entries(), 0);
  // Left over: the loss and the parameters' grads (the reruns' tapes are gone).
  int64_t param_bytes = 0;
  for (const Tensor& p : stack->parameters()) param_bytes += static_cast<int64_t>(p.nbytes());
  EXPECT_LE(memory_stats().current_bytes - before, param_bytes + 4096);
}

// d = 256, seq `len`, batch 1; F and G are LayerNorm + Linear + GELU + Linear. The parameters and their grad
// buffers (as a training loop that keeps them across steps has) are allocated before the peak is reset, so
// the peak is what the step itself adds: activations, which the reversible stack does not keep per block.
// Measured by `device`'s allocator.
void expect_flat_peak_memory(Device device, int64_t len) {
  const int64_t d = 256;
  auto peak_of = [&](int64_t depth, bool reversible) {
    manual_seed(1);
    auto stack = make_stack(depth, d, d, 0.0, kFloat32);
    stack->to(device);
    for (const Tensor& p : stack->parameters()) p.set_grad(zeros_like(p));
    Tensor x = randn({1, len, d}).to(device);
    Tensor c = randn({1, len, d}).to(device);
    reset_peak_memory(device);
    const int64_t base = memory_stats(device).current_bytes;
    {
      Tensor xr = x.detach().requires_grad_();
      ReversibleOutput y = reversible ? stack->forward(xr, xr) : explicit_two_stream(*stack, xr, xr);
      Tensor loss = sum((y.y1 + y.y2) * c);
      y = ReversibleOutput();
      loss.backward();
    }
    return memory_stats(device).peak_bytes - base;
  };
  int64_t rev[3], plain[3];
  const int64_t depths[3] = {2, 6, 12};
  for (int i = 0; i < 3; ++i) {
    rev[i] = peak_of(depths[i], true);
    plain[i] = peak_of(depths[i], false);
    std::printf("[peak memory, %s] depth %2lld: reversible %7.1f MiB, plain %7.1f MiB\n",
                device.str().c_str(), static_cast<long long>(depths[i]), rev[i] / 1048576.0,
                plain[i] / 1048576.0);
  }
  EXPECT_LE(static_cast<double>(rev[2]), 1.10 * static_cast<double>(rev[0]));
  // Backward holds the two streams and their two gradients (rebuilt in place, block after block) plus one
  // branch's rerun: 9 stream-sized tensors at the peak here (14 when each block's inputs and gradients were
  // fresh tensors beside the saved outputs and the engine's copies of the incoming gradients).
  const int64_t stream_bytes = len * d * 4;
  for (int i = 0; i < 3; ++i) EXPECT_LE(rev[i], 10 * stream_bytes) << "depth " << depths[i];
  EXPECT_GT(plain[1], plain[0]);
  EXPECT_GT(static_cast<double>(plain[2]), 3.0 * static_cast<double>(plain[0]));
  EXPECT_GT(plain[2], 4 * rev[2]);
}

TEST(Reversible, PeakTrainingMemoryIsFlatInDepthWhileThePlainStackGrows) {
  expect_flat_peak_memory(kCPU, 4096);
}

// A quarter of the CPU test's length: the property is about depth, and the emulated backend (every test run
// has one) took a minute at 4096 tokens, the longest suite of ctest.
TEST(Reversible, PeakTrainingMemoryIsFlatInDepthOnCuda) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device (no GPU visible, or Loom built without CUDA)";
  expect_flat_peak_memory(kCUDA, 1024);
}

TEST(Reversible, ComposesWithCheckpoint) {
  manual_seed(4);
  auto stack = make_stack(3, 8, 16, 0.25, kFloat64);
  Tensor x1 = randn({2, 3, 8}, kFloat64), x2 = randn({2, 3, 8}, kFloat64);
  Tensor c1 = randn({2, 3, 8}, kFloat64), c2 = randn({2, 3, 8}, kFloat64);
  StepResult want = run_step(*stack, x1, x2, c1, c2, false);

  // (a) the whole reversible stack inside checkpoint(): it runs unrecorded, then records inside the rerun.
  {
    stack->zero_grad();
    Tensor a = x1.clone().requires_grad_(), b = x2.clone().requires_grad_();
    manual_seed(11);
    std::vector<Tensor> y = checkpoint(
        [&](const std::vector<Tensor>& in) {
          ReversibleOutput o = stack->forward(in[0], in[1]);
          return std::vector<Tensor>{o.y1, o.y2};
        },
        {a, b});
    (void)rand({5});
    (sum(y[0] * c1) + sum(y[1] * c2)).backward();
    StepResult got{y[0].detach(), y[1].detach(), a.grad(), b.grad(), {}};
    for (const Tensor& p : stack->parameters()) got.param_grads.push_back(p.grad());
    EXPECT_LE(worst_mismatch(got, want), 1e-12);
  }
  // (b) checkpoint() inside every F: the reversible recompute reruns it with grad on, where it records and
  // rewinds the generator once more.
  {
    std::vector<ReversibleBlock> blocks;
    for (size_t l = 0; l < stack->size(); ++l)
      blocks.push_back({[m = (*stack)[l]->f](const Tensor& x) {
                          return checkpoint([m](const Tensor& t) { return m->forward(t); }, x);
                        },
                        [m = (*stack)[l]->g](const Tensor& x) { return m->forward(x); }});
    stack->zero_grad();
    Tensor a = x1.clone().requires_grad_(), b = x2.clone().requires_grad_();
    manual_seed(11);
    ReversibleOutput y = reversible_sequence(blocks, a, b, stack->parameters());
    (sum(y.y1 * c1) + sum(y.y2 * c2)).backward();
    StepResult got{y.y1.detach(), y.y2.detach(), a.grad(), b.grad(), {}};
    for (const Tensor& p : stack->parameters()) got.param_grads.push_back(p.grad());
    EXPECT_LE(worst_mismatch(got, want), 1e-12);
  }
}

namespace {

// F: LSH self-attention over the stream (2 heads of 4, shared QK), random rotations from the default
// generator (or, for the negative control, from a fresh seed on every call). G: a position-wise MLP.
struct LshBranch {
  Tensor wqk, wv, wo;
  std::shared_ptr<uint64_t> seed_counter;  // set: rotations redrawn from a new seed on every call
  Tensor operator()(const Tensor& x) const {
    const int64_t b = x.size(0), l = x.size(1);
    auto heads = [&](const Tensor& t) { return t.view({b, l, 2, 4}).permute({0, 2, 1, 3}); };
    LshAttentionOptions o;
    o.chunk_len = 4;
    o.n_hashes = 2;
    o.n_buckets = {4};
    if (seed_counter) {
      o.has_seed = true;
      o.seed = (*seed_counter)++;
    }
    Tensor out = lsh_attention(heads(linear(x, wqk)), heads(linear(x, wv)), o).out;
    return linear(out.permute({0, 2, 1, 3}).reshape({b, l, 8}), wo);
  }
};

}  // namespace

TEST(Reversible, ComposesWithLshAttentionAndDetectsRedrawnRotations) {
  // reformer.md tests 10 and 11: with LSH in F, the rotations are drawn from the default generator in the
  // forward and drawn again identically in the recompute; redrawing them (a new seed per call) breaks the
  // gradients.
  for (bool redraw : {false, true}) {
    manual_seed(2);
    TensorOptions o{kFloat64};
    LshBranch f{randn({8, 8}, o).requires_grad_(), randn({8, 8}, o).requires_grad_(),
                randn({8, 8}, o).requires_grad_(), nullptr};
    if (redraw) f.seed_counter = std::make_shared<uint64_t>(1000);
    auto g = branch(8, 16, 0.2, kFloat64);
    std::vector<Tensor> params = {f.wqk, f.wv, f.wo};
    for (const Tensor& p : g->parameters()) params.push_back(p);
    Tensor x1 = randn({2, 16, 8}, kFloat64), x2 = randn({2, 16, 8}, kFloat64);
    Tensor c = randn({2, 16, 8}, kFloat64);

    auto step = [&](bool reversible) {
      for (const Tensor& p : params) p.set_grad(Tensor());
      if (f.seed_counter) *f.seed_counter = 1000;
      Tensor a = x1.clone().requires_grad_(), b = x2.clone().requires_grad_();
      manual_seed(17);
      ReversibleOutput y;
      if (reversible) {
        y = reversible_sequence({{f, [g](const Tensor& t) { return g->forward(t); }}}, a, b, params);
      } else {
        y = {a + f(b), Tensor()};
        y.y2 = b + g->forward(y.y1);
      }
      (sum(y.y1 * c) + sum(y.y2 * y.y2)).backward();
      StepResult r{y.y1.detach(), y.y2.detach(), a.grad(), b.grad(), {}};
      for (const Tensor& p : params) r.param_grads.push_back(p.grad());
      return r;
    };
    StepResult want = step(false), got = step(true);
    double err = worst_mismatch(got, want);
    std::printf("[LSH in F] %s rotations: worst relative error %.3g\n", redraw ? "redrawn" : "replayed", err);
    if (redraw)
      EXPECT_GT(err, 1e-3);
    else
      EXPECT_LE(err, 1e-12);
  }
}

TEST(Reversible, ErrorsNameTheProblem) {
  auto id = [](const Tensor& t) { return t; };
  Tensor a = randn({2, 3}), b = randn({2, 4});
  std::string msg = error_of([&] { reversible_sequence({{id, id}}, a, b); });
  EXPECT_NE(msg.find("reversible_sequence: the two streams must match"), std::string::npos) << msg;
  msg = error_of([&] { reversible_sequence({{[](const Tensor& t) { return sum(t); }, id}}, a, a); });
  EXPECT_NE(msg.find("block 0's F must return a tensor like its input"), std::string::npos) << msg;
  msg = error_of([&] { reversible_sequence({}, a, a); });
  EXPECT_NE(msg.find("no blocks"), std::string::npos) << msg;
  Tensor w = randn({3}).requires_grad_();
  Tensor w2 = w * 2.0;  // not a leaf
  msg = error_of([&] { reversible_sequence({{[w2](const Tensor& t) { return t * w2; }, id}}, a, a, {w2}); });
  EXPECT_NE(msg.find("is not a leaf"), std::string::npos) << msg;
}
