// chunked_apply (autograd/chunked.h) and nn::ChunkedFeedForward: chunked equals unchunked (outputs, input and
// parameter gradients) for several chunk sizes including non-divisible ones; with dropout on, forward and
// recompute draw the same masks (the result equals running fn chunk by chunk on the ordinary tape); one tape entry;
// peak memory of the feed-forward block far lower chunked; argument errors. chunked_apply_indexed: float64
// gradcheck of a weighted loss head that slices its targets and weights by the offset, equal to the unchunked
// head, and the offset handed to fn is each slice's start in the forward and in backward's reruns.
#include <gtest/gtest.h>

#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "loom/autograd/tape.h"
#include "loom/loom.h"
#include "support/compare.h"
#include "support/expect.h"

using namespace loom;
using test::expect_close;
using test::expect_error;
using test::normal;

namespace {

// A position-wise block with parameters and (optionally) dropout: LayerNorm -> Linear -> Dropout -> GELU -> Linear.
struct Block {
  nn::LayerNorm ln;
  nn::Linear fc1, fc2;
  double p;
  Block(int64_t d, int64_t f, double p_, DType dtype = kFloat64) : ln(d, 1e-5, true, dtype), fc1(d, f, true, dtype),
                                                                  fc2(f, d, true, dtype), p(p_) {}
  Tensor operator()(const Tensor& x) { return fc2.forward(gelu(dropout(fc1.forward(ln.forward(x)), p))); }
  std::vector<Tensor> params() { return {ln.weight, ln.bias, fc1.weight, fc1.bias, fc2.weight, fc2.bias}; }
  void zero_grad() {
    for (const Tensor& t : params()) t.set_grad(Tensor());
  }
};

struct Result {
  Tensor out, gx;
  std::vector<Tensor> gparams;
  PhiloxState after_forward, after_backward;
};

// Runs `run` (x -> output) from generator seed 7 on a fresh leaf copy of x, backpropagates sum(out * probe) and
// collects the output and every gradient.
Result run_and_grad(Block& block, const Tensor& x, const Tensor& probe, const std::function<Tensor(const Tensor&)>& run) {
  block.zero_grad();
  manual_seed(7);
  Tensor xl = x.detach().clone().requires_grad_();
  Result r;
  r.out = run(xl);
  r.after_forward = default_generator().state();
  sum(mul(r.out, probe)).backward();
  r.after_backward = default_generator().state();
  r.gx = xl.grad();
  for (const Tensor& p : block.params()) r.gparams.push_back(p.grad());
  return r;
}

void expect_same(const Result& got, const Result& want, double tol, const std::string& what) {
  expect_close(got.out, want.out, tol, tol, what + " output");
  expect_close(got.gx, want.gx, tol, tol, what + " input grad");
  for (size_t i = 0; i < want.gparams.size(); ++i)
    expect_close(got.gparams[i], want.gparams[i], tol, tol, what + " param grad " + std::to_string(i));
}

// fn applied to consecutive slices on the ordinary tape (all activations kept), concatenated: the reference for
// chunked_apply when fn draws random numbers (the same chunks draw in the same order).
Tensor sequential_chunks(const std::function<Tensor(const Tensor&)>& fn, const Tensor& x, int64_t chunk, int64_t dim) {
  std::vector<Tensor> parts;
  for (const Tensor& s : split(x, chunk, dim)) parts.push_back(fn(s));
  return cat(parts, dim);
}

}  // namespace

// ---- chunked_apply ---------------------------------------------------------------------------------------------

TEST(ChunkedApply, EqualsUnchunkedWithoutDropout) {
  Block block(4, 16, 0.0);
  Tensor x = normal({2, 10, 4}, 1), probe = normal({2, 10, 4}, 2);
  auto fn = [&](const Tensor& t) { return block(t); };
  Result want = run_and_grad(block, x, probe, fn);
  for (int64_t chunk : {1, 2, 3, 4, 5, 7, 9}) {  // 3, 4, 7, 9: the last chunk is shorter
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    Result got = run_and_grad(block, x, probe, [&](const Tensor& t) { return chunked_apply(fn, t, chunk, 1); });
    expect_same(got, want, 1e-12, "chunked");
  }
  // Along another dim (batch, and the position dim of a [L, B, D] layout given as -3).
  for (int64_t dim : {0, -3}) {
    Tensor xt = dim == 0 ? x : x.transpose(0, 1).contiguous(), pt = dim == 0 ? probe : probe.transpose(0, 1).contiguous();
    Result ref = run_and_grad(block, xt, pt, fn);
    Result got = run_and_grad(block, xt, pt, [&](const Tensor& t) { return chunked_apply(fn, t, 1, dim); });
    expect_same(got, ref, 1e-12, "dim " + std::to_string(dim));
  }
}

