// multi_dim_attention and source2token (ops/multidim_attention.h): gradcheck in float64 (every direction,
// padding, rows with no allowed key, L = 1); a loop-by-loop reference; the CPU's fused kernels against the
// Backend defaults composed of ops (float32 and float64, odd sizes, both backward schedules, strided operands);
// PyTorch golden values (tests/golden/blosa/blosa.safetensors); argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "loom/loom.h"
#include "loom/ops/backend.h"
#include "support/compare.h"
#include "support/expect.h"
#include "support/golden_file.h"

using namespace loom;
using test::all_finite;
using test::expect_close;
using test::expect_error;
using test::leaf;
using test::max_abs;
using test::normal;
using test::random_mask;
using test::ThreadsGuard;

namespace {

constexpr AttentionDirection kDirections[] = {AttentionDirection::Forward, AttentionDirection::Backward,
                                              AttentionDirection::NoDiagonal, AttentionDirection::All};

bool direction_allows(AttentionDirection dir, int64_t i, int64_t j) {
  switch (dir) {
    case AttentionDirection::Forward: return j < i;
    case AttentionDirection::Backward: return j > i;
    case AttentionDirection::NoDiagonal: return j != i;
    case AttentionDirection::All: return true;
  }
  return false;
}

// The definition, one scalar at a time, on [N, L, d] float64 (padding bool [N, L] or undefined).
Tensor loop_reference(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias, AttentionDirection dir,
                      const Tensor& padding, double c, bool mask_queries) {
  const int64_t n = q.size(0), l = q.size(1), d = q.size(2);
  std::vector<double> qv = q.to_vector<double>(), kv = k.to_vector<double>(), vv = v.to_vector<double>();
  std::vector<double> bv = bias.to_vector<double>(), out(static_cast<size_t>(n * l * d), 0.0);
  std::vector<bool> pad = padding.defined() ? padding.to_vector<bool>() : std::vector<bool>(n * l, false);
  auto at = [&](int64_t b, int64_t t, int64_t f) { return static_cast<size_t>((b * l + t) * d + f); };
  for (int64_t b = 0; b < n; ++b)
    for (int64_t i = 0; i < l; ++i)
      for (int64_t f = 0; f < d; ++f) {
        double z = 0, acc = 0;
        for (int64_t j = 0; j < l; ++j) {
          bool allowed = direction_allows(dir, i, j) && !pad[static_cast<size_t>(b * l + j)] &&
                         !(mask_queries && pad[static_cast<size_t>(b * l + i)]);
          if (!allowed) continue;
          double e = std::exp(c * std::tanh((kv[at(b, j, f)] + qv[at(b, i, f)] + bv[static_cast<size_t>(f)]) / c));
          z += e;
          acc += e * vv[at(b, j, f)];
        }
        out[at(b, i, f)] = z > 0 ? acc / z : 0.0;
      }
  return tensor(out, {n, l, d});
}

}  // namespace

// ---- gradcheck ----------------------------------------------------------------------------------------------

TEST(MultiDimAttentionGradcheck, EveryDirectionWithPadding) {
  // [N, L, d] = [2, 5, 3]; sequence 1 has padding in the middle and at the end, so some rows have no allowed key
  // (the first (fw) or last (bw) valid token, padded queries when masked).
  Tensor q = leaf({2, 5, 3}, 1), k = leaf({2, 5, 3}, 2), v = leaf({2, 5, 3}, 3);
  Tensor bias = leaf({3}, 4, kFloat64, 0.5);
  Tensor w = normal({2, 5, 3}, 5);
  Tensor pad = tensor(std::vector<bool>{false, false, false, false, false, true, false, true, false, true}, {2, 5});
  for (AttentionDirection dir : kDirections)
    for (bool mask_queries : {true, false})
      for (bool padded : {false, true}) {
        SCOPED_TRACE(std::string(attention_direction_name(dir)) + (mask_queries ? " mask_queries" : "") +
                     (padded ? " padded" : ""));
        Tensor pm = padded ? pad : Tensor();
        EXPECT_TRUE(gradcheck(
            [&](const std::vector<Tensor>& in) {
              return mul(multi_dim_attention(in[0], in[1], in[2], in[3], dir, pm, 5.0, mask_queries), w);
            },
            {q, k, v, bias}));
      }
}

