// local_attention (ops/local_attention.h) and nn::LocalSelfAttention: against a dense reference over the whole
// sequence with the window mask built by hand (circular wrap, duplicate chunks counted once); float64 gradcheck;
// causal exactness by perturbation and by the Jacobian; padding invariance; memory linear in L; golden forward
// and backward against an HF-style PyTorch implementation (tests/golden/local/make_local_golden.py); errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "loom/loom.h"
#include "support/compare.h"
#include "support/expect.h"
#include "support/golden_file.h"

using namespace loom;
using test::expect_close;
using test::expect_error;
using test::identical;
using test::leaf;
using test::normal;

namespace {

// A bool padding mask [B, L] from a list of padded (b, position) pairs.
Tensor padding(int64_t B, int64_t L, const std::vector<std::pair<int64_t, int64_t>>& padded) {
  std::vector<bool> m(static_cast<size_t>(B * L), false);
  for (auto [b, p] : padded) m[static_cast<size_t>(b * L + p)] = true;
  return tensor(m, {B, L});
}

// The dense reference: query i may attend key j iff chunk(j) is one of chunk(i) - P .. chunk(i) + A taken mod
// n_ch (a set: a chunk listed twice still counts once), or anywhere when L <= C; and not (causal and j > i), and
// j is not padding. Scores, masked softmax and values written out with matmul (not the fused kernel).
Tensor reference(const Tensor& q, const Tensor& k, const Tensor& v, int64_t C, int64_t P, int64_t A, bool causal,
                 const Tensor& pad) {
  const int64_t B = q.size(0), L = q.size(2), n = L / C;
  std::vector<bool> excluded(static_cast<size_t>(L * L), false);
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = 0; j < L; ++j) {
      bool allowed = L <= C;
      for (int64_t o = -P; o <= A && !allowed; ++o) allowed = (((i / C + o) % n) + n) % n == j / C;
      excluded[static_cast<size_t>(i * L + j)] = !allowed || (causal && j > i);
    }
  Tensor mask = tensor(excluded, {1, 1, L, L});
  if (pad.defined()) mask = logical_or(mask, pad.view({B, 1, 1, L}));
  Tensor scores = mul(matmul(q, k.transpose(-1, -2)), 1.0 / std::sqrt(static_cast<double>(q.size(3))));
  return matmul(softmax(scores, -1, mask.expand({B, q.size(1), L, L})), v);
}

struct Case {
  int64_t L, C, P, A;
  bool causal, pad;
};

std::string describe_case(const Case& c) {
  return "L=" + std::to_string(c.L) + " C=" + std::to_string(c.C) + " P=" + std::to_string(c.P) +
         " A=" + std::to_string(c.A) + (c.causal ? " causal" : "") + (c.pad ? " padded" : "");
}

// Padding at the end of batch 1 and at a couple of inner positions of batch 0.
Tensor case_padding(const Case& c) {
  if (!c.pad) return Tensor();
  std::vector<std::pair<int64_t, int64_t>> padded{{0, 1}, {0, c.L / 2}};
  for (int64_t p = c.L - std::max<int64_t>(1, c.L / 4); p < c.L; ++p) padded.push_back({1, p});
  return padding(2, c.L, padded);
}

const std::vector<Case>& reference_cases() {
  static const std::vector<Case> cases{
      {16, 4, 1, 0, false, false}, {16, 4, 1, 0, true, false}, {16, 4, 1, 1, false, true}, {16, 4, 2, 1, true, true},
      {12, 4, 0, 0, false, true},  {12, 4, 0, 2, false, false}, {12, 4, 0, 2, true, false},
      {8, 4, 1, 0, false, false},  {8, 4, 1, 0, true, true},    // n_ch = 2
      {8, 4, 1, 1, false, true},   {8, 4, 2, 2, true, false},   // n_ch = 2 < P + 1 + A: duplicate chunks
      {12, 4, 3, 0, false, false},                              // n_ch = 3, P = 3 wraps onto the chunk itself
      {4, 4, 1, 0, false, true},   {4, 4, 1, 0, true, false},   // n_ch = 1: full attention
      {3, 8, 1, 1, true, true},                                 // L < C
  };
  return cases;
}

}  // namespace

