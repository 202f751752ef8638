// nn::DirectionalSelfAttention, nn::Source2Token, nn::BlockSelfAttention and nn::BiBlockSelfAttention
// (nn/block_attention.h) against PyTorch (tests/golden/blosa/blosa.safetensors, forward and every gradient) and
// the invariants of shared/research/biblosa.md §9: T1 the attention masks, T2 one block reproduces DiSA, T3
// directional independence under perturbation, T4 padding invariance, T5 edge cases, T6 gradcheck of whole
// modules, T7 parameter counts; the block-length rules, dropout, and argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "loom/loom.h"
#include "support/compare.h"
#include "support/expect.h"
#include "support/golden_file.h"

using namespace loom;
using test::all_finite;
using test::expect_close;
using test::expect_error;
using test::max_abs;
using test::normal;

namespace {

constexpr AttentionDirection kFw = AttentionDirection::Forward;
constexpr AttentionDirection kBw = AttentionDirection::Backward;

// Padding [B, n] for the given sentence lengths.
Tensor padding_for(const std::vector<int64_t>& lengths, int64_t n) {
  std::vector<bool> pad;
  for (int64_t len : lengths)
    for (int64_t t = 0; t < n; ++t) pad.push_back(t >= len);
  return tensor(pad, {static_cast<int64_t>(lengths.size()), n});
}

// Every parameter redrawn (biases too, which init to 0), weights scaled by 1 / sqrt(fan_in).
void randomize(nn::Module& m, uint64_t seed) {
  NoGradGuard no_grad;
  for (auto& [name, p] : m.named_parameters()) {
    double scale = p.dim() == 1 ? 0.3 : 1.2 / std::sqrt(static_cast<double>(p.size(1)));
    Tensor t = p;
    t.copy_(normal(p.shape(), seed++, p.dtype(), scale));
  }
}

void expect_same(const Tensor& got, const Tensor& want, const std::string& what) {
  expect_close(got, want, 0, 0, what + " (bit-identical)");
}

nn::BlockSelfAttentionOptions block_opts(int64_t r, nn::DenseActivation act = nn::DenseActivation::Elu,
                                         double dropout = 0.0) {
  nn::BlockSelfAttentionOptions o;
  o.block_len = r;
  o.activation = act;
  o.dropout = dropout;
  o.options = kFloat64;
  return o;
}

// Token t of a [B, m, r, d] block tensor, as [B, d].
Tensor token(const Tensor& blocks, int64_t t) {
  const int64_t r = blocks.size(2);
  return blocks.select(1, t / r).select(1, t % r);
}

}  // namespace

// ---- against PyTorch ----------------------------------------------------------------------------------------

namespace {

constexpr const char* kGoldenFile = "blosa/blosa.safetensors";

Tensor golden(const std::string& key) { return test::golden_tensor(kGoldenFile, key); }
std::string setting(const std::string& name, const std::string& key) {
  return test::golden_setting(kGoldenFile, name, key);
}

nn::DenseActivation activation_of(const std::string& name) {
  return setting(name, "activation") == "relu" ? nn::DenseActivation::Relu : nn::DenseActivation::Elu;
}

AttentionDirection direction_of(const std::string& name) { return setting(name, "direction") == "forward" ? kFw : kBw; }

// Loads the case's parameters into m (converted to dtype), runs fn(x, padding), backpropagates sum(out * probe)
// and compares the output and the gradients of x and of every parameter with PyTorch's.
void check_module_case(nn::Module& m, const std::string& name, DType dtype,
                       const std::function<Tensor(const Tensor&, const Tensor&)>& fn) {
  SCOPED_TRACE(name + " " + dtype_name(dtype));
  std::map<std::string, Tensor> sd;
  for (const auto& [pname, t] : m.state_dict()) sd[pname] = golden(name + "/" + pname).to(dtype);
  m.load_state_dict(sd);
  Tensor x = golden(name + "/x").to(dtype).detach().requires_grad_();
  Tensor out = fn(x, golden(name + "/padding"));
  sum(mul(out, golden(name + "/probe").to(dtype))).backward();
  const bool f32 = dtype == kFloat32;
  const double rtol = f32 ? 2e-4 : 1e-10, atol = f32 ? 2e-5 : 1e-11;
  expect_close(out, golden(name + "/output").to(dtype), rtol, atol, "output");
  expect_close(x.grad(), golden(name + "/grad/x").to(dtype), rtol, atol, "grad x");
  for (const auto& [pname, p] : m.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << pname;
    expect_close(p.grad(), golden(name + "/grad/" + pname).to(dtype), rtol, f32 ? 2e-4 : 1e-11, "grad " + pname);
  }
}

}  // namespace