TEST(MultiDimAttentionGradcheck, SmallScaleLeadingDimsAndSingleToken) {
  // c = 0.7 makes the tanh saturate (scores bounded by 0.7); two leading dims; L = 1 (every row empty under a
  // direction), whose gradients must all be zero.
  Tensor q = leaf({2, 2, 3, 2}, 11, kFloat64, 2.0), k = leaf({2, 2, 3, 2}, 12, kFloat64, 2.0);
  Tensor v = leaf({2, 2, 3, 2}, 13);
  Tensor bias = leaf({2}, 14);
  Tensor pad = random_mask({2, 2, 3}, 15, 0.3);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) {
        return multi_dim_attention(in[0], in[1], in[2], in[3], AttentionDirection::Backward, pad, 0.7);
      },
      {q, k, v, bias}));
  Tensor q1 = leaf({3, 1, 4}, 16), k1 = leaf({3, 1, 4}, 17), v1 = leaf({3, 1, 4}, 18), b1 = leaf({4}, 19);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) {
        return multi_dim_attention(in[0], in[1], in[2], in[3], AttentionDirection::All);
      },
      {q1, k1, v1, b1}));
  for (AttentionDirection dir : {AttentionDirection::Forward, AttentionDirection::Backward,
                                 AttentionDirection::NoDiagonal}) {
    Tensor out = multi_dim_attention(q1, k1, v1, b1, dir);
    EXPECT_EQ(max_abs(out), 0.0);
    sum(mul(out, 3.0)).backward();
    for (const Tensor* t : {&q1, &k1, &v1, &b1}) {
      ASSERT_TRUE(t->grad().defined());
      EXPECT_EQ(max_abs(t->grad()), 0.0);
      t->set_grad(Tensor());
    }
  }
}

TEST(MultiDimAttention, RowsWithNoAllowedKeyAreExactlyZero) {
  // Sequence 0 is all padding; in sequence 1 the first valid token (fw) has no key.
  Tensor q = leaf({2, 4, 5}, 21), k = leaf({2, 4, 5}, 22), v = leaf({2, 4, 5}, 23), bias = leaf({5}, 24);
  Tensor pad = tensor(std::vector<bool>{true, true, true, true, true, false, false, true}, {2, 4});
  Tensor out = multi_dim_attention(q, k, v, bias, AttentionDirection::Forward, pad);
  EXPECT_TRUE(all_finite(out));
  EXPECT_EQ(max_abs(out.select(0, 0)), 0.0);
  EXPECT_EQ(max_abs(out.select(0, 1).narrow(0, 0, 2)), 0.0);  // token 0 is padding, token 1 has no valid key
  EXPECT_EQ(max_abs(out.select(0, 1).narrow(0, 3, 1)), 0.0);  // padded query
  EXPECT_GT(max_abs(out.select(0, 1).select(0, 2)), 0.0);     // token 2 attends to token 1
  sum(mul(out, normal({2, 4, 5}, 25))).backward();
  for (const Tensor* t : {&q, &k, &v}) {
    EXPECT_TRUE(all_finite(t->grad()));
    EXPECT_EQ(max_abs(t->grad().select(0, 0)), 0.0);
  }
  EXPECT_EQ(max_abs(q.grad().select(0, 1).narrow(0, 0, 2)), 0.0);
  EXPECT_EQ(max_abs(k.grad().select(0, 1).select(0, 0)), 0.0);  // a padding key gets nothing
  EXPECT_EQ(max_abs(v.grad().select(0, 1).select(0, 0)), 0.0);
  // Token 1 is the only key of token 2: its value gets a gradient, its key none (a softmax over one key is 1).
  EXPECT_GT(max_abs(v.grad().select(0, 1).select(0, 1)), 0.0);
  EXPECT_EQ(max_abs(k.grad().select(0, 1).select(0, 1)), 0.0);
}