TEST(ChunkedApply, DropoutMasksMatchBetweenForwardAndRecompute) {
  // p = 0.5 makes any mask difference between the forward and the recompute show in every gradient.
  Block block(4, 16, 0.5);
  Tensor x = normal({3, 10, 4}, 3), probe = normal({3, 10, 4}, 4);
  auto fn = [&](const Tensor& t) { return block(t); };
  for (int64_t chunk : {1, 3, 4, 6}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    Result want = run_and_grad(block, x, probe, [&](const Tensor& t) { return sequential_chunks(fn, t, chunk, 1); });
    Result got = run_and_grad(block, x, probe, [&](const Tensor& t) { return chunked_apply(fn, t, chunk, 1); });
    expect_same(got, want, 1e-12, "chunked with dropout");
    // The generator advances as the forward consumed it, and backward's reruns leave it where it was.
    EXPECT_EQ(got.after_forward.offset, want.after_forward.offset);
    EXPECT_EQ(got.after_backward.offset, got.after_forward.offset);
    // Dropout really is on: the output differs from the block without it.
    Tensor plain;
    {
      NoGradGuard no_grad;
      plain = block.fc2.forward(gelu(block.fc1.forward(block.ln.forward(x))));
    }
    EXPECT_FALSE(allclose(got.out, plain, 1e-3, 1e-3));
  }
  // Same seed, same everything: 10 runs give bit-identical outputs and gradients (reformer.md test 15).
  Result first = run_and_grad(block, x, probe, [&](const Tensor& t) { return chunked_apply(fn, t, 4, 1); });
  for (int run = 0; run < 10; ++run)
    expect_same(run_and_grad(block, x, probe, [&](const Tensor& t) { return chunked_apply(fn, t, 4, 1); }), first, 0,
                "rerun");
}

TEST(ChunkedApply, RecordsOneEntryAndFreesTheReruns) {
  Block block(4, 8, 0.0);
  Tensor x = normal({2, 6, 4}, 5).requires_grad_();
  autograd::TapeGuard guard;
  Tensor out = chunked_apply([&](const Tensor& t) { return block(t); }, x, 2, 1);
  EXPECT_EQ(out.grad_fn_name(), "chunked_apply");
  EXPECT_EQ(guard.tape().recorded_entries(), 1);
  sum(out).backward();
  EXPECT_EQ(guard.tape().live_entries(), 0);
  EXPECT_TRUE(x.grad().defined());
}

TEST(ChunkedApply, OneChunkOrOffRunsFnOnTheTape) {
  Block block(4, 8, 0.0);
  Tensor x = normal({2, 6, 4}, 6), probe = normal({2, 6, 4}, 7);
  auto fn = [&](const Tensor& t) { return block(t); };
  Result want = run_and_grad(block, x, probe, fn);
  for (int64_t chunk : {0, -1, 6, 100}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    Tensor xl = x.detach().requires_grad_();
    EXPECT_EQ(chunked_apply(fn, xl, chunk, 1).grad_fn_name(), "linear");  // fn's own last entry
    expect_same(run_and_grad(block, x, probe, [&](const Tensor& t) { return chunked_apply(fn, t, chunk, 1); }), want,
                0, "off");
  }
}

TEST(ChunkedApply, ParametersGetGradientsWhenTheInputNeedsNone) {
  Block block(4, 8, 0.0);
  Tensor x = normal({2, 7, 4}, 8);  // no requires_grad
  Tensor out = chunked_apply([&](const Tensor& t) { return block(t); }, x, 3, 1);
  EXPECT_TRUE(out.requires_grad());
  sum(out).backward();
  for (const Tensor& p : block.params()) EXPECT_TRUE(p.grad().defined());
  EXPECT_FALSE(x.grad().defined());
  block.zero_grad();
  sum(block(x)).backward();
  Tensor want = block.fc1.weight.grad();
  block.zero_grad();
  sum(chunked_apply([&](const Tensor& t) { return block(t); }, x, 3, 1)).backward();
  expect_close(block.fc1.weight.grad(), want, 1e-12, 1e-12, "fc1.weight grad");
}

