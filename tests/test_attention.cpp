// scaled_dot_product_attention (ops/attention.h): gradcheck of the fused op; the CPU's tiled kernels against
// the Backend defaults composed of ops (matmul, masked softmax) at tile-boundary sizes in float32 and
// float64, under both backward work splits, with and without attention dropout; masks, empty rows and sizes;
// strided operands and the output layout; errors; dropout against dropout on explicit weights from the same
// generator state; nn::MultiheadAttention's fused path against its explicit-weights path, in training with
// dropout too.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "loom/autograd/tape.h"
#include "loom/loom.h"
#include "loom/ops/backend.h"
#include "support/compare.h"
#include "support/expect.h"

using namespace loom;
using test::all_finite;
using test::expect_close;
using test::expect_error;
using test::leaf;
using test::normal;
using test::random_mask;
using test::ThreadsGuard;

namespace {

bool check(const std::function<Tensor(const std::vector<Tensor>&)>& fn, const std::vector<Tensor>& inputs) {
  return gradcheck(fn, inputs);
}

// The generator state a test's dropout draws start from, so that two computations can draw the same masks.
PhiloxState dropout_state(uint64_t seed) { return PhiloxState{seed, 7}; }

}  // namespace

// ---- gradcheck ----------------------------------------------------------------------------------------------

TEST(AttentionGradcheck, PlainCausalAndScaled) {
  Tensor q = leaf({2, 3, 4}, 1), k = leaf({2, 5, 4}, 2), v = leaf({2, 5, 3}, 3);  // L != S, Dv != D
  EXPECT_TRUE(check([](const auto& in) { return scaled_dot_product_attention(in[0], in[1], in[2]); }, {q, k, v}));
  EXPECT_TRUE(check([](const auto& in) { return scaled_dot_product_attention(in[0], in[1], in[2], {}, true); },
                    {q, k, v}));
  EXPECT_TRUE(check([](const auto& in) { return scaled_dot_product_attention(in[0], in[1], in[2], {}, false, 0.7); },
                    {q, k, v}));
  // L > S with causal: top-left aligned, the last rows see every key.
  Tensor q5 = leaf({1, 5, 2}, 4), k3 = leaf({1, 3, 2}, 5), v3 = leaf({1, 3, 2}, 6);
  EXPECT_TRUE(check([](const auto& in) { return scaled_dot_product_attention(in[0], in[1], in[2], {}, true); },
                    {q5, k3, v3}));
  // Attention dropout: every evaluation draws the same mask (the generator is rewound to one state), so the
  // function is smooth; masked and causal, on 4-d operands whose weights cross several Philox blocks.
  Tensor q4 = leaf({2, 2, 5, 3}, 17), k4 = leaf({2, 2, 6, 3}, 18), v4 = leaf({2, 2, 6, 2}, 19);
  Tensor mask = random_mask({5, 6}, 20, 0.3);
  EXPECT_TRUE(check(
      [mask](const auto& in) {
        GeneratorStateGuard rewind(dropout_state(3));
        return scaled_dot_product_attention(in[0], in[1], in[2], mask, true, 0, 0.4);
      },
      {q4, k4, v4}));
  // 2-d operands (no batch dims) and a consumer that makes the incoming gradient non-uniform.
  Tensor q2 = leaf({3, 2}, 7), k2 = leaf({4, 2}, 8), v2 = leaf({4, 3}, 9), w = leaf({3, 3}, 10);
  EXPECT_TRUE(check([](const auto& in) { return mul(scaled_dot_product_attention(in[0], in[1], in[2]), in[3]); },
                    {q2, k2, v2, w}));
}