TEST(BlockAttentionGolden, DirectionalSelfAttentionMatchesPyTorch) {
  for (std::string name : {"disa_forward", "disa_backward"}) {
    nn::DirectionalSelfAttentionOptions o;
    o.activation = activation_of(name);
    for (DType dtype : {kFloat64, kFloat32}) {
      o.options = dtype;
      nn::DirectionalSelfAttention disa(std::stoll(setting(name, "input")), std::stoll(setting(name, "hidden")),
                                        direction_of(name), o);
      check_module_case(disa, name, dtype, [&](const Tensor& x, const Tensor& pad) { return disa.forward(x, pad); });
    }
  }
}

TEST(BlockAttentionGolden, SentenceSource2TokenMatchesPyTorch) {
  const std::string name = "s2t_sentence";
  nn::Source2TokenOptions o;
  o.layers = std::stoll(setting(name, "layers"));
  o.options = kFloat64;
  nn::Source2Token s2t(std::stoll(setting(name, "dim")), o);
  check_module_case(s2t, name, kFloat64, [&](const Tensor& x, const Tensor& pad) { return s2t.forward(x, pad); });
}

TEST(BlockAttentionGolden, BlockSelfAttentionMatchesPyTorch) {
  int cases = 0;
  for (const auto& [name, _] : test::golden_file(kGoldenFile).metadata) {
    if (name.rfind("blosa_", 0) != 0) continue;
    ++cases;
    for (DType dtype : {kFloat64, kFloat32}) {
      nn::BlockSelfAttentionOptions o = block_opts(std::stoll(setting(name, "block_len")), activation_of(name));
      o.options = dtype;
      o.reference_parity = setting(name, "parity") == "1";
      nn::BlockSelfAttention blosa(std::stoll(setting(name, "input")), std::stoll(setting(name, "hidden")),
                                   direction_of(name), o);
      check_module_case(blosa, name, dtype,
                        [&](const Tensor& x, const Tensor& pad) { return blosa.forward(x, pad); });
    }
  }
  EXPECT_EQ(cases, 4);
}

TEST(BlockAttentionGolden, BiBlockSelfAttentionWithTheDefaultRuleMatchesPyTorch) {
  const std::string name = "bi_blosa_default_r";
  for (DType dtype : {kFloat64, kFloat32}) {
    nn::BlockSelfAttentionOptions o = block_opts(std::stoll(setting(name, "block_len")), activation_of(name));
    o.options = dtype;
    nn::BiBlockSelfAttention bi(std::stoll(setting(name, "input")), std::stoll(setting(name, "hidden")), o);
    check_module_case(bi, name, dtype, [&](const Tensor& x, const Tensor& pad) {
      EXPECT_EQ(bi.fw->forward_parts(x, pad).block_len, std::stoll(setting(name, "expected_block_len")));
      return bi.forward(x, pad);
    });
  }
}

// ---- T1: masks ----------------------------------------------------------------------------------------------

namespace {

// allowed[i][j]: whether output row i depends on value row j, read off the Jacobian (P > 0 exactly where
// allowed, since exp > 0).
std::vector<std::vector<bool>> allowed_matrix(int64_t l, AttentionDirection dir, const Tensor& pad,
                                              bool mask_queries) {
  Tensor q = normal({1, l, 2}, 1), k = normal({1, l, 2}, 2), b = normal({2}, 3);
  std::vector<std::vector<bool>> allowed(static_cast<size_t>(l), std::vector<bool>(static_cast<size_t>(l)));
  for (int64_t i = 0; i < l; ++i) {
    Tensor v = normal({1, l, 2}, 4).requires_grad_();
    Tensor out = multi_dim_attention(q, k, v, b, dir, pad, 5.0, mask_queries);
    sum(out.select(1, i)).backward();
    for (int64_t j = 0; j < l; ++j)
      allowed[static_cast<size_t>(i)][static_cast<size_t>(j)] = max_abs(v.grad().select(1, j)) > 0;
  }
  return allowed;
}

std::string show(const std::vector<std::vector<bool>>& m) {
  std::string s;
  for (const auto& row : m) {
    s += "\n";
    for (bool b : row) s += b ? "1 " : "0 ";
  }
  return s;
}

}  // namespace