TEST(ChunkedApply, NoGradModeRecordsNothing) {
  Block block(4, 8, 0.0);
  Tensor x = normal({1, 5, 4}, 9).requires_grad_();
  NoGradGuard no_grad;
  Tensor out = chunked_apply([&](const Tensor& t) { return block(t); }, x, 2, 1);
  EXPECT_FALSE(out.requires_grad());
  expect_close(out, block(x), 1e-12, 1e-12, "no-grad output");
}

TEST(ChunkedApply, OutputMayChangeOtherDims) {
  // A loss-head-like fn: [B, L, D] -> [B, L, V] (chunked loss: [B, L, V] logits never exist at once in backward).
  nn::Linear head(4, 9, true, kFloat64);
  Tensor x = normal({2, 7, 4}, 10).requires_grad_();
  Tensor out = chunked_apply([&](const Tensor& t) { return log_softmax(head.forward(t), -1); }, x, 3, 1);
  EXPECT_EQ(out.shape(), (Shape{2, 7, 9}));
  expect_close(out, log_softmax(head.forward(x), -1), 1e-12, 1e-12, "head");
}

TEST(ChunkedApply, ArgumentErrors) {
  Tensor x = normal({2, 6, 4}, 11);
  auto id = [](const Tensor& t) { return t; };
  expect_error([&] { chunked_apply(nullptr, x, 2, 1); }, {"chunked_apply: empty function"});
  expect_error([&] { chunked_apply(id, Tensor(), 2, 1); }, {"chunked_apply: x is undefined"});
  expect_error([&] { chunked_apply(id, scalar_tensor(1.0), 2, 0); }, {"chunked_apply: x must have at least one dim"});
  expect_error([&] { chunked_apply(id, x, 2, 3); }, {"chunked_apply: dim 3 out of range"});
  expect_error([&] { chunked_apply([](const Tensor& t) { return sum(t, {1}); }, x, 2, 1); },
               {"chunked_apply: fn must keep the length along dim 1", "[2, 2, 4]", "[2, 4]"});
  expect_error([&] { chunked_apply([](const Tensor& t) { return t.narrow(2, 0, t.size(1)); }, x, 4, 1); },
               {"chunked_apply: fn gave the chunk at offset 4", "float64[2, 2, 2]", "float64[2, 4, 4]",
                "every chunk must give the same dtype, device and sizes outside dim 1"});
  expect_error([&] { chunked_apply([](const Tensor&) { return Tensor(); }, x, 4, 1); },
               {"chunked_apply: fn returned an undefined tensor for the chunk at 0"});
}

// ---- nn::ChunkedFeedForward --------------------------------------------------------------------------------------

namespace {

nn::ChunkedFeedForwardOptions ff_options(int64_t d, int64_t f, double p, const std::string& act, int64_t chunk) {
  nn::ChunkedFeedForwardOptions o;
  o.d_model = d;
  o.d_ff = f;
  o.dropout = p;
  o.activation = act;
  o.chunk_size = chunk;
  return o;
}

}  // namespace

TEST(ChunkedFeedForward, ParametersAndTheBlockWrittenOut) {
  nn::ChunkedFeedForward ff(ff_options(4, 12, 0.0, "gelu", 0), kFloat64);
  std::vector<std::string> names;
  for (const auto& [name, p] : ff.named_parameters()) names.push_back(name + shape_str(p.shape()));
  EXPECT_EQ(names, (std::vector<std::string>{"layer_norm.weight[4]", "layer_norm.bias[4]", "dense.weight[12, 4]",
                                             "dense.bias[12]", "output.weight[4, 12]", "output.bias[4]"}));
  Tensor x = normal({2, 5, 4}, 12);
  Tensor want = linear(gelu(linear(layer_norm(x, {4}, ff.layer_norm->weight, ff.layer_norm->bias, 1e-12),
                                   ff.dense->weight, ff.dense->bias)),
                       ff.output->weight, ff.output->bias);
  expect_close(ff.forward(x), want, 1e-12, 1e-12, "gelu block");
  nn::ChunkedFeedForward relu_ff(ff_options(4, 12, 0.0, "relu", 2), kFloat64);
  Tensor want_relu = linear(relu(linear(relu_ff.layer_norm->forward(x), relu_ff.dense->weight, relu_ff.dense->bias)),
                            relu_ff.output->weight, relu_ff.output->bias);
  expect_close(relu_ff.forward(x), want_relu, 1e-12, 1e-12, "relu block, chunked");
}