TEST(AttentionGradcheck, BoolMasksIncludingFullyMaskedRows) {
  Tensor q = leaf({2, 4, 3}, 11), k = leaf({2, 5, 3}, 12), v = leaf({2, 5, 2}, 13);
  // [L, S] with row 1 fully masked; the op must give zeros there, and zero gradients.
  std::vector<bool> m(20, false);
  for (int j = 0; j < 5; ++j) m[5 + j] = true;
  m[2] = m[13] = m[19] = true;
  Tensor mask = tensor(m, {4, 5});
  EXPECT_TRUE(check([mask](const auto& in) { return scaled_dot_product_attention(in[0], in[1], in[2], mask); },
                    {q, k, v}));
  EXPECT_TRUE(check([mask](const auto& in) { return scaled_dot_product_attention(in[0], in[1], in[2], mask, true); },
                    {q, k, v}));
  // Key padding [B, 1, 1, S] on 4-d [B, H, L, D] operands, batch 1 entirely padded.
  Tensor q4 = leaf({2, 2, 3, 2}, 14), k4 = leaf({2, 2, 4, 2}, 15), v4 = leaf({2, 2, 4, 2}, 16);
  Tensor pad = tensor(std::vector<bool>{false, false, true, false, true, true, true, true}, {2, 1, 1, 4});
  EXPECT_TRUE(check([pad](const auto& in) { return scaled_dot_product_attention(in[0], in[1], in[2], pad); },
                    {q4, k4, v4}));
  Tensor out = scaled_dot_product_attention(q4, k4, v4, pad);
  EXPECT_TRUE(all_finite(out));
  EXPECT_EQ(amax(abs(out.select(0, 1))).item<double>(), 0.0);
  sum(out).backward();
  EXPECT_TRUE(all_finite(q4.grad()) && all_finite(k4.grad()) && all_finite(v4.grad()));
  EXPECT_EQ(amax(abs(q4.grad().select(0, 1))).item<double>(), 0.0);
  EXPECT_EQ(amax(abs(k4.grad().select(0, 1))).item<double>(), 0.0);
  EXPECT_EQ(amax(abs(v4.grad().select(0, 1))).item<double>(), 0.0);
}

TEST(AttentionGradcheck, StridedOperands) {
  // Transposed batch dims (row stride > D: read in place), a transposed matrix (last stride != 1: copied), and
  // heads split out of a packed [B, L, 3, H, D] projection, as MultiheadAttention passes them.
  Tensor x = leaf({3, 2, 4}, 21);   // [L, B, D]
  Tensor kt = leaf({2, 4, 5}, 22);  // [B, D, S]
  Tensor v = leaf({2, 5, 3}, 23);
  EXPECT_TRUE(check(
      [](const auto& in) {
        return scaled_dot_product_attention(in[0].transpose(0, 1), in[1].transpose(1, 2), in[2], {}, true);
      },
      {x, kt, v}));
  Tensor qkv = leaf({2, 3, 3, 2, 2}, 24);
  EXPECT_TRUE(check(
      [](const auto& in) {
        Tensor parts = in[0].permute({2, 0, 3, 1, 4});  // [3, B, H, L, D]
        return scaled_dot_product_attention(parts.select(0, 0), parts.select(0, 1), parts.select(0, 2), {}, true);
      },
      {qkv}));
}

// ---- fused CPU kernels against the composed defaults ---------------------------------------------------------

