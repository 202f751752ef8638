// lsh_attention (ops/lsh_attention.h), the Reformer correctness checks: an explicit per-query
// reference written from the definition (sort, circular look-adjacent, masks, duplicate counts, round
// weights); full coverage equals dense shared-QK attention for any rotations; duplicate keys; constant
// buckets equal local attention with look-back and wrap; identical rounds; causal exactness (bit-identical
// outputs, zero Jacobian block); padding invariance; determinism and bucket replay; float64 gradcheck with
// buckets frozen; the fused CPU kernels against the Backend defaults; PyTorch golden values; argument errors;
// O(L) peak memory.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "loom/loom.h"
#include "loom/nn/safetensors.h"
#include "loom/ops/backend.h"
#include "support/compare.h"
#include "support/expect.h"

using namespace loom;
using test::expect_close;
using test::expect_error;
using test::identical;
using test::normal;

namespace {

LshAttentionOptions options(int64_t c, int64_t before, int64_t after, int64_t nr, std::vector<int64_t> nb,
                            bool causal = false, uint64_t seed = 1) {
  LshAttentionOptions o;
  o.chunk_len = c;
  o.n_chunks_before = before;
  o.n_chunks_after = after;
  o.n_hashes = nr;
  o.n_buckets = std::move(nb);
  o.causal = causal;
  o.seed = seed;
  o.has_seed = true;
  o.dense_when_short = false;
  return o;
}

// ---- references, element by element in float64 ----------------------------------------------------------

struct Problem {
  int64_t b, h, l, d, dv;
  std::vector<double> qk, v;  // [B, H, L, d], [B, H, L, dv]
  std::vector<char> pad;      // [B, L] (empty = none)
  Problem(const Tensor& qk_, const Tensor& v_, const Tensor& pad_)
      : b(qk_.size(0)), h(qk_.size(1)), l(qk_.size(2)), d(qk_.size(3)), dv(v_.size(3)) {
    Tensor q64 = qk_.to(kFloat64).contiguous(), v64 = v_.to(kFloat64).contiguous();
    qk.assign(q64.data<double>(), q64.data<double>() + q64.numel());
    v.assign(v64.data<double>(), v64.data<double>() + v64.numel());
    if (pad_.defined()) {
      Tensor p = pad_.contiguous();
      for (int64_t i = 0; i < p.numel(); ++i) pad.push_back(p.data<bool>()[i] ? 1 : 0);
    }
  }
  const double* q_at(int64_t g, int64_t t) const { return qk.data() + (g * l + t) * d; }
  const double* v_at(int64_t g, int64_t t) const { return v.data() + (g * l + t) * dv; }
  bool padded(int64_t g, int64_t t) const {
    return !pad.empty() && pad[static_cast<size_t>((g / h) * l + t)];
  }
  // q_i . k_j with k = q / sqrt(mean(q^2) + 1e-6) / sqrt(d), minus 1e5 on the diagonal.
  double logit(int64_t g, int64_t i, int64_t j) const {
    const double* qi = q_at(g, i);
    const double* qj = q_at(g, j);
    double ss = 0, dot = 0;
    for (int64_t k = 0; k < d; ++k) ss += qj[k] * qj[k], dot += qi[k] * qj[k];
    double s = dot / std::sqrt(ss / static_cast<double>(d) + 1e-6) / std::sqrt(static_cast<double>(d));
    return i == j ? s - 1e5 : s;
  }
  bool masked(int64_t g, int64_t i, int64_t j, bool causal) const {
    return padded(g, j) || (causal && j > i);
  }
  // softmax over `keys` (with multiplicity and optional per-key bias) of the masked logits, times v: out row
  // and lse.
  void attend(int64_t g, int64_t i, const std::vector<int64_t>& keys, const std::vector<double>& bias,
              bool causal, double* out, double* lse) const {
    std::vector<double> s(keys.size());
    for (size_t e = 0; e < keys.size(); ++e) {
      s[e] = logit(g, i, keys[e]) - (bias.empty() ? 0.0 : bias[e]);
      if (masked(g, i, keys[e], causal)) s[e] = -1e9;
    }
    double mx = *std::max_element(s.begin(), s.end()), z = 0;
    for (double x : s) z += std::exp(x - mx);
    std::fill(out, out + dv, 0.0);
    for (size_t e = 0; e < keys.size(); ++e) {
      double p = std::exp(s[e] - mx) / z;
      const double* vj = v_at(g, keys[e]);
      for (int64_t k = 0; k < dv; ++k) out[k] += p * vj[k];
    }
    *lse = mx + std::log(z);
  }
};

Tensor to_tensor(const std::vector<double>& x, Shape shape) { return tensor(x, shape); }

// Dense shared-QK attention over the whole sequence with the self-mask (every key once).
Tensor dense_reference(const Tensor& qk, const Tensor& v, bool causal, const Tensor& pad = Tensor()) {
  Problem p(qk, v, pad);
  std::vector<double> out(static_cast<size_t>(p.b * p.h * p.l * p.dv));
  std::vector<int64_t> all(static_cast<size_t>(p.l));
  std::iota(all.begin(), all.end(), 0);
  double lse;
  for (int64_t g = 0; g < p.b * p.h; ++g)
    for (int64_t i = 0; i < p.l; ++i)
      p.attend(g, i, all, {}, causal, out.data() + (g * p.l + i) * p.dv, &lse);
  return to_tensor(out, {p.b, p.h, p.l, p.dv});
}

// LSH attention from its definition, given the buckets [B, H, nr, L]: each round's positions sorted by
// (bucket, position), rounds laid end to end, query copy n sees the C rows of chunks (n / C + o) mod n_ch, o
// = -P..A; optional -log N_ij; the copies combined with weights softmax(lse).
Tensor lsh_reference(const Tensor& qk, const Tensor& v, const Tensor& buckets, const LshAttentionOptions& o,
                     const Tensor& pad = Tensor()) {
  Problem p(qk, v, pad);
  const int64_t nr = buckets.size(2), l = p.l, n = nr * l, c = o.chunk_len, n_ch = n / c;
  Tensor bk = buckets.contiguous();
  std::vector<double> out(static_cast<size_t>(p.b * p.h * l * p.dv), 0.0);
  for (int64_t g = 0; g < p.b * p.h; ++g) {
    std::vector<int64_t> pos(static_cast<size_t>(n)),
        row_of(static_cast<size_t>(n));  // sorted row -> position
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t* br = bk.data<int64_t>() + (g * nr + r) * l;
      std::vector<int64_t> order(static_cast<size_t>(l));
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(),
                [&](int64_t x, int64_t y) { return br[x] != br[y] ? br[x] < br[y] : x < y; });
      for (int64_t k = 0; k < l; ++k) pos[static_cast<size_t>(r * l + k)] = order[static_cast<size_t>(k)];
    }
    auto window = [&](int64_t row) {
      std::vector<int64_t> keys;
      for (int64_t off = -o.n_chunks_before; off <= o.n_chunks_after; ++off) {
        int64_t cj = ((row / c + off) % n_ch + n_ch) % n_ch;
        for (int64_t e = 0; e < c; ++e) keys.push_back(pos[static_cast<size_t>(cj * c + e)]);
      }
      return keys;
    };
    std::vector<std::vector<int64_t>> copies(static_cast<size_t>(l));  // sorted rows of each position
    for (int64_t row = 0; row < n; ++row)
      copies[static_cast<size_t>(pos[static_cast<size_t>(row)])].push_back(row);
    for (int64_t i = 0; i < l; ++i) {
      std::vector<int64_t> count(static_cast<size_t>(l), 0);
      for (int64_t row : copies[static_cast<size_t>(i)])
        for (int64_t j : window(row)) ++count[static_cast<size_t>(j)];
      std::vector<std::vector<double>> outs;
      std::vector<double> lses;
      for (int64_t row : copies[static_cast<size_t>(i)]) {
        std::vector<int64_t> keys = window(row);
        std::vector<double> bias;
        if (!o.allow_duplicate_attention)
          for (int64_t j : keys) bias.push_back(std::log(static_cast<double>(count[static_cast<size_t>(j)])));
        outs.emplace_back(static_cast<size_t>(p.dv));
        lses.push_back(0);
        p.attend(g, i, keys, bias, o.causal, outs.back().data(), &lses.back());
      }
      double mx = *std::max_element(lses.begin(), lses.end()), z = 0;
      for (double x : lses) z += std::exp(x - mx);
      double* oi = out.data() + (g * l + i) * p.dv;
      for (size_t r = 0; r < outs.size(); ++r)
        for (int64_t k = 0; k < p.dv; ++k)
          oi[k] += std::exp(lses[r] - mx) / z * outs[r][static_cast<size_t>(k)];
    }
  }
  return to_tensor(out, {p.b, p.h, l, p.dv});
}

}  // namespace