TEST(ChunkedFeedForward, ChunkedEqualsUnchunked) {
  // reformer.md test 13 (HF test_reformer_chunking_backward_equality), dropout off, in float64 to 1e-12.
  for (const char* act : {"relu", "gelu"}) {
    nn::ChunkedFeedForward ff(ff_options(6, 20, 0.0, act, 0), kFloat64);
    Tensor x = normal({2, 11, 6}, 13), probe = normal({2, 11, 6}, 14);
    auto run = [&](int64_t chunk, Tensor& gx, std::vector<Tensor>& gp) {
      ff.zero_grad();
      ff.set_chunk_size(chunk);
      Tensor xl = x.detach().clone().requires_grad_();
      Tensor out = ff.forward(xl);
      sum(mul(out, probe)).backward();
      gx = xl.grad();
      gp.clear();
      for (const Tensor& p : ff.parameters()) gp.push_back(p.grad());
      return out;
    };
    Tensor gx0, gx1;
    std::vector<Tensor> gp0, gp1;
    Tensor want = run(0, gx0, gp0);
    for (int64_t chunk : {1, 2, 4, 5, 10}) {
      SCOPED_TRACE(std::string(act) + " chunk " + std::to_string(chunk));
      Tensor got = run(chunk, gx1, gp1);
      expect_close(got, want, 1e-12, 1e-12, "output");
      expect_close(gx1, gx0, 1e-12, 1e-12, "input grad");
      for (size_t i = 0; i < gp0.size(); ++i) expect_close(gp1[i], gp0[i], 1e-12, 1e-12, "param grad");
    }
  }
}

TEST(ChunkedFeedForward, TrainingDropoutAndEvalMode) {
  nn::ChunkedFeedForward ff(ff_options(4, 16, 0.3, "gelu", 3), kFloat64);
  Tensor x = normal({2, 7, 4}, 15).requires_grad_();
  manual_seed(3);
  Tensor a = ff.forward(x);
  sum(a).backward();  // the recompute must reproduce the forward's masks (checked in depth above); no throw here
  manual_seed(3);
  EXPECT_TRUE(allclose(ff.forward(x), a, 0, 0));  // same seed, same masks
  ff.eval();
  Tensor e = ff.forward(x);
  ff.set_chunk_size(0);
  expect_close(ff.forward(x), e, 1e-12, 1e-12, "eval: chunked == unchunked");
  EXPECT_FALSE(allclose(e, a, 1e-3, 1e-3));
}

TEST(ChunkedFeedForward, PeakMemoryMuchLowerChunked) {
  // D = 64, F = 4096, L = 4096: every [1, L, F] float32 activation is 64 MiB unchunked, 4 MiB per 256-row chunk.
  nn::ChunkedFeedForward ff(ff_options(64, 4096, 0.1, "relu", 0));
  Tensor x = normal({1, 4096, 64}, 16, kFloat32).requires_grad_();
  auto peak = [&](int64_t chunk) {
    ff.zero_grad();
    x.set_grad(Tensor());
    ff.set_chunk_size(chunk);
    reset_peak_memory();
    const int64_t before = memory_stats().current_bytes;
    sum(ff.forward(x)).backward();
    return memory_stats().peak_bytes - before;
  };
  peak(256);  // first-use allocations (parameter gradients) out of the comparison
  const int64_t unchunked = peak(0), chunked = peak(256);
  std::cout << "ChunkedFeedForward peak bytes (fwd+bwd, D=64, F=4096, L=4096): unchunked " << unchunked
            << ", chunk 256 " << chunked << ", ratio " << static_cast<double>(unchunked) / chunked << "\n";
  EXPECT_GT(unchunked, 8 * chunked);  // measured: about 12x (221 MB vs 18 MB)
}