TEST(BlockAttentionInvariants, T1DirectionMasks) {
  // The spec's r = 4 tables, verbatim.
  const std::vector<std::vector<bool>> fw4 = {{0, 0, 0, 0}, {1, 0, 0, 0}, {1, 1, 0, 0}, {1, 1, 1, 0}};
  const std::vector<std::vector<bool>> bw4 = {{0, 1, 1, 1}, {0, 0, 1, 1}, {0, 0, 0, 1}, {0, 0, 0, 0}};
  EXPECT_EQ(allowed_matrix(4, kFw, Tensor(), true), fw4) << show(allowed_matrix(4, kFw, Tensor(), true));
  EXPECT_EQ(allowed_matrix(4, kBw, Tensor(), true), bw4) << show(allowed_matrix(4, kBw, Tensor(), true));
  // Strict triangles with a zero diagonal for r = 1..6; DiSAN's diag mask and the full mask.
  for (int64_t r = 1; r <= 6; ++r) {
    for (AttentionDirection dir : {kFw, kBw, AttentionDirection::NoDiagonal, AttentionDirection::All}) {
      auto got = allowed_matrix(r, dir, Tensor(), true);
      for (int64_t i = 0; i < r; ++i)
        for (int64_t j = 0; j < r; ++j) {
          bool want = dir == kFw ? j < i : dir == kBw ? j > i : dir == AttentionDirection::NoDiagonal ? j != i : true;
          EXPECT_EQ(got[static_cast<size_t>(i)][static_cast<size_t>(j)], want)
              << "r " << r << " " << attention_direction_name(dir) << " i " << i << " j " << j;
        }
    }
  }
  // A padded block: intra-block A = D & query & key; DiSA's = D & key (padded queries still attend).
  Tensor pad = tensor(std::vector<bool>{false, true, false, false, true}, {1, 5});
  const std::vector<std::vector<bool>> intra = {
      {0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}, {1, 0, 0, 0, 0}, {1, 0, 1, 0, 0}, {0, 0, 0, 0, 0}};
  const std::vector<std::vector<bool>> keys_only = {
      {0, 0, 0, 0, 0}, {1, 0, 0, 0, 0}, {1, 0, 0, 0, 0}, {1, 0, 1, 0, 0}, {1, 0, 1, 1, 0}};
  EXPECT_EQ(allowed_matrix(5, kFw, pad, true), intra) << show(allowed_matrix(5, kFw, pad, true));
  EXPECT_EQ(allowed_matrix(5, kFw, pad, false), keys_only) << show(allowed_matrix(5, kFw, pad, false));
}

TEST(BlockAttentionInvariants, T1DiSAZeroesPaddedOutputsButNotTheirAttention) {
  nn::DirectionalSelfAttentionOptions o;
  o.options = kFloat64;
  nn::DirectionalSelfAttention disa(3, 4, kFw, o);
  randomize(disa, 10);
  NoGradGuard no_grad;
  Tensor x = normal({2, 5, 3}, 11), pad = padding_for({5, 3}, 5);
  auto parts = disa.forward_parts(x, pad);
  EXPECT_EQ(max_abs(parts.output.select(0, 1).narrow(0, 3, 2)), 0.0);
  EXPECT_GT(max_abs(parts.attended.select(0, 1).narrow(0, 3, 2)), 0.0);  // queries not masked
  EXPECT_GT(max_abs(parts.output.select(0, 1).narrow(0, 0, 3)), 0.0);
}

// ---- T2: one block is DiSA ----------------------------------------------------------------------------------