// ---- forward semantics
// ---------------------------------------------------------------------------------------

TEST(LshAttention, MatchesTheExplicitDefinition) {
  const int64_t b = 2, h = 2, l = 24, d = 5;
  Tensor qk = normal({b, h, l, d}, 1), v = normal({b, h, l, 3}, 2);
  Tensor pad = lt(rand({b, l}, PhiloxState{3, 0}), 0.2);
  struct Case {
    int64_t c, before, after, nr;
    std::vector<int64_t> nb;
    bool causal, dup, padded;
  };
  for (const Case& k : std::vector<Case>{{4, 1, 0, 1, {6}, false, true, false},
                                         {4, 1, 0, 2, {6}, false, true, false},
                                         {4, 1, 1, 3, {4, 2}, false, true, true},
                                         {6, 2, 0, 2, {4}, true, true, false},
                                         {4, 1, 0, 2, {6}, true, false, true},
                                         {8, 1, 0, 3, {2}, false, false, false},
                                         {3, 2, 1, 2, {8}, false, false, true},
                                         {24, 1, 0, 1, {2}, false, false, false}}) {
    LshAttentionOptions o =
        options(k.c, k.before, k.after, k.nr, k.nb, k.causal, 7 + static_cast<uint64_t>(k.c));
    o.allow_duplicate_attention = k.dup;
    Tensor pm = k.padded ? pad : Tensor();
    LshAttentionResult r = lsh_attention(qk, v, o, pm);
    ASSERT_EQ(r.buckets.shape(), Shape({b, h, k.nr, l}));
    std::string what = "C " + std::to_string(k.c) + " P " + std::to_string(k.before) + " A " +
                       std::to_string(k.after) + " nr " + std::to_string(k.nr) + (k.causal ? " causal" : "") +
                       (k.dup ? "" : " no-dup") + (k.padded ? " padded" : "");
    expect_close(r.out, lsh_reference(qk, v, r.buckets, o, pm), 1e-10, 1e-12, what);
  }
}