// ---- against the dense reference ----------------------------------------------------------------------------

TEST(LocalAttention, MatchesDenseWindowReference) {
  uint64_t seed = 100;
  for (const Case& c : reference_cases()) {
    SCOPED_TRACE(describe_case(c));
    Tensor q = normal({2, 3, c.L, 5}, ++seed), k = normal({2, 3, c.L, 5}, ++seed), v = normal({2, 3, c.L, 4}, ++seed);
    Tensor pad = case_padding(c);
    Tensor got = local_attention(q, k, v, c.C, c.P, c.A, c.causal, pad);
    EXPECT_EQ(got.shape(), (Shape{2, 3, c.L, 4}));
    expect_close(got, reference(q, k, v, c.C, c.P, c.A, c.causal, pad), 1e-12, 1e-12, "forward");
  }
}

TEST(LocalAttention, GradientsMatchDenseReference) {
  uint64_t seed = 200;
  for (const Case& c : reference_cases()) {
    SCOPED_TRACE(describe_case(c));
    Tensor probe = normal({2, 2, c.L, 3}, ++seed);
    std::vector<Tensor> a{leaf({2, 2, c.L, 4}, ++seed), leaf({2, 2, c.L, 4}, ++seed), leaf({2, 2, c.L, 3}, ++seed)};
    std::vector<Tensor> b{a[0].detach().requires_grad_(), a[1].detach().requires_grad_(), a[2].detach().requires_grad_()};
    Tensor pad = case_padding(c);
    sum(mul(local_attention(a[0], a[1], a[2], c.C, c.P, c.A, c.causal, pad), probe)).backward();
    sum(mul(reference(b[0], b[1], b[2], c.C, c.P, c.A, c.causal, pad), probe)).backward();
    for (int i = 0; i < 3; ++i) expect_close(a[i].grad(), b[i].grad(), 1e-11, 1e-12, "grad " + std::to_string(i));
  }
}

TEST(LocalAttention, DuplicateChunksCountOnce) {
  // Two chunks with P = A = 1: the window -1, 0, +1 lists the other chunk twice. Counted once, every query sees
  // each key once, which is exactly P = 1, A = 0 (both chunks) and plain full attention.
  Tensor q = normal({1, 2, 8, 3}, 1), k = normal({1, 2, 8, 3}, 2), v = normal({1, 2, 8, 3}, 3);
  Tensor dup = local_attention(q, k, v, 4, 1, 1);
  expect_close(dup, local_attention(q, k, v, 4, 1, 0), 1e-12, 1e-13, "P=1,A=1 vs P=1,A=0");
  expect_close(dup, scaled_dot_product_attention(q, k, v), 1e-12, 1e-13, "vs full attention");
  // Negative control: the double-counting HF result (the other chunk's keys weighted twice) differs.
  Tensor kk = cat({k, k.narrow(2, 4, 4)}, 2), vv = cat({v, v.narrow(2, 4, 4)}, 2);  // chunk 1 twice for chunk 0
  Tensor doubled = scaled_dot_product_attention(q.narrow(2, 0, 4), kk, vv);
  EXPECT_FALSE(allclose(doubled, dup.narrow(2, 0, 4), 1e-6, 1e-6));
  // P = 5 with three chunks wraps around more than once: still every key once, i.e. full attention.
  Tensor q3 = normal({1, 1, 12, 3}, 4), k3 = normal({1, 1, 12, 3}, 5), v3 = normal({1, 1, 12, 3}, 6);
  expect_close(local_attention(q3, k3, v3, 4, 5, 0), scaled_dot_product_attention(q3, k3, v3), 1e-12, 1e-13,
               "P=5, n_ch=3");
}