TEST(ChunkedFeedForward, ArgumentErrors) {
  expect_error([] { nn::ChunkedFeedForward f(ff_options(0, 8, 0.0, "relu", 0)); },
               {"ChunkedFeedForward: d_model and d_ff must be positive, got 0 and 8"});
  expect_error([] { nn::ChunkedFeedForward f(ff_options(4, 8, 0.0, "tanh", 0)); },
               {"activation must be \"relu\" or \"gelu\", got \"tanh\""});
  nn::ChunkedFeedForward ff(ff_options(4, 8, 0.0, "relu", 2));
  expect_error([&] { ff.forward(normal({2, 5, 3}, 17, kFloat32)); },
               {"ChunkedFeedForward(d_model=4): input must be [B, L, 4], got [2, 5, 3]"});
  expect_error([&] { ff.forward(normal({5, 4}, 18, kFloat32)); }, {"[5, 4]"});
}

// ---- chunked_apply_indexed --------------------------------------------------------------------------------

namespace {

// A per-position weighted loss head, the case chunked_apply_indexed exists for: the slice of hidden states
// [B, len, D] starting at `start` is paired with the same positions of targets and weights [B, L], which live
// outside x; the output is each position's weighted negative log-likelihood [B, len, 1]. `ignore_offset`
// reads them from position 0 instead: the bug a wrong offset would cause, which the comparisons must catch.
struct WeightedHead {
  Tensor targets, weights;  // int64 [B, L] in [0, V), float64 [B, L]
  bool ignore_offset = false;
  Tensor operator()(const Tensor& h, int64_t start, const Tensor& w, const Tensor& b) const {
    const int64_t len = h.size(1), at = ignore_offset ? 0 : start;
    Tensor logp = log_softmax(linear(h, w, b), -1);
    Tensor picked = gather(logp, -1, targets.narrow(1, at, len).unsqueeze(-1));
    return neg(mul(picked, weights.narrow(1, at, len).unsqueeze(-1)));
  }
};

// B = 2, L = 6, V = 4; every position has its own target and weight, so a slice paired with the wrong
// positions changes the result.
WeightedHead weighted_head() {
  WeightedHead head;
  head.targets = tensor<int64_t>({3, 0, 2, 1, 1, 3, 0, 2, 3, 3, 1, 0}, {2, 6});
  head.weights = add(test::normal({2, 6}, 30), 1.5);
  return head;
}

Tensor chunked_head(const WeightedHead& head, const Tensor& x, const Tensor& w, const Tensor& b,
                    int64_t chunk) {
  return chunked_apply_indexed([head, w, b](const Tensor& s, int64_t start) { return head(s, start, w, b); },
                               x, chunk, 1);
}

}  // namespace

TEST(ChunkedApplyIndexed, GradcheckOfAWeightedLossHead) {
  // Input and parameter gradients against central differences; chunk sizes 1, 2, 3 divide L = 6, 4 and 5 not.
  const WeightedHead head = weighted_head();
  Tensor x = test::leaf({2, 6, 3}, 31), w = test::leaf({4, 3}, 32, kFloat64, 0.7), b = test::leaf({4}, 33);
  for (int64_t chunk : {1, 2, 3, 4, 5}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    EXPECT_EQ(chunked_head(head, x, w, b, chunk).grad_fn_name(), "chunked_apply");  // really chunked
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) { return chunked_head(head, in[0], in[1], in[2], chunk); },
        {x, w, b}));
  }
  // Negative control: reruns that pair their slice with other positions than the forward did (what a wrong
  // offset handed to backward's reruns would do) give gradients of another function, and gradcheck says so.
  auto drifting = [&](const std::vector<Tensor>& in) {
    return chunked_apply_indexed(
        [&head, w = in[1], b = in[2]](const Tensor& s, int64_t start) {
          // The forward runs without grad, the reruns with it.
          return head(s, GradMode::is_enabled() ? 0 : start, w, b);
        },
        in[0], 4, 1);
  };
  GradcheckOptions quiet;
  quiet.raise = false;
  EXPECT_FALSE(gradcheck(drifting, {x, w, b}, quiet));
}