TEST(LshAttention, FullCoverageEqualsDenseForAnyRotations) {
  const int64_t l = 16;
  Tensor qk = normal({2, 3, l, 4}, 11), v = normal({2, 3, l, 4}, 12);
  Tensor pad = lt(rand({2, l}, PhiloxState{13, 0}), 0.25);
  for (bool causal : {false, true})
    for (uint64_t seed : {1, 2, 3}) {
      Tensor want = dense_reference(qk, v, causal);
      // C = L, P = A = 0: one chunk holds every position in every round.
      for (int64_t nr : {1, 2, 3})
        expect_close(lsh_attention(qk, v, options(l, 0, 0, nr, {8}, causal, seed)).out, want, 1e-10, 1e-12,
                     "C = L, nr " + std::to_string(nr));
      // nr = 1, C = L / 2, P = 1: the two chunks see each other (wrap-around).
      expect_close(lsh_attention(qk, v, options(l / 2, 1, 0, 1, {4, 2}, causal, seed)).out, want, 1e-10,
                   1e-12, "C = L / 2, P = 1");
      // Duplicate keys: C = L with P = 1 sees every key twice; the output does not change (lse rises by log
      // 2).
      expect_close(lsh_attention(qk, v, options(l, 1, 0, 1, {8}, causal, seed)).out, want, 1e-10, 1e-12,
                   "C = L, P = 1");
      LshAttentionOptions nodup = options(l, 1, 1, 2, {8}, causal, seed);
      nodup.allow_duplicate_attention = false;
      expect_close(lsh_attention(qk, v, nodup).out, want, 1e-10, 1e-12,
                   "C = L, P = A = 1, nr 2, no duplicates");
      Tensor pwant = dense_reference(qk, v, causal, pad);
      expect_close(lsh_attention(qk, v, options(l, 0, 0, 2, {4}, causal, seed), pad).out, pwant, 1e-10, 1e-12,
                   "C = L, padding");
    }
}

TEST(LshAttention, DenseWhenShort) {
  Tensor qk = normal({1, 2, 10, 4}, 21), v = normal({1, 2, 10, 4}, 22);
  Tensor pad =
      tensor(std::vector<bool>{false, false, false, false, false, false, false, true, true, true}, {1, 10});
  LshAttentionOptions o;  // chunk_len 64 > L: the dense path, L % C need not be 0
  o.causal = true;
  LshAttentionResult r = lsh_attention(qk, v, o, pad);
  EXPECT_FALSE(r.buckets.defined());
  expect_close(r.out, dense_reference(qk, v, true, pad), 1e-10, 1e-12, "dense path");
  o.causal = false;
  expect_close(lsh_attention(qk, v, o).out, dense_reference(qk, v, false), 1e-10, 1e-12,
               "dense path, not causal");
}

TEST(LshAttention, ConstantBucketsEqualLocalAttentionWithLookBackAndWrap) {
  const int64_t l = 20, c = 4, n_ch = l / c;
  Tensor qk = normal({1, 2, l, 3}, 31), v = normal({1, 2, l, 2}, 32);
  Tensor buckets = zeros({1, 2, 1, l}, DType::Int64);
  LshAttentionOptions o = options(c, 1, 0, 1, {4});
  Tensor got = lsh_attention(qk, v, o, Tensor(), buckets).out;
  // Local shared-QK attention: query t in chunk k sees chunks k - 1 (mod n_ch) and k.
  Problem p(qk, v, Tensor());
  std::vector<double> want(static_cast<size_t>(2 * l * 2));
  for (int64_t g = 0; g < 2; ++g)
    for (int64_t t = 0; t < l; ++t) {
      std::vector<int64_t> keys;
      for (int64_t off : {-1, 0})
        for (int64_t e = 0; e < c; ++e) keys.push_back(((t / c + off + n_ch) % n_ch) * c + e);
      double lse;
      p.attend(g, t, keys, {}, false, want.data() + (g * l + t) * 2, &lse);
    }
  expect_close(got, to_tensor(want, {1, 2, l, 2}), 1e-10, 1e-12, "constant buckets");
}