namespace {

struct Case {
  Shape lead;
  int64_t l, s, d, dv;
  bool causal;
  int mask;  // 0 none, 1 random [L, S] (some rows fully masked), 2 key padding over the first lead dim
  double dropout = 0;
};

std::string describe_case(const Case& c, DType dtype) {
  return std::string(dtype_name(dtype)) + " lead " + shape_str(c.lead) + " L " + std::to_string(c.l) + " S " +
         std::to_string(c.s) + " D " + std::to_string(c.d) + " Dv " + std::to_string(c.dv) +
         (c.causal ? " causal" : "") + " mask " + std::to_string(c.mask) + " dropout " +
         std::to_string(c.dropout);
}

void compare_with_default(const Case& c, DType dtype, uint64_t seed) {
  NoGradGuard no_grad;
  auto with = [&](int64_t rows, int64_t cols) {
    Shape s = c.lead;
    s.push_back(rows);
    s.push_back(cols);
    return s;
  };
  Tensor q = normal(with(c.l, c.d), seed, dtype), k = normal(with(c.s, c.d), seed + 1, dtype);
  Tensor v = normal(with(c.s, c.dv), seed + 2, dtype), go = normal(with(c.l, c.dv), seed + 3, dtype);
  Tensor mask;
  if (c.mask == 1) {
    mask = random_mask({c.l, c.s}, seed + 4, 0.3);
    if (c.l > 2) mask.select(0, 1).fill_(1.0);  // a fully masked row
  } else if (c.mask == 2) {
    Shape pad(c.lead.size() + 2, 1);
    pad[0] = c.lead[0];
    pad[pad.size() - 1] = c.s;
    mask = random_mask(pad, seed + 5, 0.4);
  }
  Tensor m = mask.defined() ? mask.expand(with(c.l, c.s)) : mask;
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
  Shape lse_shape = c.lead;
  lse_shape.push_back(c.l);
  AttentionDropout drop;
  if (c.dropout > 0) drop = AttentionDropout{c.dropout, dropout_state(seed)};

  Backend& cpu = cpu_backend();
  Tensor out = Tensor::empty(with(c.l, c.dv), dtype), lse = Tensor::empty(lse_shape, dtype);
  Tensor ref_out = Tensor::empty(with(c.l, c.dv), dtype), ref_lse = Tensor::empty(lse_shape, dtype);
  cpu.attention_forward(q, k, v, m, c.causal, scale, drop, out, lse);
  cpu.loom::Backend::attention_forward(q, k, v, m, c.causal, scale, drop, ref_out, ref_lse);
  const bool f32 = dtype == kFloat32;
  const double rtol = f32 ? 1e-4 : 1e-10, atol = f32 ? 2e-5 : 1e-12;
  const std::string what = describe_case(c, dtype);
  expect_close(out, ref_out, rtol, atol, what + " out");
  expect_close(lse, ref_lse, rtol, atol, what + " logsumexp");

  Tensor gq = Tensor::empty(q.shape(), dtype), gk = Tensor::empty(k.shape(), dtype);
  Tensor gv = Tensor::empty(v.shape(), dtype);
  Tensor rq = Tensor::empty(q.shape(), dtype), rk = Tensor::empty(k.shape(), dtype);
  Tensor rv = Tensor::empty(v.shape(), dtype);
  cpu.attention_backward(go, q, k, v, out, lse, m, c.causal, scale, drop, gq, gk, gv);
  cpu.loom::Backend::attention_backward(go, q, k, v, out, lse, m, c.causal, scale, drop, rq, rk, rv);
  // Gradients sum over up to S (or L) products of O(1) terms: a looser absolute floor in float32.
  const double gatol = f32 ? 1e-4 : 1e-11;
  expect_close(gq, rq, rtol, gatol, what + " grad q");
  expect_close(gk, rk, rtol, gatol, what + " grad k");
  expect_close(gv, rv, rtol, gatol, what + " grad v");
}

}  // namespace

TEST(AttentionKernel, MatchesDefaultAtTileBoundaries) {
  // Tiles are 64 query rows by 128 keys: sizes on both sides of each boundary.
  uint64_t seed = 100;
  for (DType dtype : {kFloat32, kFloat64}) {
    for (int64_t l : {1, 63, 64, 65, 200}) {
      for (int64_t s : {1, 64, 65, 127, 129, 200}) {
        for (bool causal : {false, true}) {
          compare_with_default({{2}, l, s, 16, 8, causal, 0}, dtype, seed += 10);
          // Dropout: each tile row's multipliers start at its own index into the [batch, L, S] weights.
          compare_with_default({{2}, l, s, 16, 8, causal, 0, 0.3}, dtype, seed += 10);
        }
      }
    }
  }
}

TEST(AttentionKernel, MatchesDefaultWithMasksAndBothBackwardSplits) {
  uint64_t seed = 1000;
  // One thread: each task owns a (batch, head) matrix. Four threads with two matrices: the split passes over
  // key blocks then query blocks.
  for (int threads : {1, 4}) {
    ThreadsGuard guard(threads);
    for (DType dtype : {kFloat32, kFloat64}) {
      for (int mask : {0, 1, 2}) {
        for (bool causal : {false, true}) {
          for (double dropout : {0.0, 0.2}) {
            compare_with_default({{2}, 130, 200, 64, 64, causal, mask, dropout}, dtype, seed += 10);
            compare_with_default({{2, 3}, 65, 65, 8, 24, causal, mask, dropout}, dtype, seed += 10);
          }
        }
      }
    }
  }
}