TEST(ChunkedApplyIndexed, EqualsTheUnchunkedHeadInOutputsAndGradients) {
  const WeightedHead head = weighted_head();
  Tensor x0 = test::normal({2, 6, 3}, 34), probe = test::normal({2, 6, 1}, 35);
  Tensor w = test::leaf({4, 3}, 36, kFloat64, 0.7), b = test::leaf({4}, 37);
  struct Grads {
    Tensor out, gx, gw, gb;
  };
  auto run = [&](const std::function<Tensor(const Tensor&)>& f) {
    w.set_grad(Tensor());
    b.set_grad(Tensor());
    Tensor x = x0.detach().clone().requires_grad_();
    Grads g;
    g.out = f(x);
    sum(mul(g.out, probe)).backward();
    g.gx = x.grad();
    g.gw = w.grad();
    g.gb = b.grad();
    return g;
  };
  // The reference: the head on the whole sequence, on the plain tape.
  const Grads want = run([&](const Tensor& x) { return head(x, 0, w, b); });
  for (int64_t chunk : {1, 2, 3, 4, 5}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    const Grads got = run([&](const Tensor& x) { return chunked_head(head, x, w, b, chunk); });
    expect_close(got.out, want.out, 1e-12, 1e-12, "output");
    expect_close(got.gx, want.gx, 1e-12, 1e-12, "input grad");
    expect_close(got.gw, want.gw, 1e-12, 1e-12, "weight grad");
    expect_close(got.gb, want.gb, 1e-12, 1e-12, "bias grad");
    // Negative control: slices paired with positions 0 .. len - 1 instead of their own give another loss.
    WeightedHead wrong = head;
    wrong.ignore_offset = true;
    const Grads bad = run([&](const Tensor& x) { return chunked_head(wrong, x, w, b, chunk); });
    EXPECT_FALSE(allclose(bad.out, want.out, 1e-6, 1e-6));
    EXPECT_FALSE(allclose(bad.gw, want.gw, 1e-6, 1e-6));
  }
}

TEST(ChunkedApplyIndexed, HandsFnEachSlicesStart) {
  // fn records (start, length) and checks that the slice it got is x's at that start; backward's reruns must
  // see the same starts, in the same order, as the forward.
  using Call = std::pair<int64_t, int64_t>;  // (start, length)
  struct Recorded {
    std::vector<Call> fwd, bwd;
    Tensor out, gx;
  };
  auto run = [](const Tensor& x, int64_t chunk, int64_t dim) {
    const int64_t d = dim < 0 ? dim + x.dim() : dim;
    std::vector<Call> calls;
    Tensor out = chunked_apply_indexed(
        [&](const Tensor& s, int64_t start) {
          calls.push_back({start, s.size(d)});
          EXPECT_TRUE(test::identical(s, x.detach().narrow(d, start, s.size(d)))) << "slice at " << start;
          return mul(s, static_cast<double>(start + 1));  // the offset in the result: y = x * (start + 1)
        },
        x, chunk, dim);
    Recorded r;
    r.fwd = calls;
    calls.clear();
    sum(out).backward();
    r.bwd = calls;
    r.out = out;
    r.gx = x.grad();
    return r;
  };
  struct Case {
    Shape shape;
    int64_t chunk, dim;
    std::vector<Call> want;
    bool rerun;  // chunking on: backward reruns every chunk
  };
  const std::vector<Case> cases = {
      {{2, 8, 3}, 3, 1, {{0, 3}, {3, 3}, {6, 2}}, true},
      {{2, 8, 3}, 4, 1, {{0, 4}, {4, 4}}, true},
      {{5, 2, 3}, 2, 0, {{0, 2}, {2, 2}, {4, 1}}, true},
      {{2, 3, 7}, 5, -1, {{0, 5}, {5, 2}}, true},
      {{2, 8, 3}, 0, 1, {{0, 8}}, false},  // off: one call at 0 on the ordinary tape
      {{2, 8, 3}, 8, 1, {{0, 8}}, false},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    SCOPED_TRACE("shape " + shape_str(c.shape) + " chunk " + std::to_string(c.chunk) + " dim " +
                 std::to_string(c.dim));
    Tensor x = test::leaf(c.shape, 40 + i);
    const Recorded r = run(x, c.chunk, c.dim);
    const Tensor &out = r.out, &gx = r.gx;
    EXPECT_EQ(r.fwd, c.want);
    EXPECT_EQ(r.bwd, c.rerun ? c.want : std::vector<Call>{});
    // The starts reached the result: each position is x * (1 + its chunk's start), and so is its gradient.
    const int64_t d = c.dim < 0 ? c.dim + x.dim() : c.dim;
    for (const auto& [start, length] : c.want) {
      const double scale = static_cast<double>(start + 1);
      expect_close(out.narrow(d, start, length), mul(x.detach().narrow(d, start, length), scale), 0, 0,
                   "output at " + std::to_string(start));
      expect_close(gx.narrow(d, start, length), full_like(gx.narrow(d, start, length), scale), 0, 0,
                   "grad at " + std::to_string(start));
    }
  }
}