TEST(LshAttention, IdenticalRoundsGiveTheOneRoundOutput) {
  const int64_t l = 16;
  Tensor qk = normal({2, 2, l, 4}, 41), v = normal({2, 2, l, 4}, 42);
  LshAttentionResult one = lsh_attention(qk, v, options(4, 1, 0, 1, {8}, false, 5));
  Tensor twice = cat({one.buckets, one.buckets}, 2);
  for (bool causal : {false, true}) {
    Tensor want = lsh_attention(qk, v, options(4, 1, 0, 1, {8}, causal), Tensor(), one.buckets).out;
    Tensor got = lsh_attention(qk, v, options(4, 1, 0, 2, {8}, causal), Tensor(), twice).out;
    expect_close(got, want, 1e-12, 1e-13, causal ? "causal" : "not causal");
  }
}

TEST(LshAttention, CausalIsExact) {
  const int64_t l = 24, j = 13;
  for (DType dt : {kFloat32, kFloat64}) {
    Tensor qk = normal({1, 2, l, 4}, 51, dt), v = normal({1, 2, l, 4}, 52, dt);
    LshAttentionOptions o = options(4, 1, 0, 2, {4}, true, 3);
    LshAttentionResult base = lsh_attention(qk, v, o);
    // Perturb every position after j: outputs up to j stay bit-identical for the same hashing.
    Tensor later = gt(arange(static_cast<double>(l)), static_cast<double>(j)).view({1, 1, l, 1});
    Tensor qk2 = add(qk, mul(normal({1, 2, l, 4}, 53, dt), later.to(dt)));
    Tensor v2 = add(v, mul(normal({1, 2, l, 4}, 54, dt), later.to(dt)));
    Tensor out2 = lsh_attention(qk2, v2, o, Tensor(), base.buckets).out;
    EXPECT_TRUE(identical(base.out.narrow(2, 0, j + 1), out2.narrow(2, 0, j + 1)));
    EXPECT_FALSE(identical(base.out.narrow(2, j + 1, l - j - 1), out2.narrow(2, j + 1, l - j - 1)));
    // Position 0 can only attend to itself.
    EXPECT_TRUE(identical(base.out.narrow(2, 0, 1), v.narrow(2, 0, 1)));
    // The Jacobian block d out[<= j] / d input[> j] is exactly zero.
    Tensor q_leaf = qk.detach().requires_grad_(), v_leaf = v.detach().requires_grad_();
    Tensor out = lsh_attention(q_leaf, v_leaf, o, Tensor(), base.buckets).out;
    sum(mul(out.narrow(2, 0, j + 1), normal({1, 2, j + 1, 4}, 55, dt))).backward();
    EXPECT_TRUE(identical(q_leaf.grad().narrow(2, j + 1, l - j - 1), zeros({1, 2, l - j - 1, 4}, dt)));
    EXPECT_TRUE(identical(v_leaf.grad().narrow(2, j + 1, l - j - 1), zeros({1, 2, l - j - 1, 4}, dt)));
    EXPECT_FALSE(identical(q_leaf.grad().narrow(2, 0, j + 1), zeros({1, 2, j + 1, 4}, dt)));
  }
}

TEST(LshAttention, PaddingInvariance) {
  const int64_t l = 24, keep = 17;
  Tensor qk = normal({2, 2, l, 4}, 61), v = normal({2, 2, l, 4}, 62);
  Tensor pad =
      ge(arange(static_cast<double>(l)), static_cast<double>(keep)).view({1, l}).expand({2, l}).contiguous();
  Tensor tail = pad.view({2, 1, l, 1}).to(kFloat64);
  Tensor qk2 = add(qk, mul(normal({2, 2, l, 4}, 63), tail)), v2 = add(v, mul(normal({2, 2, l, 4}, 64), tail));
  for (bool causal : {false, true}) {
    LshAttentionOptions o = options(4, 1, 0, 2, {4}, causal, 9);
    LshAttentionResult a = lsh_attention(qk, v, o, pad), b = lsh_attention(qk2, v2, o, pad);
    EXPECT_TRUE(identical(a.buckets, b.buckets));
    EXPECT_TRUE(loom::all(eq(a.buckets.narrow(3, keep, l - keep), 4.0)).item<bool>());  // the extra bucket
    expect_close(b.out.narrow(2, 0, keep), a.out.narrow(2, 0, keep), 1e-6, 1e-6, "unpadded outputs");
    EXPECT_FALSE(identical(b.out.narrow(2, keep, l - keep), a.out.narrow(2, keep, l - keep)));
  }
}