TEST(AttentionKernel, GradientsOnlyWhereAsked) {
  NoGradGuard no_grad;
  Tensor q = normal({2, 70, 8}, 1), k = normal({2, 90, 8}, 2), v = normal({2, 90, 4}, 3), go = normal({2, 70, 4}, 4);
  Tensor out = Tensor::empty({2, 70, 4}, kFloat64), lse = Tensor::empty({2, 70}, kFloat64);
  const AttentionDropout drop{0.25, dropout_state(5)};
  cpu_backend().attention_forward(q, k, v, {}, true, 0.3, drop, out, lse);
  Tensor rq = Tensor::empty(q.shape(), kFloat64), rk = Tensor::empty(k.shape(), kFloat64);
  Tensor rv = Tensor::empty(v.shape(), kFloat64);
  cpu_backend().loom::Backend::attention_backward(go, q, k, v, out, lse, {}, true, 0.3, drop, rq, rk, rv);
  for (int threads : {1, 4}) {
    ThreadsGuard guard(threads);
    for (int which = 0; which < 3; ++which) {
      Tensor g[3];
      g[which] = full(which == 0 ? q.shape() : which == 1 ? k.shape() : v.shape(), NAN, kFloat64);
      cpu_backend().attention_backward(go, q, k, v, out, lse, {}, true, 0.3, drop, g[0], g[1], g[2]);
      const Tensor& want = which == 0 ? rq : which == 1 ? rk : rv;
      expect_close(g[which], want, 1e-10, 1e-12, "gradient " + std::to_string(which));
    }
  }
}

// ---- the op ---------------------------------------------------------------------------------------------------

TEST(Attention, MatchesExplicitSoftmaxAndRecordsOneEntry) {
  Tensor q = leaf({2, 3, 5, 4}, 31), k = leaf({2, 3, 6, 4}, 32), v = leaf({2, 3, 6, 3}, 33);
  Tensor mask = random_mask({2, 1, 5, 6}, 34, 0.3);
  autograd::TapeGuard tape;
  Tensor out = scaled_dot_product_attention(q, k, v, mask, true, 0.5);
  EXPECT_EQ(tape.tape().recorded_entries(), 1);
  EXPECT_EQ(out.grad_fn_name(), "scaled_dot_product_attention");
  NoGradGuard no_grad;
  Tensor causal = gt(arange(6.0).view({1, 6}), arange(5.0).view({5, 1}));
  Tensor want = matmul(softmax(mul(matmul(q, k.transpose(-2, -1)), 0.5), -1, logical_or(mask, causal)), v);
  expect_close(out, want, 1e-12, 1e-12, "out");
}

// Fused dropout against dropout on explicitly computed weights, both drawn from the same generator state:
// outputs and gradients agree, the generator advances by the same amount, and the expected fraction is
// dropped.
TEST(Attention, DropoutMatchesDropoutOnExplicitWeights) {
  Tensor q = leaf({2, 3, 70, 8}, 81), k = leaf({2, 3, 90, 8}, 82), v = leaf({2, 3, 90, 5}, 83);
  Tensor pad = random_mask({2, 1, 1, 90}, 84, 0.2);
  const double p = 0.3;
  for (bool causal : {false, true}) {
    std::vector<Tensor> fused, composed;
    PhiloxState after_fused, after_composed;
    for (bool fuse : {true, false}) {
      for (Tensor* t : {&q, &k, &v}) t->set_grad(Tensor());
      GeneratorStateGuard rewind(dropout_state(11));
      Tensor out;
      if (fuse) {
        out = scaled_dot_product_attention(q, k, v, pad, causal, 0, p);
      } else {
        Tensor excluded = pad.expand({2, 3, 70, 90});
        if (causal)
          excluded = logical_or(excluded, gt(arange(90.0).view({1, 90}), arange(70.0).view({70, 1})));
        Tensor weights = softmax(div(matmul(q, k.transpose(-2, -1)), std::sqrt(8.0)), -1, excluded);
        out = matmul(dropout(weights, p), v);
      }
      sum(mul(out, out)).backward();
      std::vector<Tensor>& got = fuse ? fused : composed;
      got = {out.detach(), q.grad(), k.grad(), v.grad()};
      (fuse ? after_fused : after_composed) = default_generator().state();
    }
    const char* names[] = {"out", "grad q", "grad k", "grad v"};
    for (size_t i = 0; i < fused.size(); ++i)
      expect_close(fused[i], composed[i], 1e-10, 1e-12, std::string(names[i]) + (causal ? " causal" : ""));
    EXPECT_EQ(after_fused.offset, after_composed.offset);
  }
  // With p = 1 nothing is kept; with p = 0 the op is the plain one, and draws nothing.
  NoGradGuard no_grad;
  EXPECT_EQ(amax(abs(scaled_dot_product_attention(q, k, v, {}, false, 0, 1.0))).item<double>(), 0.0);
  const PhiloxState before = default_generator().state();
  expect_close(scaled_dot_product_attention(q, k, v, pad, true, 0, 0.0),
               scaled_dot_product_attention(q, k, v, pad, true), 0, 0, "p = 0");
  EXPECT_EQ(default_generator().state().offset, before.offset);
  // About p of the weights are dropped: with v = identity rows, out = dropout(weights) row by row, and the
  // kept weights of a row sum to (1 - p) * 1 / (1 - p) = 1 in expectation.
  Tensor eye_v = eq(arange(90.0).view({90, 1}), arange(90.0).view({1, 90})).to(kFloat64).view({1, 1, 90, 90});
  Tensor w = scaled_dot_product_attention(normal({1, 1, 400, 8}, 85), normal({1, 1, 90, 8}, 86), eye_v, {},
                                          false, 0, p);
  const double dropped = mean(eq(w, 0.0).to(kFloat64)).item<double>();
  EXPECT_NEAR(dropped, p, 0.01);
  EXPECT_NEAR(mean(sum(w, {-1})).item<double>(), 1.0, 0.02);
}