TEST(BlockAttentionInvariants, T2OneBlockReproducesDiSA) {
  const int64_t de = 6, d = 4, n = 5;
  for (AttentionDirection dir : {kFw, kBw})
    for (int64_t r : {n, n + 2}) {  // exactly one block, and one block with two padded slots
      SCOPED_TRACE(std::string(attention_direction_name(dir)) + " r " + std::to_string(r));
      nn::BlockSelfAttention blosa(de, d, dir, block_opts(r));
      randomize(blosa, 20);
      nn::DirectionalSelfAttentionOptions o;
      o.options = kFloat64;
      nn::DirectionalSelfAttention disa(de, d, dir, o);
      randomize(disa, 40);
      {
        NoGradGuard no_grad;
        disa.fc->weight.copy_(blosa.fc->weight);
        disa.fc->bias.copy_(blosa.fc->bias);
        disa.key_query->weight.copy_(blosa.key_query->weight);
        disa.f_bias.copy_(blosa.f_bias);
      }
      NoGradGuard no_grad;
      Tensor x = normal({2, n, de}, 21);
      auto parts = blosa.forward_parts(x);
      ASSERT_EQ(parts.h.size(1), 1);
      auto ref = disa.forward_parts(x);
      expect_close(parts.h.select(1, 0).narrow(1, 0, n), ref.attended, 1e-12, 1e-13, "intra h vs DiSA's S");
      expect_close(parts.h0.select(1, 0).narrow(1, 0, n), ref.rep, 1e-12, 1e-13, "H0 vs DiSA's Hm");
      // Inter-block over a single block: no key, O = 0, and e = G * Hv with G = sigmoid(Hv W_gi + b_gi + b_ga + b_o).
      auto inter = blosa.inter_block->forward_parts(parts.v);
      EXPECT_EQ(max_abs(inter.attended), 0.0);
      const auto& ib = *blosa.inter_block;
      Tensor g = sigmoid(add(add(ib.gate_in->forward(inter.rep), ib.gate_attn->bias), ib.o_bias));
      expect_close(parts.e, mul(g, inter.rep), 1e-12, 1e-13, "e = G * Hv");
    }
}

TEST(BlockAttentionInvariants, T2BlockedIntraEqualsPerSliceAttention) {
  const int64_t de = 6, d = 4, n = 13, r = 3;
  nn::BlockSelfAttention blosa(de, d, kFw, block_opts(r));
  randomize(blosa, 50);
  NoGradGuard no_grad;
  Tensor x = normal({2, n, de}, 51), pad = padding_for({13, 8}, n);
  auto parts = blosa.forward_parts(x, pad);
  Tensor padded = cat({pad, ones({2, 2}, kBool)}, 1);  // 15 = 5 blocks of 3
  for (int64_t l = 0; l < 5; ++l) {
    Tensor h0 = parts.h0.select(1, l).contiguous();  // [B, r, d]
    Tensor kq = blosa.key_query->forward(h0);
    Tensor h = multi_dim_attention(kq.narrow(-1, d, d), kq.narrow(-1, 0, d), h0, blosa.f_bias, kFw,
                                   padded.narrow(1, l * r, r).contiguous(), 5.0, true);
    expect_same(parts.h.select(1, l), h, "block " + std::to_string(l));
  }
}

// ---- T3: directional independence ---------------------------------------------------------------------------

namespace {

struct Perturbed {
  nn::BlockSelfAttention::Parts base, moved;
};

Perturbed perturb(nn::BlockSelfAttention& m, const Tensor& x, const Tensor& pad, int64_t p) {
  NoGradGuard no_grad;
  Tensor x2 = x.clone();
  Tensor row = x2.select(0, 0).select(0, p);
  row.copy_(add(row, normal({x.size(2)}, 99)));
  return {m.forward_parts(x, pad), m.forward_parts(x2, pad)};
}

void expect_token_same(const Tensor& a, const Tensor& b, int64_t t, const std::string& what) {
  expect_same(a.select(0, 0).select(0, t), b.select(0, 0).select(0, t), what + " token " + std::to_string(t));
}

void expect_token_changed(const Tensor& a, const Tensor& b, int64_t t, const std::string& what) {
  EXPECT_GT(max_abs(sub(a.select(0, 0).select(0, t), b.select(0, 0).select(0, t))), 1e-9)
      << what << " token " << t << " did not change";
}

// The intra-block output h of sentence 0 at token t.
void expect_h_same(const Perturbed& r, int64_t t) {
  expect_same(token(r.base.h, t).select(0, 0), token(r.moved.h, t).select(0, 0), "h token " + std::to_string(t));
}

void expect_h_changed(const Perturbed& r, int64_t t) {
  EXPECT_GT(max_abs(sub(token(r.base.h, t).select(0, 0), token(r.moved.h, t).select(0, 0))), 1e-9)
      << "h token " << t << " did not change";
}

}  // namespace