TEST(LshAttention, SeedsAndReplay) {
  Tensor qk = normal({2, 2, 32, 8}, 71, kFloat32), v = normal({2, 2, 32, 8}, 72, kFloat32);
  LshAttentionOptions o = options(8, 1, 0, 2, {8}, false, 123);
  LshAttentionResult a = lsh_attention(qk, v, o);
  for (int run = 0; run < 10; ++run) {
    LshAttentionResult b = lsh_attention(qk, v, o);
    EXPECT_TRUE(identical(a.out, b.out) && identical(a.buckets, b.buckets));
  }
  LshAttentionResult c = lsh_attention(qk, v, options(8, 1, 0, 2, {8}, false, 124));
  EXPECT_FALSE(identical(a.buckets, c.buckets));
  EXPECT_FALSE(identical(a.out, c.out));
  // Replaying a's buckets under another seed reproduces a.
  EXPECT_TRUE(
      identical(lsh_attention(qk, v, options(8, 1, 0, 2, {8}, false, 999), Tensor(), a.buckets).out, a.out));
  // The buckets are lsh_hash under the per-head rotations drawn at (seed, 0).
  EXPECT_TRUE(identical(a.buckets, lsh_hash(qk, lsh_rotations(8, 2, {8}, 123, 0, kFloat32, 2), {8})));
  // Without a seed, two calls draw different rotations from the default generator.
  LshAttentionOptions fresh = o;
  fresh.has_seed = false;
  manual_seed(5);
  Tensor f1 = lsh_attention(qk, v, fresh).buckets, f2 = lsh_attention(qk, v, fresh).buckets;
  EXPECT_FALSE(identical(f1, f2));
  manual_seed(5);
  EXPECT_TRUE(identical(lsh_attention(qk, v, fresh).buckets, f1));
}

// ---- gradients
// -------------------------------------------------------------------------------------------------

TEST(LshAttentionGradcheck, BucketsFrozen) {
  const int64_t l = 8;
  Tensor qk = normal({1, 2, l, 3}, 81), v = normal({1, 2, l, 2}, 82);
  Tensor pad = tensor(std::vector<bool>{false, false, false, false, false, false, true, true}, {1, l});
  struct Case {
    int64_t c, before, after, nr;
    bool causal, dup, padded;
  };
  for (const Case& k : std::vector<Case>{{4, 1, 0, 1, false, true, false},
                                         {4, 1, 0, 2, false, true, false},
                                         {4, 1, 0, 2, true, true, false},
                                         {2, 1, 1, 2, false, true, true},
                                         {2, 2, 0, 3, true, true, true},
                                         {4, 1, 0, 2, false, false, true}}) {
    LshAttentionOptions o = options(k.c, k.before, k.after, k.nr, {4}, k.causal, 17);
    o.allow_duplicate_attention = k.dup;
    Tensor pm = k.padded ? pad : Tensor();
    Tensor buckets = lsh_attention(qk, v, o, pm).buckets;
    Tensor probe = normal({1, 2, l, 2}, 83);
    SCOPED_TRACE("C " + std::to_string(k.c) + " nr " + std::to_string(k.nr) + (k.causal ? " causal" : "") +
                 (k.padded ? " padded" : "") + (k.dup ? "" : " no-dup"));
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) {
          return mul(lsh_attention(in[0], in[1], o, pm, buckets).out, probe);
        },
        {qk.detach().requires_grad_(), v.detach().requires_grad_()}));
  }
  // Padding at the front with causal masks: padded queries sort to the end and look back at later keys only,
  // so some rows have every key masked (uniform weights over constant logits, no gradient through them).
  Tensor front = tensor(std::vector<bool>{true, true, false, false, false, false, false, false}, {1, l});
  for (int64_t nr : {1, 2}) {
    LshAttentionOptions o = options(2, 1, 0, nr, {4}, true, 19);
    Tensor buckets = lsh_attention(qk, v, o, front).buckets;
    SCOPED_TRACE("front padding, nr " + std::to_string(nr));
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) { return lsh_attention(in[0], in[1], o, front, buckets).out; },
        {qk.detach().requires_grad_(), v.detach().requires_grad_()}));
  }
  // The dense path (L <= chunk_len) has the same backward.
  LshAttentionOptions dense;
  dense.causal = true;
  EXPECT_TRUE(
      gradcheck([&](const std::vector<Tensor>& in) { return lsh_attention(in[0], in[1], dense, pad).out; },
                {qk.detach().requires_grad_(), v.detach().requires_grad_()}));
}