TEST(Attention, PackedDropoutMatchesSeparateViews) {
  Tensor big = leaf({2, 70, 3, 4, 16}, 91);
  Tensor packed, separate, grad_packed;
  {
    GeneratorStateGuard rewind(dropout_state(13));
    packed = scaled_dot_product_attention_packed(big, {}, true, 0, 0.2);
    sum(mul(packed, packed)).backward();
    grad_packed = big.grad();
  }
  big.set_grad(Tensor());
  {
    GeneratorStateGuard rewind(dropout_state(13));
    Tensor parts = big.permute({2, 0, 3, 1, 4});
    separate = scaled_dot_product_attention(parts.select(0, 0), parts.select(0, 1), parts.select(0, 2), {},
                                            true, 0, 0.2);
    sum(mul(separate, separate)).backward();
  }
  expect_close(packed, separate, 0, 0, "packed out");
  expect_close(grad_packed, big.grad(), 0, 0, "packed grad");
}

TEST(Attention, EdgeSizes) {
  NoGradGuard no_grad;
  // No keys: every row is fully masked and outputs zeros.
  Tensor out = scaled_dot_product_attention(normal({2, 3, 4}, 1), normal({2, 0, 4}, 2), normal({2, 0, 5}, 3));
  EXPECT_EQ(out.shape(), Shape({2, 3, 5}));
  EXPECT_EQ(amax(abs(out)).item<double>(), 0.0);
  // No queries, no batch.
  EXPECT_EQ(scaled_dot_product_attention(normal({2, 0, 4}, 1), normal({2, 3, 4}, 2), normal({2, 3, 5}, 3)).shape(),
            Shape({2, 0, 5}));
  EXPECT_EQ(scaled_dot_product_attention(normal({0, 2, 4}, 1), normal({0, 3, 4}, 2), normal({0, 3, 5}, 3)).shape(),
            Shape({0, 2, 5}));
  // Extreme scores stay finite (the online softmax shifts by the running max).
  Tensor q = mul(normal({1, 70, 4}, 4), 300.0);
  Tensor r = scaled_dot_product_attention(q, normal({1, 150, 4}, 5), normal({1, 150, 2}, 6), {}, true);
  EXPECT_TRUE(all_finite(r));
}

TEST(Attention, OutputAndGradientsKeepTheHeadInterleavedLayout) {
  // q, k, v as MultiheadAttention passes them: [B, H, L, D] views of a [B, L, 3, H, D] projection.
  Tensor qkv = leaf({2, 5, 3, 4, 8}, 41);
  Tensor parts = qkv.permute({2, 0, 3, 1, 4});
  Tensor out = scaled_dot_product_attention(parts.select(0, 0), parts.select(0, 1), parts.select(0, 2), {}, true);
  EXPECT_EQ(out.shape(), Shape({2, 4, 5, 8}));
  EXPECT_TRUE(out.permute({0, 2, 1, 3}).is_contiguous()) << "strides " << shape_str(out.strides());
  sum(mul(out, out)).backward();
  EXPECT_TRUE(all_finite(qkv.grad()));
}