TEST(BlockAttentionInvariants, T3ForwardIgnoresLaterBlocks) {
  const int64_t de = 6, d = 4, n = 13, r = 3;
  nn::BlockSelfAttention fw(de, d, kFw, block_opts(r));
  randomize(fw, 60);
  Tensor x = normal({2, n, de}, 61), pad = padding_for({13, 8}, n);
  const int64_t p = 8;  // block 2 (tokens 6, 7, 8), slot 2: its query has two keys
  Perturbed r3 = perturb(fw, x, pad, p);
  for (int64_t t = 0; t < 6; ++t) expect_token_same(r3.base.output, r3.moved.output, t, "u");
  for (int64_t t = 6; t < p; ++t) expect_h_same(r3, t);
  expect_h_changed(r3, p);
  for (int64_t t = 6; t < n; ++t) expect_token_changed(r3.base.output, r3.moved.output, t, "u");
  // The other sentence of the batch is untouched.
  expect_same(r3.base.output.select(0, 1), r3.moved.output.select(0, 1), "other sentence");

  // The spec's exact case: n = 8, r = 3; token 7 (slot 1 of the last block, one key, a key only for the
  // padded slot 8) changes u_7 alone.
  Tensor x8 = normal({1, 8, de}, 62);
  Perturbed e = perturb(fw, x8, Tensor(), 7);
  for (int64_t t = 0; t < 7; ++t) expect_token_same(e.base.output, e.moved.output, t, "u (n 8)");
  expect_token_changed(e.base.output, e.moved.output, 7, "u (n 8)");
}

TEST(BlockAttentionInvariants, T3BackwardIgnoresEarlierBlocks) {
  const int64_t de = 6, d = 4, n = 13, r = 3;
  nn::BlockSelfAttention bw(de, d, kBw, block_opts(r));
  randomize(bw, 70);
  Tensor x = normal({2, n, de}, 71), pad = padding_for({13, 8}, n);
  const int64_t p = 6;  // block 2, slot 0: two keys (slots 1 and 2)
  Perturbed r3 = perturb(bw, x, pad, p);
  for (int64_t t = 9; t < n; ++t) expect_token_same(r3.base.output, r3.moved.output, t, "u");
  for (int64_t t = p + 1; t < 9; ++t) expect_h_same(r3, t);
  expect_h_changed(r3, p);
  for (int64_t t = 0; t < 9; ++t) expect_token_changed(r3.base.output, r3.moved.output, t, "u");
  expect_same(r3.base.output.select(0, 1), r3.moved.output.select(0, 1), "other sentence");
}

TEST(BlockAttentionInvariants, T3BiDirectionalHalves) {
  const int64_t de = 6, d = 4, n = 13;
  nn::BiBlockSelfAttention bi(de, d, block_opts(3));
  randomize(bi, 80);
  NoGradGuard no_grad;
  Tensor x = normal({1, n, de}, 81), x2 = x.clone();
  Tensor row = x2.select(0, 0).select(0, 7);
  row.copy_(add(row, normal({de}, 82)));
  Tensor a = bi.forward(x), b = bi.forward(x2);
  ASSERT_EQ(a.size(2), 2 * d);
  Tensor fa = a.narrow(2, 0, d), fb = b.narrow(2, 0, d), ba = a.narrow(2, d, d), bb = b.narrow(2, d, d);
  for (int64_t t = 0; t < 6; ++t) expect_token_same(fa, fb, t, "fw half");
  for (int64_t t = 9; t < n; ++t) expect_token_same(ba, bb, t, "bw half");
  for (int64_t t = 6; t < n; ++t) expect_token_changed(fa, fb, t, "fw half");
  for (int64_t t = 0; t < 9; ++t) expect_token_changed(ba, bb, t, "bw half");
}

// ---- T4: padding invariance ---------------------------------------------------------------------------------