// The fused CPU kernels against the Backend defaults composed of ops, on arbitrary sorted layouts (each round
// a random permutation), with padding, causal masks and a duplicate bias, in float32 and float64.
TEST(LshAttentionKernels, FusedCpuMatchesBackendDefault) {
  Backend& cpu = cpu_backend();
  struct Case {
    int64_t b, h, l, nr, d, dv, c, before, after;
    bool causal, padded, bias;
  };
  for (DType dt : {kFloat32, kFloat64})
    for (const Case& k : std::vector<Case>{{2, 3, 32, 2, 8, 8, 8, 1, 0, false, false, false},
                                           {1, 2, 48, 3, 16, 5, 16, 1, 0, true, true, true},
                                           {2, 1, 24, 1, 4, 4, 4, 2, 1, true, true, false},
                                           {1, 1, 16, 2, 8, 8, 16, 1, 1, false, true, true},
                                           {1, 1, 64, 1, 64, 64, 64, 1, 0, false, false, false}}) {
      const int64_t n = k.nr * k.l, w = (k.before + 1 + k.after) * k.c;
      Tensor sqk = normal({k.b, k.h, n, k.d}, 91, dt), sv = normal({k.b, k.h, n, k.dv}, 92, dt);
      Tensor spos = argsort(rand({k.b, k.h, k.nr, k.l}, PhiloxState{93, 0}), -1).reshape({k.b, k.h, n});
      Tensor pad = k.padded ? lt(rand({k.b, k.l}, PhiloxState{94, 0}), 0.3) : Tensor();
      Tensor bias = k.bias ? mul(rand({k.b, k.h, n, w}, PhiloxState{95, 0}, dt), 2.0) : Tensor();
      Backend::LshChunks ch{k.c, k.before, k.after, k.causal};
      auto empty_as = [](const Tensor& t) { return Tensor::empty(t.shape(), t.options()); };
      Tensor out = Tensor::empty({k.b, k.h, n, k.dv}, sqk.options()),
             lse = Tensor::empty({k.b, k.h, n}, sqk.options());
      Tensor out_ref = empty_as(out), lse_ref = empty_as(lse);
      cpu.lsh_attention_forward(sqk, sv, spos, pad, bias, ch, out, lse);
      cpu.Backend::lsh_attention_forward(sqk, sv, spos, pad, bias, ch, out_ref, lse_ref);
      const double rtol = dt == kFloat32 ? 2e-5 : 1e-11, atol = dt == kFloat32 ? 2e-5 : 1e-12;
      std::string what =
          std::string(dtype_name(dt)) + " L " + std::to_string(k.l) + " C " + std::to_string(k.c);
      expect_close(out, out_ref, rtol, atol, what + " out");
      expect_close(lse, lse_ref, rtol, atol, what + " lse");
      Tensor go = normal(out.shape(), 96, dt), gl = normal(lse.shape(), 97, dt);
      for (bool with_lse : {false, true}) {
        Tensor gq = empty_as(sqk), gv = empty_as(sv), gq_ref = empty_as(sqk), gv_ref = empty_as(sv);
        Tensor g_l = with_lse ? gl : Tensor();
        cpu.lsh_attention_backward(go, g_l, sqk, sv, spos, pad, bias, ch, out, gq, gv);
        cpu.Backend::lsh_attention_backward(go, g_l, sqk, sv, spos, pad, bias, ch, out_ref, gq_ref, gv_ref);
        expect_close(gq, gq_ref, rtol * 10, atol * 10, what + " grad_qk");
        expect_close(gv, gv_ref, rtol * 10, atol * 10, what + " grad_v");
      }
    }
}

// Blocks of (batch, head) pairs bound the op's transient memory and change nothing: one pair per block, two
// heads then one of each batch, and whole batches give the outputs and gradients of one block for all, with
// padding that differs between the batches, causal masks and 2 rounds. (With several blocks the backward reruns
// each block's forward kernel instead of reading saved outputs: the gradients must still match bit for bit.)
TEST(LshAttention, BlocksOfHeadsChangeNothing) {
  const int64_t b = 2, h = 3, l = 32, nr = 2;
  Tensor qk = normal({b, h, l, 6}, 111), v = normal({b, h, l, 5}, 112), probe = normal({b, h, l, 5}, 113);
  std::vector<bool> pad_values(static_cast<size_t>(b * l), false);
  for (int64_t t = l - 5; t < l; ++t) pad_values[static_cast<size_t>(l + t)] = true;  // batch 1's tail
  Tensor pad = tensor(pad_values, {b, l});
  auto run = [&](int64_t block_rows, bool dense) {
    LshAttentionOptions o = dense ? options(l, 0, 0, 1, {}, true, 8) : options(4, 1, 0, nr, {8}, true, 8);
    o.block_rows = block_rows;
    Tensor q = qk.detach().requires_grad_(), vv = v.detach().requires_grad_();
    LshAttentionResult r = lsh_attention(q, vv, o, pad);
    sum(mul(r.out, probe)).backward();
    return std::vector<Tensor>{r.out, q.grad(), vv.grad()};
  };
  for (bool dense : {false, true}) {
    const int64_t n = dense ? l : nr * l;
    std::vector<Tensor> want = run(b * h * n, dense);
    for (int64_t rows : {int64_t{1}, n, 2 * n, 3 * n}) {
      std::vector<Tensor> got = run(rows, dense);
      for (size_t i = 0; i < want.size(); ++i)
        EXPECT_TRUE(identical(got[i], want[i])) << (dense ? "dense " : "lsh ") << rows << " rows, tensor " << i;
    }
  }
  LshAttentionOptions bad = options(4, 1, 0, nr, {8});
  bad.block_rows = 0;
  expect_error([&] { lsh_attention(qk, v, bad); }, {"lsh_attention", "block_rows must be positive, got 0"});
}