TEST(Attention, PackedMatchesSeparateViews) {
  Tensor qkv = leaf({2, 3, 3, 2, 2}, 71);  // [B, L, 3, H, D]
  Tensor pad = tensor(std::vector<bool>{false, true, false, true, true, true}, {2, 1, 1, 3});
  EXPECT_TRUE(check([](const auto& in) { return scaled_dot_product_attention_packed(in[0], {}, true); }, {qkv}));
  EXPECT_TRUE(check([pad](const auto& in) { return scaled_dot_product_attention_packed(in[0], pad, false, 0.9); },
                    {qkv}));
  Tensor big = leaf({2, 70, 3, 4, 16}, 72);
  Tensor mask = random_mask({70, 70}, 73, 0.2);
  Tensor packed = scaled_dot_product_attention_packed(big, mask, true);
  sum(mul(packed, packed)).backward();
  Tensor grad_packed = big.grad();
  big.set_grad(Tensor());
  Tensor parts = big.permute({2, 0, 3, 1, 4});
  Tensor separate = scaled_dot_product_attention(parts.select(0, 0), parts.select(0, 1), parts.select(0, 2), mask, true);
  sum(mul(separate, separate)).backward();
  expect_close(packed, separate, 0, 0, "packed out");
  expect_close(grad_packed, big.grad(), 0, 0, "packed grad");
  EXPECT_TRUE(packed.permute({0, 2, 1, 3}).is_contiguous());
  expect_error([] { scaled_dot_product_attention_packed(normal({2, 3, 4, 2, 4}, 1)); },
               {"scaled_dot_product_attention_packed", "[2, 3, 4, 2, 4]", "[..., L, 3, H, D]"});
}

TEST(Attention, ArgumentErrors) {
  Tensor q = normal({2, 3, 4}, 1), k = normal({2, 5, 4}, 2), v = normal({2, 5, 6}, 3);
  const char* op = "scaled_dot_product_attention";
  expect_error([&] { scaled_dot_product_attention(q, k, v.to(kFloat32)); }, {op, "float32", "v"});
  expect_error([&] { scaled_dot_product_attention(q.to(kInt64), k, v); }, {op, "int64"});
  expect_error([&] { scaled_dot_product_attention(q, normal({2, 5, 3}, 4), v); }, {op, "[2, 3, 4]", "[2, 5, 3]"});
  expect_error([&] { scaled_dot_product_attention(q, k, normal({2, 4, 6}, 5)); }, {op, "[2, 4, 6]"});
  expect_error([&] { scaled_dot_product_attention(q, normal({3, 5, 4}, 6), normal({3, 5, 6}, 7)); }, {op, "[3, 5, 4]"});
  expect_error([&] { scaled_dot_product_attention(normal({4}, 8), normal({4}, 9), normal({4}, 10)); }, {op, "[4]"});
  expect_error([&] { scaled_dot_product_attention(q, k, v, ones({3, 5})); }, {op, "attn_mask", "bool"});
  expect_error([&] { scaled_dot_product_attention(q, k, v, random_mask({3, 4}, 11, 0.5)); },
               {op, "attn_mask", "[3, 4]", "[2, 3, 5]"});
  expect_error([&] { scaled_dot_product_attention(q, k, v, {}, false, NAN); }, {op, "scale"});
  expect_error([&] { scaled_dot_product_attention(q, k, v, {}, false, 0, 1.5); }, {op, "dropout_p", "1.5"});
  expect_error(
      [&] {
        scaled_dot_product_attention_packed(normal({2, 3, 3, 2, 4}, 12), {}, false, 0, -0.1);
      },
      {"scaled_dot_product_attention_packed", "dropout_p"});
  expect_error([&] { scaled_dot_product_attention(Tensor(), k, v); }, {op, "q"});
}