TEST(BlockAttentionInvariants, T4PaddedValuesChangeNothing) {
  const int64_t de = 6, d = 4, n = 13;
  nn::BiBlockSelfAttention bi(de, d, block_opts(3));
  randomize(bi, 90);
  nn::Source2TokenOptions so;
  so.options = kFloat64;
  nn::Source2Token pool(2 * d, so);
  randomize(pool, 95);
  NoGradGuard no_grad;
  const std::vector<int64_t> lengths = {13, 5, 1};
  Tensor x = normal({3, n, de}, 91), pad = padding_for(lengths, n);
  // Random values at every padded position.
  Tensor x2 = where(pad.unsqueeze(-1), normal({3, n, de}, 92, kFloat64, 10.0), x);
  Tensor a = bi.forward(x, pad), b = bi.forward(x2, pad);
  for (size_t s = 0; s < lengths.size(); ++s) {
    const int64_t len = lengths[s];
    expect_same(a.select(0, static_cast<int64_t>(s)).narrow(0, 0, len),
                b.select(0, static_cast<int64_t>(s)).narrow(0, 0, len), "sentence " + std::to_string(s));
  }
  expect_same(pool.forward(a, pad), pool.forward(b, pad), "sentence vectors");
  EXPECT_GT(max_abs(sub(x, x2)), 1.0);  // the padding did change
}

TEST(BlockAttentionInvariants, T4MoreEmptyBlocksChangeNothing) {
  // A 5-token sentence alone (2 blocks) and in a batch with a 13-token one (5 blocks, 3 of them empty for it):
  // with r fixed and empty blocks masked, its outputs agree, in both directions.
  const int64_t de = 6, d = 4;
  nn::BiBlockSelfAttention bi(de, d, block_opts(3));
  randomize(bi, 100);
  NoGradGuard no_grad;
  Tensor batch = normal({3, 13, de}, 101), pad = padding_for({13, 5, 1}, 13);
  Tensor alone = batch.select(0, 1).narrow(0, 0, 5).unsqueeze(0).contiguous();
  Tensor in_batch = bi.forward(batch, pad).select(0, 1).narrow(0, 0, 5);
  expect_close(in_batch, bi.forward(alone).select(0, 0), 1e-12, 1e-13, "5-token sentence");
  Tensor single = batch.select(0, 2).narrow(0, 0, 1).unsqueeze(0).contiguous();
  expect_close(bi.forward(batch, pad).select(0, 2).narrow(0, 0, 1), bi.forward(single).select(0, 0), 1e-12, 1e-13,
               "1-token sentence");
  // With the TF code's behaviour the backward direction attends to the empty blocks (whose summary is 0, but
  // whose DiSA features act(b_v) are not), so the same sentence's outputs depend on the batch; forward does not.
  nn::BlockSelfAttentionOptions parity = block_opts(3);
  parity.reference_parity = true;
  for (AttentionDirection dir : {kFw, kBw}) {
    nn::BlockSelfAttention m(de, d, dir, parity);
    randomize(m, 105);
    Tensor got = m.forward(batch, pad).select(0, 1).narrow(0, 0, 5), want = m.forward(alone).select(0, 0);
    if (dir == kFw) {
      expect_close(got, want, 1e-12, 1e-13, "reference parity, forward");
    } else {
      EXPECT_GT(max_abs(sub(got, want)), 1e-6) << "reference parity, backward: expected a dependence on the batch";
    }
  }
}

// ---- T5: edge cases -----------------------------------------------------------------------------------------

TEST(BlockAttentionInvariants, T5EdgeCasesAreFinite) {
  const int64_t de = 6, d = 4;
  struct Edge {
    int64_t n, r;
  };
  for (AttentionDirection dir : {kFw, kBw})
    for (Edge e : {Edge{1, 0}, Edge{1, 3}, Edge{7, 1}, Edge{7, 3}, Edge{6, 3}, Edge{10, 3}, Edge{4, 9}}) {
      SCOPED_TRACE(std::string(attention_direction_name(dir)) + " n " + std::to_string(e.n) + " r " +
                   std::to_string(e.r));
      nn::BlockSelfAttention m(de, d, dir, block_opts(e.r));
      randomize(m, 110);
      Tensor x = normal({2, e.n, de}, 111).requires_grad_();
      Tensor pad = padding_for({e.n, 1}, e.n);
      auto parts = m.forward_parts(x, pad);
      ASSERT_EQ(parts.output.shape(), Shape({2, e.n, d}));
      EXPECT_TRUE(all_finite(parts.output));
      if (parts.block_len == 1 || e.n == 1) {  // no token has a key
        EXPECT_EQ(max_abs(parts.h), 0.0);
      }
      sum(mul(parts.output, normal({2, e.n, d}, 112))).backward();
      EXPECT_TRUE(all_finite(x.grad()));
      for (const auto& [name, p] : m.named_parameters()) EXPECT_TRUE(all_finite(p.grad())) << name;
    }
}