// The backward's tasks of one pass have disjoint windows and add into the rows of those windows in a fixed
// order, so the thread count changes nothing: with one chunk of look-back (span 2 divides the 16 chunks, two
// passes) and with one chunk each side (span 3 does not divide 16, one pass per chunk).
TEST(LshAttentionKernels, ThreadCountDoesNotChangeResults) {
  Tensor qk = normal({1, 2, 64, 8}, 101, kFloat32), v = normal({1, 2, 64, 8}, 102, kFloat32);
  for (int64_t after : {0, 1}) {
    LshAttentionOptions o = options(8, 1, after, 2, {8}, true, 4);
    auto run = [&](int threads) {
      int saved = get_num_threads();
      set_num_threads(threads);
      Tensor q = qk.detach().requires_grad_(), vv = v.detach().requires_grad_();
      Tensor out = lsh_attention(q, vv, o).out;
      sum(mul(out, out)).backward();
      set_num_threads(saved);
      return std::vector<Tensor>{out, q.grad(), vv.grad()};
    };
    std::vector<Tensor> a = run(1), b = run(2);
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(identical(a[i], b[i])) << "after " << after << " " << i;
  }
}

// ---- errors
// ----------------------------------------------------------------------------------------------------

TEST(LshAttention, Errors) {
  Tensor qk = normal({1, 2, 12, 4}, 1), v = normal({1, 2, 12, 4}, 2);
  LshAttentionOptions o = options(8, 1, 0, 1, {4});
  expect_error([&] { lsh_attention(qk, v, o); },
               {"lsh_attention", "L = 12", "[1, 2, 12, 4]", "chunk_len = 8"});
  o.chunk_len = 4;
  expect_error(
      [&] {
        lsh_attention(qk.view({2, 12, 4}), v, o);
      },
      {"lsh_attention", "qk [B, H, L, d]", "[2, 12, 4]"});
  expect_error([&] { lsh_attention(qk, normal({1, 2, 11, 4}, 3), o); }, {"lsh_attention", "[1, 2, 11, 4]"});
  expect_error([&] { lsh_attention(qk, v.to(kFloat32), o); },
               {"lsh_attention", "v must be float32 or float64 like qk"});
  expect_error(
      [&] {
        lsh_attention(qk, v, o, zeros({1, 12}));
      },
      {"lsh_attention", "padding_mask must be bool [B, L]"});
  expect_error([&] { lsh_attention(qk, v, o, zeros({2, 12}, DType::Bool)); }, {"padding_mask", "[1, 12]"});
  LshAttentionOptions odd = o;
  odd.n_buckets = {5};
  expect_error([&] { lsh_attention(qk, v, odd); }, {"lsh_attention", "even", "[5]"});
  LshAttentionOptions neg = o;
  neg.n_chunks_before = -1;
  expect_error([&] { lsh_attention(qk, v, neg); }, {"lsh_attention", "n_chunks_before >= 0"});
  Tensor bad = zeros({1, 2, 2, 12}, DType::Int64);
  expect_error([&] { lsh_attention(qk, v, o, Tensor(), bad); },
               {"buckets to replay", "[1, 2, 1, 12]", "[1, 2, 2, 12]"});
  expect_error(
      [&] {
        lsh_attention(qk, v, o, Tensor(), full({1, 2, 1, 12}, 4.0, DType::Int64));
      },
      {"buckets to replay must lie in [0, 4)", "[4, 4]"});
  expect_error(
      [&] {
        lsh_attention(qk, v, o, Tensor(), zeros({1, 2, 1, 12}));
      },
      {"buckets to replay must be int64"});
}

// ---- memory
// ----------------------------------------------------------------------------------------------------