TEST(MultiDimAttention, MatchesLoopReference) {
  for (AttentionDirection dir : kDirections)
    for (bool mask_queries : {true, false}) {
      SCOPED_TRACE(std::string(attention_direction_name(dir)) + (mask_queries ? " mask_queries" : ""));
      Tensor q = normal({3, 6, 5}, 31), k = normal({3, 6, 5}, 32), v = normal({3, 6, 5}, 33);
      Tensor bias = normal({5}, 34), pad = random_mask({3, 6}, 35, 0.35);
      expect_close(multi_dim_attention(q, k, v, bias, dir, pad, 2.5, mask_queries),
                   loop_reference(q, k, v, bias, dir, pad, 2.5, mask_queries), 1e-12, 1e-13, "out");
    }
}

TEST(MultiDimAttention, PaddingMaskBroadcastsAndOneTapeEntry) {
  // A [L] mask broadcast over [2, 3, L, d]; the op records exactly one entry.
  Tensor q = leaf({2, 3, 4, 2}, 41), k = leaf({2, 3, 4, 2}, 42), v = leaf({2, 3, 4, 2}, 43), b = leaf({2}, 44);
  Tensor pad = tensor(std::vector<bool>{false, true, false, false}, {4});
  autograd::TapeGuard tape;
  Tensor out = multi_dim_attention(q, k, v, b, AttentionDirection::NoDiagonal, pad);
  EXPECT_EQ(tape.tape().recorded_entries(), 1);
  Tensor full = pad.expand({2, 3, 4}).contiguous();
  NoGradGuard no_grad;
  expect_close(out, multi_dim_attention(q, k, v, b, AttentionDirection::NoDiagonal, full), 0, 0, "broadcast mask");
}

// ---- fused CPU kernels against the composed defaults ---------------------------------------------------------