// ---- T6: gradcheck of whole modules -------------------------------------------------------------------------

TEST(BlockAttentionGradcheck, BlockSelfAttentionEveryParameter) {
  for (AttentionDirection dir : {kFw, kBw}) {
    SCOPED_TRACE(attention_direction_name(dir));
    nn::BlockSelfAttention m(3, 2, dir, block_opts(2));
    randomize(m, 120);
    Tensor x = normal({2, 5, 3}, 121).requires_grad_();
    Tensor pad = padding_for({5, 3}, 5), probe = normal({2, 5, 2}, 122);
    std::vector<Tensor> inputs = {x};
    for (const Tensor& p : m.parameters()) inputs.push_back(p);
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) { return sum(mul(m.forward(in[0], pad), probe)); }, inputs));
  }
}

TEST(BlockAttentionGradcheck, DiSAAndSentencePooling) {
  nn::DirectionalSelfAttentionOptions o;
  o.options = kFloat64;
  nn::DirectionalSelfAttention disa(3, 2, kBw, o);
  nn::Source2TokenOptions so;
  so.options = kFloat64;
  nn::Source2Token pool(2, so);
  randomize(disa, 130);
  randomize(pool, 140);
  Tensor x = normal({2, 4, 3}, 131).requires_grad_();
  Tensor pad = padding_for({4, 2}, 4), probe = normal({2, 2}, 132);
  std::vector<Tensor> inputs = {x};
  for (const Tensor& p : disa.parameters()) inputs.push_back(p);
  for (const Tensor& p : pool.parameters()) inputs.push_back(p);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return sum(mul(pool.forward(disa.forward(in[0], pad), pad), probe)); },
      inputs));
}

// ---- T7: parameter counts -----------------------------------------------------------------------------------

TEST(BlockAttention, ParameterCounts) {
  for (int64_t de : {6, 300})
    for (int64_t d : {4, 240}) {
      nn::BlockSelfAttentionOptions o;
      nn::BlockSelfAttention m(de, d, kFw, o);
      EXPECT_EQ(m.num_parameters(), 14 * d * d + (de + 10) * d) << "d_e " << de << " d " << d;
      nn::DirectionalSelfAttention disa(de, d, kFw);
      EXPECT_EQ(disa.num_parameters(), de * d + 4 * d * d + 5 * d);
    }
  // The SNLI model of the paper ("480D Bi-BloSAN, 2.8m"): encoder, sentence pooling, 8d -> d head, highway,
  // 3-way logits (spec §4).
  const int64_t de = 300, d = 240;
  nn::BiBlockSelfAttention encoder(de, d);
  nn::Source2Token pool(2 * d);
  nn::Linear head(8 * d, d), highway_t(d, d), highway_g(d, d), logits(d, 3);
  const int64_t total = encoder.num_parameters() + pool.num_parameters() + head.num_parameters() +
                        highway_t.num_parameters() + highway_g.num_parameters() + logits.num_parameters();
  EXPECT_EQ(total, 2800803);
  EXPECT_EQ(pool.num_parameters(), 8 * d * d + 4 * d);
  // Parameter names are stable (checkpoints and the golden file key on them); own parameters come before the
  // submodules' (PyTorch's order).
  std::vector<std::string> names;
  for (const auto& [name, _] : nn::BlockSelfAttention(3, 2, kFw).named_parameters()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{
                       "f_bias", "fc.weight", "fc.bias", "key_query.weight", "block_summary.score.weight",
                       "block_summary.score.bias", "inter_block.f_bias", "inter_block.o_bias", "inter_block.fc.weight",
                       "inter_block.fc.bias", "inter_block.key_query.weight", "inter_block.gate_in.weight",
                       "inter_block.gate_in.bias", "inter_block.gate_attn.weight", "inter_block.gate_attn.bias",
                       "fusion.weight", "fusion.bias"}));
}

// ---- block length, dropout, errors --------------------------------------------------------------------------