TEST(Attention, CudaMatchesCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  Tensor q = leaf({2, 3, 70, 16}, 51), k = leaf({2, 3, 90, 16}, 52), v = leaf({2, 3, 90, 8}, 53);
  Tensor pad = random_mask({2, 1, 1, 90}, 54, 0.3);
  Tensor out = scaled_dot_product_attention(q, k, v, pad, true);
  sum(mul(out, out)).backward();
  Tensor qc = q.detach().cuda().requires_grad_(), kc = k.detach().cuda().requires_grad_();
  Tensor vc = v.detach().cuda().requires_grad_();
  Tensor oc = scaled_dot_product_attention(qc, kc, vc, pad.cuda(), true);
  sum(mul(oc, oc)).backward();
  expect_close(oc.cpu(), out, 1e-9, 1e-11, "out");
  expect_close(qc.grad().cpu(), q.grad(), 1e-9, 1e-11, "grad q");
  expect_close(kc.grad().cpu(), k.grad(), 1e-9, 1e-11, "grad k");
  expect_close(vc.grad().cpu(), v.grad(), 1e-9, 1e-11, "grad v");
  // Attention dropout: the device's Philox draws the CPU's mask from the same state.
  for (Tensor* t : {&q, &k, &v, &qc, &kc, &vc}) t->set_grad(Tensor());
  auto dropped = [&](const Tensor& a, const Tensor& b, const Tensor& c, const Tensor& m) {
    GeneratorStateGuard rewind(dropout_state(17));
    Tensor o = scaled_dot_product_attention(a, b, c, m, true, 0, 0.3);
    sum(mul(o, o)).backward();
    return o;
  };
  Tensor dout = dropped(q, k, v, pad), doc = dropped(qc, kc, vc, pad.cuda());
  expect_close(doc.cpu(), dout, 1e-9, 1e-11, "dropout out");
  expect_close(qc.grad().cpu(), q.grad(), 1e-9, 1e-11, "dropout grad q");
  expect_close(kc.grad().cpu(), k.grad(), 1e-9, 1e-11, "dropout grad k");
  expect_close(vc.grad().cpu(), v.grad(), 1e-9, 1e-11, "dropout grad v");
  // Keys and values packed as one projection.
  Tensor kv = leaf({2, 90, 2, 3, 16}, 55), kvc = kv.detach().cuda().requires_grad_();
  q.set_grad(Tensor());
  qc.set_grad(Tensor());
  Tensor pk = scaled_dot_product_attention_kv_packed(q, kv, pad, true);
  Tensor pkc = scaled_dot_product_attention_kv_packed(qc, kvc, pad.cuda(), true);
  sum(mul(pk, pk)).backward();
  sum(mul(pkc, pkc)).backward();
  expect_close(pkc.cpu(), pk, 1e-9, 1e-11, "kv-packed out");
  expect_close(qc.grad().cpu(), q.grad(), 1e-9, 1e-11, "kv-packed grad q");
  expect_close(kvc.grad().cpu(), kv.grad(), 1e-9, 1e-11, "kv-packed grad kv");
}

// ---- MultiheadAttention: fused forward() against the explicit-weights path ---------------------------------

namespace {

// forward() (fused) and forward_with_weights() (composed) on the same inputs: outputs and every gradient.
// Each path starts from the same generator state, so in training both draw the same attention dropout.
void compare_module_paths(nn::MultiheadAttention& mha, const Tensor& query, const Tensor& kv, const Tensor& mask,
                          const Tensor& pad, bool causal) {
  std::vector<Tensor> params;
  for (const auto& [name, p] : mha.named_parameters()) params.push_back(p);
  auto run = [&](bool fused) {
    Tensor x = query.detach().requires_grad_();
    Tensor y = kv.is_same(query) ? x : kv.detach().requires_grad_();
    for (Tensor& p : params) p.set_grad(Tensor());
    GeneratorStateGuard rewind(dropout_state(19));
    Tensor out = fused ? mha.forward(x, y, y, mask, pad, causal) : mha.forward_with_weights(x, y, y, mask, pad, causal).output;
    sum(mul(out, out)).backward();
    std::vector<Tensor> got{out.detach(), x.grad()};
    if (!kv.is_same(query)) got.push_back(y.grad());
    for (const Tensor& p : params) got.push_back(p.grad());
    return got;
  };
  std::vector<Tensor> fused = run(true), composed = run(false);
  ASSERT_EQ(fused.size(), composed.size());
  for (size_t i = 0; i < fused.size(); ++i) expect_close(fused[i], composed[i], 1e-10, 1e-12, "tensor " + std::to_string(i));
}

}  // namespace