TEST(LocalAttention, ScaleAndStridedHeadSplitInputs) {
  // scale != 0 replaces 1/sqrt(d); q, k, v as head splits of [B, L, H, d] buffers (what LocalSelfAttention passes).
  Tensor qb = normal({2, 16, 3, 4}, 7), kb = normal({2, 16, 3, 4}, 8), vb = normal({2, 16, 3, 4}, 9);
  Tensor q = qb.transpose(1, 2), k = kb.transpose(1, 2), v = vb.transpose(1, 2);
  Tensor got = local_attention(q, k, v, 4, 1, 0, true, Tensor(), 0.3);
  Tensor want = local_attention(mul(q, 0.3 * 2.0).contiguous(), k.contiguous(), v.contiguous(), 4, 1, 0, true);
  expect_close(got, want, 1e-12, 1e-13, "scale 0.3 == q * 0.3 * sqrt(4)");
  // The output is laid out like q: merging heads back is a view.
  EXPECT_TRUE(got.transpose(1, 2).is_contiguous());
}

TEST(LocalAttention, Float32MatchesFloat64) {
  Tensor q = normal({2, 2, 32, 8}, 10), k = normal({2, 2, 32, 8}, 11), v = normal({2, 2, 32, 8}, 12);
  Tensor pad = padding(2, 32, {{1, 30}, {1, 31}, {0, 3}});
  Tensor want = local_attention(q, k, v, 8, 1, 1, false, pad);
  Tensor got = local_attention(q.to(kFloat32), k.to(kFloat32), v.to(kFloat32), 8, 1, 1, false, pad);
  expect_close(got.to(kFloat64), want, 1e-5, 1e-5, "float32");
}

// ---- gradcheck ------------------------------------------------------------------------------------------------

TEST(LocalAttentionGradcheck, WindowsCausalPaddingAndDuplicates) {
  Tensor q = leaf({1, 2, 8, 3}, 20), k = leaf({1, 2, 8, 3}, 21), v = leaf({1, 2, 8, 2}, 22);
  Tensor pad = padding(1, 8, {{0, 2}, {0, 7}});
  EXPECT_TRUE(gradcheck([](const auto& in) { return local_attention(in[0], in[1], in[2], 2, 1, 0); }, {q, k, v}));
  EXPECT_TRUE(gradcheck([pad](const auto& in) { return local_attention(in[0], in[1], in[2], 2, 1, 1, false, pad); },
                        {q, k, v}));
  EXPECT_TRUE(gradcheck([pad](const auto& in) { return local_attention(in[0], in[1], in[2], 2, 2, 0, true, pad); },
                        {q, k, v}));
  // n_ch = 2 with duplicates, and the full-attention path (L <= C).
  EXPECT_TRUE(gradcheck([](const auto& in) { return local_attention(in[0], in[1], in[2], 4, 1, 1, true); }, {q, k, v}));
  EXPECT_TRUE(gradcheck([pad](const auto& in) { return local_attention(in[0], in[1], in[2], 8, 1, 0, false, pad); },
                        {q, k, v}));
}

// ---- masks ----------------------------------------------------------------------------------------------------