namespace {
// Peak bytes of one forward + backward at length l (float32, d 64, one head), from a clean peak.
int64_t peak_bytes(int64_t l, int64_t c, int64_t heads = 1, int64_t nr = 1) {
  Tensor qk = normal({1, heads, l, 64}, 111, kFloat32).requires_grad_();
  Tensor v = normal({1, heads, l, 64}, 112, kFloat32).requires_grad_();
  LshAttentionOptions o = options(c, 1, 0, nr, {}, true, 5);
  reset_peak_memory();
  const int64_t before = memory_stats().current_bytes;
  {
    Tensor out = lsh_attention(qk, v, o).out;
    sum(out).backward();
  }
  return memory_stats().peak_bytes - before;
}
}  // namespace

TEST(LshAttentionMemory, LinearInLength) {
  const int64_t p4 = peak_bytes(4096, 64), p16 = peak_bytes(16384, 64);
  const double ratio = static_cast<double>(p16) / static_cast<double>(p4);
  RecordProperty("peak_4k_bytes", std::to_string(p4));
  RecordProperty("peak_16k_bytes", std::to_string(p16));
  std::printf("peak forward+backward: L 4096 %.2f MB, L 16384 %.2f MB, ratio %.3f\n", p4 / 1e6, p16 / 1e6,
              ratio);
  EXPECT_LE(ratio, 4.6);
  EXPECT_GE(ratio, 3.4);  // not dominated by a constant either
}

TEST(LshAttentionMemory, Length64KStaysWellUnder2GB) {
  for (int64_t c : {64, 128}) {
    const int64_t p = peak_bytes(65536, c, 2);
    std::printf("peak forward+backward at L 65536, H 2, C %lld: %.1f MB\n", static_cast<long long>(c),
                p / 1e6);
    EXPECT_LT(p, int64_t{1} << 30);
  }
}

// ---- PyTorch golden values (tests/golden/lsh/make_lsh_golden.py)
// ------------------------------------------------

TEST(LshAttentionGolden, MatchesPyTorchReference) {
  SafetensorsContents file = load_safetensors_with_metadata(std::string(LOOM_TEST_DATA_DIR) +
                                                            "/golden/lsh/lsh_attention.safetensors");
  ASSERT_TRUE(file.metadata.count("torch_version"));
  struct Case {
    std::string name;
    int64_t c, before, after, nr;
    std::vector<int64_t> nb;
    bool causal, dup, padded;
  };
  const std::vector<Case> cases{{"basic", 8, 1, 0, 1, {8}, false, true, false},
                                {"rounds_causal_factorised", 8, 1, 0, 2, {4, 2}, true, true, false},
                                {"padded_three_rounds", 4, 1, 1, 3, {8}, false, true, true},
                                {"no_duplicates_causal_padded", 4, 2, 0, 2, {4}, true, false, true}};
  auto b = [](bool x) { return std::string(x ? "true" : "false"); };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    std::string nb = "[";
    for (size_t i = 0; i < k.nb.size(); ++i) nb += (i ? ", " : "") + std::to_string(k.nb[i]);
    nb += "]";
    // The generator's options, as json.dumps writes them: the two case tables must agree.
    EXPECT_EQ(
        file.metadata.at(k.name + "/config"),
        "{\"chunk_len\": " + std::to_string(k.c) + ", \"n_chunks_before\": " + std::to_string(k.before) +
            ", \"n_chunks_after\": " + std::to_string(k.after) + ", \"n_hashes\": " + std::to_string(k.nr) +
            ", \"n_buckets\": " + nb + ", \"causal\": " + b(k.causal) +
            ", \"allow_duplicate_attention\": " + b(k.dup) + ", \"padded\": " + b(k.padded) + "}");
    auto at = [&](const std::string& key) { return file.tensors.at(k.name + "/" + key); };
    Tensor qk = at("qk"), v = at("v"), pad = k.padded ? ne(at("padding"), 0.0) : Tensor();
    // Hashing with PyTorch's rotations gives PyTorch's buckets (padding forced to the extra bucket).
    Tensor buckets = lsh_hash(qk, at("rotations"), k.nb);
    if (k.padded)
      buckets =
          masked_fill(buckets, pad.view({pad.size(0), 1, 1, pad.size(1)}), 0.0 + lsh_total_buckets(k.nb));
    EXPECT_TRUE(identical(buckets, at("buckets")));
    LshAttentionOptions o = options(k.c, k.before, k.after, k.nr, k.nb, k.causal);
    o.allow_duplicate_attention = k.dup;
    Tensor q_leaf = qk.detach().requires_grad_(), v_leaf = v.detach().requires_grad_();
    Tensor out = lsh_attention(q_leaf, v_leaf, o, pad, at("buckets")).out;
    expect_close(out, at("out"), 1e-10, 1e-12, "out");
    sum(mul(out, at("probe"))).backward();
    expect_close(q_leaf.grad(), at("grad_qk"), 1e-9, 1e-11, "grad_qk");
    expect_close(v_leaf.grad(), at("grad_v"), 1e-9, 1e-11, "grad_v");
  }
}