TEST(AttentionModule, FusedPathMatchesExplicitWeights) {
  nn::MultiheadAttention mha(16, 4, 0.0, true, kFloat64);
  Tensor x = normal({3, 70, 16}, 61), kv = normal({3, 9, 16}, 62);
  compare_module_paths(mha, x, x, {}, {}, true);
  compare_module_paths(mha, x, x, random_mask({70, 70}, 63, 0.3), {}, false);
  Tensor pad = random_mask({3, 70}, 64, 0.2);
  pad.select(0, 2).fill_(1.0);  // a fully padded sequence
  compare_module_paths(mha, x, x, {}, pad, true);
  compare_module_paths(mha, x, kv, {}, random_mask({3, 9}, 65, 0.3), false);
  // Unbatched.
  compare_module_paths(mha, x.select(0, 0), x.select(0, 0), {}, {}, true);
  // Training with attention dropout: the fused op drops what the explicit weights' dropout drops.
  nn::MultiheadAttention dropping(16, 4, 0.25, true, kFloat64);
  dropping.train();
  compare_module_paths(dropping, x, x, {}, pad, true);
  compare_module_paths(dropping, x, kv, {}, random_mask({3, 9}, 66, 0.3), false);
}

TEST(AttentionModule, WeightsOnlyFromForwardWithWeights) {
  nn::MultiheadAttention mha(8, 2);
  Tensor x = randn({2, 5, 8});
  EXPECT_EQ(mha.forward_with_weights(x, x, x).weights.shape(), Shape({2, 2, 5, 5}));
  expect_close(mha.forward(x, x, x, {}, {}, true), mha.forward_with_weights(x, x, x, {}, {}, true).output, 1e-5,
               1e-6, "float32 module");
}

TEST(Attention, KvPackedMatchesSeparateViews) {
  // Queries against keys and values packed as one projection [B, S, 2, H, D]: the values and gradients of the
  // separate views, with a mask, causal, and with dropout from the same generator state; float64 gradcheck.
  Tensor q = leaf({2, 4, 30, 16}, 81), kv = leaf({2, 50, 2, 4, 16}, 82);
  Tensor mask = random_mask({2, 1, 30, 50}, 83, 0.2);
  for (double p : {0.0, 0.3}) {
    SCOPED_TRACE(p);
    Tensor packed, grad_q, grad_kv;
    {
      GeneratorStateGuard rewind(dropout_state(17));
      packed = scaled_dot_product_attention_kv_packed(q, kv, mask, true, 0, p);
      sum(mul(packed, packed)).backward();
      grad_q = q.grad();
      grad_kv = kv.grad();
    }
    q.set_grad(Tensor());
    kv.set_grad(Tensor());
    Tensor separate;
    {
      GeneratorStateGuard rewind(dropout_state(17));
      Tensor parts = kv.permute({2, 0, 3, 1, 4});
      separate = scaled_dot_product_attention(q, parts.select(0, 0), parts.select(0, 1), mask, true, 0, p);
      sum(mul(separate, separate)).backward();
    }
    expect_close(packed, separate, 0, 0, "kv-packed out");
    expect_close(grad_q, q.grad(), 0, 0, "kv-packed grad q");
    expect_close(grad_kv, kv.grad(), 0, 0, "kv-packed grad kv");
    q.set_grad(Tensor());
    kv.set_grad(Tensor());
  }
  Tensor small_q = leaf({2, 2, 3, 2}, 84), small_kv = leaf({2, 4, 2, 2, 2}, 85);
  EXPECT_TRUE(
      check([](const auto& in) { return scaled_dot_product_attention_kv_packed(in[0], in[1], {}, true); },
            {small_q, small_kv}));
  expect_error(
      [] {
        scaled_dot_product_attention_kv_packed(normal({2, 4, 3, 8}, 1), normal({2, 5, 2, 3, 8}, 2));
      },
      {"scaled_dot_product_attention_kv_packed", "[2, 4, 3, 8]", "[2, 5, 2, 3, 8]", "[..., S, 2, H, D]"});
}