TEST(LocalAttention, CausalIsExactUnderTheWrap) {
  // 4 chunks of 4, window -1 .. +1: chunk 0 looks back at chunk 3 through the wrap. Perturbing every position
  // after i leaves outputs 0..i bit-identical, for each i.
  const int64_t L = 16;
  Tensor q = normal({1, 2, L, 4}, 30), k = normal({1, 2, L, 4}, 31), v = normal({1, 2, L, 4}, 32);
  Tensor base = local_attention(q, k, v, 4, 1, 1, true);
  for (int64_t i : {0, 3, 5, 11, 14}) {
    SCOPED_TRACE("i = " + std::to_string(i));
    Tensor keep = lt(arange(0, L, 1, kInt64).view({1, 1, L, 1}), static_cast<double>(i + 1));
    auto perturb = [&](const Tensor& t, uint64_t s) { return where(keep, t, normal(t.shape(), s)); };
    Tensor out = local_attention(perturb(q, 40), perturb(k, 41), perturb(v, 42), 4, 1, 1, true);
    EXPECT_TRUE(identical(out.narrow(2, 0, i + 1), base.narrow(2, 0, i + 1)));
    EXPECT_FALSE(allclose(out.narrow(2, i + 1, L - i - 1), base.narrow(2, i + 1, L - i - 1), 1e-6, 1e-6));
  }
  // The first token attends to itself only: out_0 = v_0.
  EXPECT_TRUE(identical(base.narrow(2, 0, 1), v.narrow(2, 0, 1)));
  // Negative control: without causal, chunk 0 does see chunk 3 through the wrap.
  Tensor nc = local_attention(q, k, v, 4, 1, 1, false);
  Tensor v2 = where(lt(arange(0, L, 1, kInt64).view({1, 1, L, 1}), 12.0), v, normal(v.shape(), 43));
  EXPECT_FALSE(allclose(local_attention(q, k, v2, 4, 1, 1, false).narrow(2, 0, 1), nc.narrow(2, 0, 1), 1e-6, 1e-6));
}

TEST(LocalAttention, CausalJacobianIsZeroAboveTheDiagonal) {
  const int64_t L = 12;
  for (int64_t i : {0, 4, 7}) {
    Tensor q = leaf({1, 1, L, 3}, 50), k = leaf({1, 1, L, 3}, 51), v = leaf({1, 1, L, 3}, 52);
    sum(local_attention(q, k, v, 4, 2, 1, true).narrow(2, i, 1)).backward();
    for (const Tensor& g : {q.grad(), k.grad(), v.grad()})
      EXPECT_EQ(amax(abs(g.narrow(2, i + 1, L - i - 1))).item<double>(), 0.0) << "i = " << i;
    // Everything at or before i does matter, except q_0 and k_0 for i = 0: a single-key softmax is constant.
    EXPECT_GT(amin(abs(v.grad().narrow(2, 0, i + 1).sum({1, 3}))).item<double>(), 0.0) << "i = " << i;
    if (i > 0) {
      EXPECT_GT(amax(abs(k.grad().narrow(2, 0, i + 1))).item<double>(), 0.0) << "i = " << i;
      EXPECT_GT(amax(abs(q.grad().narrow(2, i, 1))).item<double>(), 0.0) << "i = " << i;
    }
  }
}

TEST(LocalAttention, PaddedKeysHaveNoInfluence) {
  // trax's masked non-causal test: changing the padded suffix leaves the unpadded outputs unchanged and changes
  // the padded ones.
  const int64_t L = 16;
  Tensor q = normal({2, 2, L, 4}, 60), k = normal({2, 2, L, 4}, 61), v = normal({2, 2, L, 4}, 62);
  Tensor pad = padding(2, L, {{0, 13}, {0, 14}, {0, 15}, {1, 15}});
  Tensor base = local_attention(q, k, v, 4, 1, 1, false, pad);
  Tensor suffix = pad.view({2, 1, L, 1});
  Tensor out = local_attention(where(suffix, normal(q.shape(), 63), q), where(suffix, normal(k.shape(), 64), k),
                               where(suffix, normal(v.shape(), 65), v), 4, 1, 1, false, pad);
  Tensor unpadded = logical_not(suffix).expand(base.shape());
  EXPECT_TRUE(identical(where(unpadded, out, 0.0), where(unpadded, base, 0.0)));
  EXPECT_FALSE(allclose(out.select(0, 0).narrow(1, 13, 3), base.select(0, 0).narrow(1, 13, 3), 1e-6, 1e-6));
}