namespace {

struct KernelCase {
  int64_t n, l, d;
  AttentionDirection dir;
  bool mask_queries;
  double pad_p;  // probability of a padding token (0: no mask)
};

void compare_kernel_with_default(const KernelCase& c, DType dtype, uint64_t seed, bool strided) {
  NoGradGuard no_grad;
  const std::string what = std::string(dtype_name(dtype)) + " N " + std::to_string(c.n) + " L " +
                           std::to_string(c.l) + " d " + std::to_string(c.d) + " " +
                           attention_direction_name(c.dir) + (c.mask_queries ? " mask_queries" : "") + " pad " +
                           std::to_string(c.pad_p) + (strided ? " strided" : "");
  Tensor q, k;
  if (strided) {  // column slices of one [N, L, 2d] projection, as the modules pass them
    Tensor kq = normal({c.n, c.l, 2 * c.d}, seed, dtype);
    k = kq.narrow(-1, 0, c.d);
    q = kq.narrow(-1, c.d, c.d);
  } else {
    q = normal({c.n, c.l, c.d}, seed, dtype);
    k = normal({c.n, c.l, c.d}, seed + 1, dtype);
  }
  Tensor v = normal({c.n, c.l, c.d}, seed + 2, dtype), bias = normal({c.d}, seed + 3, dtype, 0.5);
  Tensor go = normal({c.n, c.l, c.d}, seed + 4, dtype);
  Tensor pad = c.pad_p > 0 ? random_mask({c.n, c.l}, seed + 5, c.pad_p) : Tensor();
  const double cs = 5.0;
  Backend& cpu = cpu_backend();
  auto fresh = [&] { return Tensor::empty({c.n, c.l, c.d}, dtype); };
  Tensor out = fresh(), inv = fresh(), ref_out = fresh(), ref_inv = fresh();
  cpu.multi_dim_attention_forward(q, k, v, bias, pad, c.dir, cs, c.mask_queries, out, inv);
  cpu.loom::Backend::multi_dim_attention_forward(q, k, v, bias, pad, c.dir, cs, c.mask_queries, ref_out, ref_inv);
  const bool f32 = dtype == kFloat32;
  const double rtol = f32 ? 2e-5 : 1e-12, atol = f32 ? 2e-6 : 1e-13;
  expect_close(out, ref_out, rtol, atol, what + " out");
  expect_close(inv, ref_inv, rtol, atol, what + " inv_sum");
  // Both backward schedules: one task per sequence (1 thread), and the split query / key passes (more threads
  // than sequences).
  for (int threads : {1, 8}) {
    ThreadsGuard guard(threads);
    Tensor gq = fresh(), gk = fresh(), gv = fresh(), rq = fresh(), rk = fresh(), rv = fresh();
    cpu.multi_dim_attention_backward(go, q, k, v, bias, pad, c.dir, cs, c.mask_queries, out, inv, gq, gk, gv);
    cpu.loom::Backend::multi_dim_attention_backward(go, q, k, v, bias, pad, c.dir, cs, c.mask_queries, ref_out,
                                                    ref_inv, rq, rk, rv);
    const double gatol = f32 ? 2e-5 : 1e-12;
    const std::string t = what + " threads " + std::to_string(threads);
    expect_close(gq, rq, rtol, gatol, t + " grad q");
    expect_close(gk, rk, rtol, gatol, t + " grad k");
    expect_close(gv, rv, rtol, gatol, t + " grad v");
    // Only some gradients wanted: the others stay untouched (undefined), the wanted ones are the same.
    Tensor only_k = fresh();
    cpu.multi_dim_attention_backward(go, q, k, v, bias, pad, c.dir, cs, c.mask_queries, out, inv, Tensor(), only_k,
                                     Tensor());
    expect_close(only_k, gk, 0, 0, t + " grad k alone");
  }
}

}  // namespace

TEST(MultiDimAttentionKernel, MatchesDefaultAtOddSizes) {
  uint64_t seed = 100;
  for (DType dtype : {kFloat32, kFloat64})
    for (AttentionDirection dir : kDirections)
      for (KernelCase c : {KernelCase{1, 1, 1, dir, true, 0}, KernelCase{3, 5, 7, dir, true, 0.3},
                           KernelCase{2, 13, 17, dir, false, 0.25}, KernelCase{5, 7, 33, dir, true, 0.4},
                           KernelCase{1, 29, 9, dir, false, 0}, KernelCase{4, 3, 300, dir, true, 0.2}}) {
        compare_kernel_with_default(c, dtype, seed, false);
        compare_kernel_with_default(c, dtype, seed + 50, true);
        seed += 7;
      }
}

TEST(MultiDimAttentionKernel, OpReadsColumnSlicesInPlace) {
  // Gradients through q and k that are views of one packed projection equal those through separate copies.
  Tensor kq = leaf({2, 3, 4, 6}, 61), v = leaf({2, 3, 4, 3}, 62), b = leaf({3}, 63);
  Tensor pad = random_mask({2, 3, 4}, 64, 0.3);
  Tensor probe = normal({2, 3, 4, 3}, 65);
  Tensor out = multi_dim_attention(kq.narrow(-1, 3, 3), kq.narrow(-1, 0, 3), v, b, AttentionDirection::Forward, pad);
  sum(mul(out, probe)).backward();
  Tensor kq2 = kq.detach().clone().requires_grad_();
  Tensor q2 = kq2.narrow(-1, 3, 3).contiguous(), k2 = kq2.narrow(-1, 0, 3).contiguous();
  Tensor out2 = multi_dim_attention(q2, k2, v.detach(), b.detach(), AttentionDirection::Forward, pad);
  sum(mul(out2, probe)).backward();
  expect_close(out, out2, 0, 0, "out");
  expect_close(kq.grad(), kq2.grad(), 1e-14, 1e-15, "grad of the packed projection");
}