TEST(BlockAttention, BlockLengthRules) {
  // The library fallback ceil(cbrt(2 n)) (spec §5's table, and exact cubes: 2 n = 8 gives 2).
  const std::vector<std::pair<int64_t, int64_t>> rule = {{1, 2},  {4, 2},   {5, 3},   {13, 3},   {16, 4},  {32, 4},
                                                         {64, 6}, {128, 7}, {256, 8}, {512, 11}, {1024, 13}};
  for (auto [n, r] : rule) EXPECT_EQ(nn::BlockSelfAttention::default_block_length(n), r) << "n " << n;
  // The experiments' rule (values from Python's math.ceil((2 * n_hat) ** (1 / 3)) + 1).
  EXPECT_EQ(nn::BlockSelfAttention::block_length_for(20, 8, 128), 6);
  EXPECT_EQ(nn::BlockSelfAttention::block_length_for(11.2, 4.5, 64), 5);
  EXPECT_EQ(nn::BlockSelfAttention::block_length_for(3, 0, 1), 3);
  EXPECT_EQ(nn::BlockSelfAttention::block_length_for(50, 30, 32), 8);
  // 0 means "the rule, per batch"; an explicit length wins.
  nn::BlockSelfAttention by_rule(3, 2, kFw, block_opts(0)), fixed(3, 2, kFw, block_opts(5));
  NoGradGuard no_grad;
  EXPECT_EQ(by_rule.forward_parts(normal({1, 13, 3}, 150)).block_len, 3);
  EXPECT_EQ(by_rule.forward_parts(normal({1, 64, 3}, 151)).block_len, 6);
  auto parts = fixed.forward_parts(normal({1, 13, 3}, 152));
  EXPECT_EQ(parts.block_len, 5);
  EXPECT_EQ(parts.h.shape(), Shape({1, 3, 5, 2}));
}

TEST(BlockAttention, DropoutOnlyWhileTraining) {
  nn::BiBlockSelfAttention drop(6, 4, block_opts(3, nn::DenseActivation::Relu, 0.3));
  nn::BiBlockSelfAttention plain(6, 4, block_opts(3, nn::DenseActivation::Relu, 0.0));
  randomize(drop, 160);
  randomize(plain, 160);
  Tensor x = normal({2, 7, 6}, 161), pad = padding_for({7, 4}, 7);
  NoGradGuard no_grad;
  Tensor a = drop.forward(x, pad), b = drop.forward(x, pad);
  EXPECT_GT(max_abs(sub(a, b)), 1e-6);  // fresh masks every call
  drop.eval();
  expect_same(drop.forward(x, pad), plain.forward(x, pad), "eval mode vs no dropout");
}

TEST(BlockAttention, ArgumentErrors) {
  expect_error([] { nn::BlockSelfAttention(6, 4, AttentionDirection::All); },
               {"BlockSelfAttention: direction must be Forward or Backward, got all"});
  expect_error([] { nn::BlockSelfAttention(0, 4, kFw); }, {"BlockSelfAttention: input_dim and hidden_dim must be positive"});
  expect_error([] { nn::BlockSelfAttention(6, 4, kFw, block_opts(-1)); }, {"block_len must be positive", "got -1"});
  expect_error([] { nn::BlockSelfAttention(6, 4, kFw, block_opts(3, nn::DenseActivation::Elu, 1.0)); },
               {"dropout must be in [0, 1)"});
  nn::Source2TokenOptions so;
  so.layers = 3;
  expect_error([&] { nn::Source2Token(4, so); }, {"Source2Token: layers must be 1 or 2, got 3"});
  expect_error([] { nn::BlockSelfAttention::block_length_for(-1, 2, 8); }, {"block_length_for", "got -1, 2 and 8"});
  nn::BlockSelfAttention m(6, 4, kFw, block_opts(3));
  expect_error([&] { m.forward(normal({2, 5, 7}, 170)); }, {"BlockSelfAttention", "[..., T, 6]", "[2, 5, 7]"});
  expect_error([&] { m.forward(normal({5, 6}, 171)); }, {"expected an input [B, n, 6]", "[5, 6]"});
  expect_error([&] { m.forward(normal({2, 0, 6}, 172)); }, {"at least one token", "[2, 0, 6]"});
  expect_error([&] { m.forward(normal({2, 5, 6}, 173), zeros({2, 4}, kBool)); },
               {"padding_mask must be bool [2, 5]", "[2, 4]"});
  nn::DirectionalSelfAttention disa(6, 4, kFw);
  expect_error([&] { disa.forward(normal({2, 5, 6}, 174, kFloat32), zeros({2, 5})); },
               {"DirectionalSelfAttention: padding_mask must be bool"});
}