TEST(LocalAttention, FullyMaskedWindowGivesZeros) {
  // Batch 0: chunks 2 and 3 all padding; with P = 1, A = 0, chunk 3's window (chunks 2, 3) has no valid key.
  // Documented choice: zeros (HF would give the mean of the window's values).
  Tensor q = leaf({1, 1, 16, 3}, 70), k = leaf({1, 1, 16, 3}, 71), v = leaf({1, 1, 16, 3}, 72);
  std::vector<std::pair<int64_t, int64_t>> padded;
  for (int64_t p = 8; p < 16; ++p) padded.push_back({0, p});
  Tensor out = local_attention(q, k, v, 4, 1, 0, false, padding(1, 16, padded));
  EXPECT_EQ(amax(abs(out.narrow(2, 12, 4))).item<double>(), 0.0);
  EXPECT_GT(amax(abs(out.narrow(2, 8, 4))).item<double>(), 0.0);  // chunk 2 still sees chunk 1
  sum(out).backward();
  EXPECT_EQ(amax(abs(q.grad().narrow(2, 12, 4))).item<double>(), 0.0);
  EXPECT_TRUE(all(lt(abs(k.grad()), INFINITY)).item<bool>());
}

// ---- memory ---------------------------------------------------------------------------------------------------

namespace {

// Peak bytes held by tensors during forward + backward of local attention at length L (float32, B = 1, H = 2,
// d = 32, C = 64, P = 1, causal), above what was held before.
int64_t local_attention_peak(int64_t L) {
  Tensor q = leaf({1, 2, L, 32}, 80, kFloat32), k = leaf({1, 2, L, 32}, 81, kFloat32), v = leaf({1, 2, L, 32}, 82, kFloat32);
  reset_peak_memory();
  const int64_t before = memory_stats().current_bytes;
  sum(local_attention(q, k, v, 64, 1, 0, true)).backward();
  return memory_stats().peak_bytes - before;
}

}  // namespace

TEST(LocalAttention, MemoryIsLinearInLength) {
  const int64_t small = local_attention_peak(4096), large = local_attention_peak(16384);
  const double ratio = static_cast<double>(large) / static_cast<double>(small);
  std::cout << "local_attention peak bytes (fwd+bwd): L=4096 " << small << ", L=16384 " << large << ", ratio "
            << ratio << "\n";
  EXPECT_LE(ratio, 4.6);
  // Far below one dense [L, L] float32 score matrix per head (2 GiB at L = 16384): O(L * W), W = 128.
  EXPECT_LT(large, 16384LL * 128 * 2 * 4 * 8);
}

// ---- against PyTorch --------------------------------------------------------------------------------------------

namespace {

constexpr const char* kGoldenFile = "local/local_attention.safetensors";

Tensor golden(const std::string& key) { return test::golden_tensor(kGoldenFile, key); }
bool has_golden(const std::string& key) { return test::has_golden_tensor(kGoldenFile, key); }

// The case's [chunk_len, n_chunks_before, n_chunks_after, causal], stored by the generator itself so the two
// sides cannot drift apart.
std::vector<int64_t> golden_config(const std::string& name) { return golden(name + "/config").to_vector<int64_t>(); }

}  // namespace

TEST(LocalAttention, MatchesPyTorchOp) {
  EXPECT_NE(test::golden_file(kGoldenFile).metadata.at("torch_version"), "");
  int cases = 0;
  for (const char* name : {"op_noncausal_padded", "op_causal", "op_causal_p2_padded", "op_after_only", "op_short"}) {
    SCOPED_TRACE(name);
    const std::string n = name;
    std::vector<int64_t> cfg = golden_config(n);
    Tensor q = golden(n + "/q").to(kFloat64).requires_grad_(), k = golden(n + "/k").to(kFloat64).requires_grad_();
    Tensor v = golden(n + "/v").to(kFloat64).requires_grad_();
    Tensor pad = has_golden(n + "/padding_mask") ? golden(n + "/padding_mask") : Tensor();
    Tensor out = local_attention(q, k, v, cfg[0], cfg[1], cfg[2], cfg[3] != 0, pad);
    expect_close(out.to(kFloat32), golden(n + "/out"), 1e-5, 1e-6, "out");
    sum(mul(out, golden(n + "/probe").to(kFloat64))).backward();
    expect_close(q.grad().to(kFloat32), golden(n + "/grad_q"), 1e-5, 1e-6, "grad q");
    expect_close(k.grad().to(kFloat32), golden(n + "/grad_k"), 1e-5, 1e-6, "grad k");
    expect_close(v.grad().to(kFloat32), golden(n + "/grad_v"), 1e-5, 1e-6, "grad v");
    // float32 end to end, at float32 tolerances.
    Tensor out32 = local_attention(golden(n + "/q"), golden(n + "/k"), golden(n + "/v"), cfg[0], cfg[1], cfg[2],
                                   cfg[3] != 0, pad);
    expect_close(out32, golden(n + "/out"), 1e-4, 1e-5, "out float32");
    ++cases;
  }
  EXPECT_EQ(cases, 5);
}