// ---- source2token -------------------------------------------------------------------------------------------

TEST(Source2Token, GradcheckWithPaddingAndAnEmptyRow) {
  Tensor s = leaf({3, 4, 2}, 71, kFloat64, 2.0), x = leaf({3, 4, 2}, 72);
  Tensor pad = tensor(std::vector<bool>{false, false, false, false, false, true, false, true, true, true, true, true},
                      {3, 4});
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return source2token(in[0], in[1], pad); }, {s, x}));
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return source2token(in[0], in[1]); }, {s, x}));
  Tensor out = source2token(s, x, pad);
  EXPECT_EQ(max_abs(out.select(0, 2)), 0.0);
  sum(out).backward();
  EXPECT_TRUE(all_finite(s.grad()) && all_finite(x.grad()));
  EXPECT_EQ(max_abs(s.grad().select(0, 2)), 0.0);
  EXPECT_EQ(max_abs(x.grad().select(0, 2)), 0.0);
  EXPECT_EQ(max_abs(x.grad().select(0, 1).select(0, 1)), 0.0);  // a padded position gets no weight
}

TEST(Source2Token, LargeScoresAreStable) {
  // Unlike the token2token scores, these are unbounded: the masked softmax must shift them.
  NoGradGuard no_grad;
  Tensor s = tensor(std::vector<double>{1000, 0, -1000, 999}, {4, 1});
  Tensor x = tensor(std::vector<double>{1, 2, 3, 4}, {4, 1});
  Tensor out = source2token(s, x);
  const double e = std::exp(-1.0);
  EXPECT_NEAR(out.item<double>(), (1 + 4 * e) / (1 + e), 1e-12);
}

// ---- PyTorch golden values ----------------------------------------------------------------------------------

namespace {

constexpr const char* kGoldenFile = "blosa/blosa.safetensors";

Tensor golden(const std::string& key) { return test::golden_tensor(kGoldenFile, key); }
std::string setting(const std::string& name, const std::string& key) {
  return test::golden_setting(kGoldenFile, name, key);
}

AttentionDirection parse_direction(const std::string& s) {
  for (AttentionDirection d : kDirections)
    if (s == attention_direction_name(d)) return d;
  throw Error("unknown direction " + s);
}

}  // namespace

TEST(MultiDimAttentionGolden, ForwardAndBackwardMatchPyTorch) {
  EXPECT_EQ(test::golden_file(kGoldenFile).metadata.at("torch_version").substr(0, 4), "1.13");
  int cases = 0;
  for (const auto& [name, _] : test::golden_file(kGoldenFile).metadata) {
    if (name.rfind("mda_", 0) != 0) continue;
    ++cases;
    SCOPED_TRACE(name);
    const AttentionDirection dir = parse_direction(setting(name, "direction"));
    const bool mask_queries = setting(name, "mask_queries") == "1";
    for (DType dtype : {kFloat64, kFloat32}) {
      const bool f32 = dtype == kFloat32;
      auto in = [&](const char* key) { return golden(name + "/" + key).to(dtype).detach().requires_grad_(); };
      Tensor q = in("q"), k = in("k"), v = in("v"), bias = in("bias");
      Tensor out = multi_dim_attention(q, k, v, bias, dir, golden(name + "/padding"), 5.0, mask_queries);
      sum(mul(out, golden(name + "/probe").to(dtype))).backward();
      const double rtol = f32 ? 1e-5 : 1e-11, atol = f32 ? 1e-5 : 1e-12;
      auto want = [&](const std::string& key) { return golden(name + "/" + key).to(dtype); };
      expect_close(out, want("output"), rtol, atol, std::string(dtype_name(dtype)) + " output");
      expect_close(q.grad(), want("grad/q"), rtol, atol, "grad q");
      expect_close(k.grad(), want("grad/k"), rtol, atol, "grad k");
      expect_close(v.grad(), want("grad/v"), rtol, atol, "grad v");
      expect_close(bias.grad(), want("grad/bias"), rtol, f32 ? 1e-4 : 1e-11, "grad bias");
    }
  }
  EXPECT_EQ(cases, 5);
}

TEST(Source2TokenGolden, ForwardAndBackwardMatchPyTorch) {
  const std::string name = "s2t_op";
  Tensor s = golden(name + "/scores").detach().requires_grad_(), x = golden(name + "/values").detach().requires_grad_();
  Tensor out = source2token(s, x, golden(name + "/padding"));
  sum(mul(out, golden(name + "/probe"))).backward();
  expect_close(out, golden(name + "/output"), 1e-12, 1e-13, "output");
  expect_close(s.grad(), golden(name + "/grad/scores"), 1e-11, 1e-12, "grad scores");
  expect_close(x.grad(), golden(name + "/grad/values"), 1e-11, 1e-12, "grad values");
}

// ---- errors -------------------------------------------------------------------------------------------------

TEST(MultiDimAttention, ArgumentErrors) {
  Tensor q = normal({2, 3, 4}, 81), b = normal({4}, 82);
  const auto fw = AttentionDirection::Forward;
  expect_error([&] { multi_dim_attention(q, normal({2, 4, 4}, 83), q, b, fw); },
               {"multi_dim_attention", "one shape", "[2, 3, 4]", "[2, 4, 4]"});
  expect_error([&] { multi_dim_attention(normal({4}, 84), normal({4}, 84), normal({4}, 84), b, fw); },
               {"multi_dim_attention", "one shape [..., L, d]"});
  expect_error([&] { multi_dim_attention(q, q, q, normal({3}, 85), fw); }, {"bias must have shape [4]", "[3]"});
  expect_error([&] { multi_dim_attention(q, q, q, b, fw, Tensor(), 0.0); }, {"c must lie in (0, 40]", "got 0"});
  expect_error([&] { multi_dim_attention(q, q, q, b, fw, Tensor(), 41.0); }, {"c must lie in (0, 40]"});
  expect_error([&] { multi_dim_attention(q, q, q, b, fw, zeros({2, 3})); },
               {"padding_mask must be bool", "float32"});
  expect_error([&] { multi_dim_attention(q, q, q, b, fw, zeros({2, 4}, kBool)); },
               {"padding_mask of shape [2, 4] cannot be broadcast to [..., L] = [2, 3]"});
  expect_error([&] { multi_dim_attention(q, q.to(kFloat32), q, b, fw); }, {"k is", "but q is"});
  expect_error([&] { multi_dim_attention(q, q, q, b.to(kFloat32), fw); }, {"bias is", "float32"});
  expect_error([&] { multi_dim_attention(zeros({2, 3}, kInt64), q, q, b, fw); }, {"expected floating q"});
  expect_error([&] { multi_dim_attention(q, q, q, b, static_cast<AttentionDirection>(9)); }, {"invalid direction 9"});
}

TEST(Source2Token, ArgumentErrors) {
  Tensor s = normal({2, 3, 4}, 91);
  expect_error([&] { source2token(s, normal({2, 3, 5}, 92)); },
               {"source2token", "one shape [..., n, d]", "[2, 3, 4]", "[2, 3, 5]"});
  expect_error([&] { source2token(s, s.to(kFloat32)); }, {"source2token", "one dtype"});
  expect_error([&] { source2token(s, s, zeros({2, 3})); }, {"padding_mask must be bool"});
  expect_error([&] { source2token(s, s, zeros({3, 3}, kBool)); },
               {"padding_mask of shape [3, 3] cannot be broadcast to [..., n] = [2, 3]"});
  expect_error([&] { source2token(normal({4}, 93), normal({4}, 93)); }, {"one shape [..., n, d]"});
}