TEST(LocalSelfAttentionModule, MatchesPyTorch) {
  for (const char* name : {"module_causal", "module_noncausal_padded"}) {
    SCOPED_TRACE(name);
    const std::string n = name;
    std::vector<int64_t> cfg = golden_config(n);
    std::vector<int64_t> dims = golden(n + "/dims").to_vector<int64_t>();  // d_model, heads, head_dim
    nn::LocalSelfAttentionOptions o;
    o.d_model = dims[0];
    o.num_heads = dims[1];
    o.head_dim = dims[2];
    o.chunk_len = cfg[0];
    o.n_chunks_before = cfg[1];
    o.n_chunks_after = cfg[2];
    o.causal = cfg[3] != 0;
    nn::LocalSelfAttention m(o, kFloat64);
    std::map<std::string, Tensor> sd;
    for (const auto& [pname, t] : m.state_dict()) sd[pname] = golden(n + "/" + pname).to(kFloat64);
    m.load_state_dict(sd);
    Tensor x = golden(n + "/x").to(kFloat64).requires_grad_();
    Tensor pad = has_golden(n + "/padding_mask") ? golden(n + "/padding_mask") : Tensor();
    Tensor out = m.forward(x, pad);
    expect_close(out.to(kFloat32), golden(n + "/out"), 1e-5, 1e-6, "out");
    sum(mul(out, golden(n + "/probe").to(kFloat64))).backward();
    expect_close(x.grad().to(kFloat32), golden(n + "/grad/x"), 1e-5, 1e-6, "grad x");
    for (const auto& [pname, p] : m.named_parameters())
      expect_close(p.grad().to(kFloat32), golden(n + "/grad/" + pname), 1e-5, 1e-6, "grad " + pname);
  }
}

// ---- the module -----------------------------------------------------------------------------------------------

TEST(LocalSelfAttentionModule, ParametersShapesAndHeadsAgreeWithTheOp) {
  nn::LocalSelfAttentionOptions o;
  o.d_model = 6;
  o.num_heads = 2;
  o.head_dim = 4;
  o.chunk_len = 4;
  o.causal = true;
  nn::LocalSelfAttention m(o, kFloat64);
  std::vector<std::string> names;
  for (const auto& [name, p] : m.named_parameters()) names.push_back(name + shape_str(p.shape()));
  EXPECT_EQ(names, (std::vector<std::string>{"query.weight[8, 6]", "key.weight[8, 6]", "value.weight[8, 6]",
                                             "output.weight[6, 8]"}));
  Tensor x = normal({2, 12, 6}, 90);
  Tensor out = m.forward(x);
  EXPECT_EQ(out.shape(), (Shape{2, 12, 6}));
  // The same computation spelled out: projections, [B, H, L, hd] heads, the op, merge, output.
  auto heads = [&](const Tensor& w) { return matmul(x, w.t()).view({2, 12, 2, 4}).transpose(1, 2).contiguous(); };
  Tensor a = local_attention(heads(m.query->weight), heads(m.key->weight), heads(m.value->weight), 4, 1, 0, true);
  expect_close(out, matmul(a.transpose(1, 2).reshape({2, 12, 8}), m.output->weight.t()), 1e-12, 1e-13, "explicit");
  expect_error([&] { m.forward(normal({2, 12, 5}, 91)); }, {"LocalSelfAttention(d_model=6)", "[2, 12, 5]"});
  expect_error([&] { m.forward(normal({2, 10, 6}, 92)); }, {"local_attention", "sequence length 10", "chunk_len 4"});
  nn::LocalSelfAttentionOptions bad;
  bad.d_model = 6;
  bad.num_heads = 4;
  expect_error([&] { nn::LocalSelfAttention b(bad); }, {"d_model 6 is not divisible by num_heads 4"});
}

// ---- CUDA ------------------------------------------------------------------------------------------------------

TEST(LocalAttention, CudaMatchesCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  Tensor q = normal({2, 2, 32, 8}, 95, kFloat32), k = normal({2, 2, 32, 8}, 96, kFloat32);
  Tensor v = normal({2, 2, 32, 8}, 97, kFloat32), probe = normal({2, 2, 32, 8}, 98, kFloat32);
  Tensor pad = padding(2, 32, {{1, 29}, {1, 30}, {1, 31}, {0, 4}});
  std::vector<Tensor> cpu{q.detach().requires_grad_(), k.detach().requires_grad_(), v.detach().requires_grad_()};
  std::vector<Tensor> gpu{q.cuda().requires_grad_(), k.cuda().requires_grad_(), v.cuda().requires_grad_()};
  Tensor oc = local_attention(cpu[0], cpu[1], cpu[2], 8, 1, 1, true, pad);
  Tensor og = local_attention(gpu[0], gpu[1], gpu[2], 8, 1, 1, true, pad.cuda());
  expect_close(og.cpu(), oc, 1e-5, 1e-5, "output");
  sum(mul(oc, probe)).backward();
  sum(mul(og, probe.cuda())).backward();
  for (int i = 0; i < 3; ++i) expect_close(gpu[i].grad().cpu(), cpu[i].grad(), 1e-4, 1e-5, "grad " + std::to_string(i));
}

// ---- errors ---------------------------------------------------------------------------------------------------

TEST(LocalAttention, ArgumentErrors) {
  Tensor q = normal({1, 2, 12, 4}, 1), k = normal({1, 2, 12, 4}, 2), v = normal({1, 2, 12, 4}, 3);
  expect_error([&] { local_attention(q, k, v, 5); },
               {"local_attention", "sequence length 12", "[1, 2, 12, 4]", "not a multiple of chunk_len 5"});
  expect_error([&] { local_attention(q, k, v, 0); }, {"local_attention: chunk_len must be positive, got 0"});
  expect_error([&] { local_attention(q, k, v, 4, -1); }, {"n_chunks_before and n_chunks_after must be >= 0"});
  expect_error([&] { local_attention(q.select(0, 0), k.select(0, 0), v.select(0, 0), 4); },
               {"expected q and k [B, H, L, d]", "[2, 12, 4]"});
  expect_error([&] { local_attention(q, normal({1, 2, 12, 3}, 4), v, 4); }, {"[1, 2, 12, 3]"});
  expect_error([&] { local_attention(q, k, normal({1, 2, 8, 4}, 5), 4); }, {"[1, 2, 8, 4]"});
  expect_error([&] { local_attention(q, k.to(kFloat32), v, 4); }, {"local_attention: k is float32", "q is float64"});
  expect_error([&] { local_attention(q.to(kInt64), k.to(kInt64), v.to(kInt64), 4); }, {"expected floating q"});
  expect_error([&] { local_attention(q, k, v, 4, 1, 0, false, zeros({1, 12})); },
               {"padding_mask must be bool (true = padding)"});
  expect_error([&] { local_attention(q, k, v, 4, 1, 0, false, padding(2, 12, {})); },
               {"padding_mask must be [B, L] = [1, 12]", "[2, 12]"});
}
