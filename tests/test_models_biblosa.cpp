// models::TextClassifier (models/biblosa/text_classifier.h): the Bi-BloSAN sentence classifier and its DiSAN
// and multi-head baselines, as whole models. The layers themselves (DiSA, mBloSA, source2token) are checked
// against PyTorch and the spec's invariants in test_block_attention.cpp; this suite covers what the model
// adds: parameter counts (spec §4), padding and batch invariance of the logits, directional independence
// through the embedding, gradcheck of the whole loss, the L2 term, checkpoints, errors, and a short training
// run.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "loom/autograd/grad_mode.h"
#include "loom/autograd/gradcheck.h"
#include "loom/core/generator.h"
#include "loom/models/biblosa/encoders.h"
#include "loom/models/biblosa/text_classifier.h"
#include "loom/nn/block_attention.h"
#include "loom/nn/checkpoint_io.h"
#include "loom/nn/embedding.h"
#include "loom/nn/optim_adam.h"
#include "loom/ops/ops.h"
#include "support/expect.h"
#include "support/golden_file.h"

using namespace loom;
using models::TextClassifier;
using models::TextClassifierConfig;
using test::expect_close;
using test::expect_error;
using test::max_abs;

namespace {

const std::vector<std::string> kEncoders = {"biblosa", "disan", "multihead"};

TextClassifierConfig tiny(const std::string& encoder, bool pair = false) {
  TextClassifierConfig c;
  c.encoder = encoder;
  c.vocab_size = 20;
  c.num_classes = 3;
  c.embed_dim = 6;
  c.hidden_dim = 4;
  c.block_len = 3;
  c.heads = 2;
  c.activation = "elu";
  c.dropout = 0.0;
  c.pair = pair;
  return c;
}

// Every parameter redrawn (biases too, which start at 0), weights scaled by 1 / sqrt(fan_in), so no part of
// the model is trivially zero.
void randomize(nn::Module& m, uint64_t seed) {
  NoGradGuard no_grad;
  for (auto& [name, p] : m.named_parameters()) {
    double scale = p.dim() == 1 ? 0.3 : 1.2 / std::sqrt(static_cast<double>(p.size(p.dim() - 2)));
    if (name == "embedding.weight") scale = 1.0;
    Tensor t = p;
    t.copy_(test::normal(p.shape(), seed++, p.dtype(), scale));
  }
}

// Token ids [B, n]: sentence s has lengths[s] tokens in [2, vocab); padded positions hold `pad_id`, or random
// ids in [0, vocab) when pad_id < 0.
Tensor ids_for(const std::vector<int64_t>& lengths, int64_t n, uint64_t seed, int64_t pad_id = 0,
               int64_t vocab = 20) {
  std::vector<int64_t> ids;
  // Separate streams for real and padded positions: the real tokens do not depend on pad_id.
  uint64_t real = seed * 6364136223846793005ULL + 1442695040888963407ULL, padded = ~real;
  auto next = [](uint64_t& state, int64_t lo, int64_t hi) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + static_cast<int64_t>((state >> 33) % static_cast<uint64_t>(hi - lo));
  };
  for (int64_t len : lengths)
    for (int64_t t = 0; t < n; ++t)
      ids.push_back(t < len ? next(real, 2, vocab) : pad_id >= 0 ? pad_id : next(padded, 0, vocab));
  return tensor(ids, {static_cast<int64_t>(lengths.size()), n});
}

Tensor padding_for(const std::vector<int64_t>& lengths, int64_t n) {
  std::vector<bool> pad;
  for (int64_t len : lengths)
    for (int64_t t = 0; t < n; ++t) pad.push_back(t >= len);
  return tensor(pad, {static_cast<int64_t>(lengths.size()), n});
}

// Sentence s of ids [B, n] alone, cut to its length: [1, len].
Tensor alone(const Tensor& ids, int64_t s, int64_t len) {
  return ids.select(0, s).narrow(0, 0, len).unsqueeze(0).contiguous();
}

void set_row(Tensor& ids, int64_t s, int64_t t, int64_t value) {
  NoGradGuard no_grad;
  ids.select(0, s).narrow(0, t, 1).fill_(static_cast<double>(value));
}

}  // namespace

// ---- against PyTorch (tests/golden/biblosa_model/make_biblosa_model_golden.py) ----------------------------

namespace {

constexpr const char* kGoldenFile = "biblosa_model/biblosa_model.safetensors";

Tensor golden(const std::string& key) { return test::golden_tensor(kGoldenFile, key); }
std::string setting(const std::string& name, const std::string& key) {
  return test::golden_setting(kGoldenFile, name, key);
}

// Builds the case's model from its settings, loads PyTorch's parameters (load_state_dict also proves the
// names and shapes are the reference's), runs it in eval mode, backpropagates sum(logits * probe) and
// compares the logits and every parameter's gradient, the embedding's included.
void check_golden_case(const std::string& name, DType dtype) {
  SCOPED_TRACE(name + " " + dtype_name(dtype));
  TextClassifierConfig c;
  c.encoder = setting(name, "encoder");
  c.vocab_size = std::stoll(setting(name, "vocab"));
  c.num_classes = std::stoll(setting(name, "classes"));
  c.embed_dim = std::stoll(setting(name, "embed_dim"));
  c.hidden_dim = std::stoll(setting(name, "hidden_dim"));
  c.block_len = std::stoll(setting(name, "block_len"));
  c.heads = std::stoll(setting(name, "heads"));
  c.activation = setting(name, "activation");
  c.pair = setting(name, "pair") == "1";
  c.dropout = 0.0;
  TextClassifier m(c, dtype);
  std::map<std::string, Tensor> sd;
  for (const auto& [pname, t] : m.state_dict()) sd[pname] = golden(name + "/" + pname).to(dtype);
  m.load_state_dict(sd);
  m.eval();
  Tensor out = c.pair ? m.forward_pair(golden(name + "/ids"), golden(name + "/padding"),
                                       golden(name + "/ids2"), golden(name + "/padding2"))
                      : m.forward(golden(name + "/ids"), golden(name + "/padding"));
  sum(mul(out, golden(name + "/probe").to(dtype))).backward();
  const bool f32 = dtype == kFloat32;
  const double rtol = f32 ? 2e-4 : 1e-10, atol = f32 ? 2e-5 : 1e-11;
  expect_close(out, golden(name + "/output").to(dtype), rtol, atol, "logits");
  for (const auto& [pname, p] : m.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << pname;
    expect_close(p.grad(), golden(name + "/grad/" + pname).to(dtype), rtol, f32 ? 2e-4 : 1e-11,
                 "grad " + pname);
  }
}

}  // namespace

TEST(BiBloSAClassifierGolden, WholeClassifiersMatchPyTorch) {
  for (const char* name : {"biblosa_single", "biblosa_pair", "disan_pair", "multihead_single"})
    for (DType dtype : {kFloat64, kFloat32}) check_golden_case(name, dtype);
}

// ---- configuration and parameter counts (spec §4) ---------------------------------------------------------

TEST(BiBloSAClassifier, ParameterCountsOfThePapersModels) {
  struct Case {
    std::string encoder;
    int64_t d;
    int64_t want;
  };
  // Bi-BloSAN "480D" (d = 240): 2.8m; the code default d = 300; DiSAN 600D (d = 300, no highway): 2,345,403.
  for (const Case& k :
       {Case{"biblosa", 240, 2800803}, Case{"biblosa", 300, 4329003}, Case{"disan", 300, 2345403}}) {
    SCOPED_TRACE(k.encoder + " d " + std::to_string(k.d));
    TextClassifierConfig c;
    c.encoder = k.encoder;
    c.vocab_size = 7;
    c.num_classes = 3;
    c.embed_dim = 300;
    c.hidden_dim = k.d;
    c.pair = true;
    TextClassifier m(c);
    EXPECT_EQ(m.encoder_and_head_parameters(), k.want);
    EXPECT_EQ(m.num_parameters() - m.embedding->num_parameters(), k.want);
    EXPECT_EQ(m.embedding->num_parameters(), 7 * 300);
  }
}

TEST(BiBloSAClassifier, FormulaMatchesTheModulesForEveryEncoderAndHead) {
  for (const std::string& enc : kEncoders)
    for (bool pair : {false, true})
      for (int64_t classes : {2, 5}) {
        SCOPED_TRACE(enc + (pair ? " pair" : " single") + " C " + std::to_string(classes));
        TextClassifierConfig c = tiny(enc, pair);
        c.num_classes = classes;
        c.embed_dim = 10;
        c.hidden_dim = 6;
        c.heads = 3;
        TextClassifier m(c);
        EXPECT_EQ(m.encoder_and_head_parameters(), m.num_parameters() - m.embedding->num_parameters());
      }
  // The multi-head baseline at the reference's size: 8 heads x 75 from d_e = 300, W only.
  TextClassifierConfig c = tiny("multihead");
  c.embed_dim = 300;
  c.hidden_dim = 300;
  c.heads = 8;
  TextClassifier m(c);
  EXPECT_EQ(m.encoder->num_parameters(), 3 * 8 * 300 * 75);
  auto enc = std::dynamic_pointer_cast<models::MultiheadEncoder>(m.encoder);
  ASSERT_TRUE(enc);
  EXPECT_EQ(enc->head_dim(), 75);
}

TEST(BiBloSAClassifier, ParameterNames) {
  std::set<std::string> names;
  for (const auto& [name, p] : TextClassifier(tiny("biblosa", true)).named_parameters()) names.insert(name);
  for (const char* want :
       {"embedding.weight", "encoder.fw.fc.weight", "encoder.bw.inter_block.key_query.weight",
        "pooling.hidden.weight", "pooling.score.bias", "head.hidden.weight", "head.highway_transform.weight",
        "head.highway_gate.bias", "head.logits.bias"})
    EXPECT_EQ(names.count(want), 1u) << want;
  names.clear();
  for (const auto& [name, p] : TextClassifier(tiny("disan", true)).named_parameters()) names.insert(name);
  EXPECT_EQ(names.count("head.highway_gate.weight"), 0u) << "DiSAN's pair head has no highway";
  EXPECT_EQ(names.count("encoder.fw.gate_attn.weight"), 1u);
  names.clear();
  for (const auto& [name, p] : TextClassifier(tiny("multihead")).named_parameters()) names.insert(name);
  EXPECT_EQ(names, (std::set<std::string>{"embedding.weight", "encoder.weight", "pooling.hidden.weight",
                                          "pooling.hidden.bias", "pooling.score.weight", "pooling.score.bias",
                                          "head.hidden.weight", "head.hidden.bias", "head.logits.weight"}));
}

TEST(BiBloSAClassifier, ConfigStringAndErrors) {
  TextClassifierConfig c = tiny("biblosa", true);
  EXPECT_EQ(c.str(), "encoder=biblosa vocab=20 classes=3 d_e=6 d=4 r=3 heads=2 act=elu pair=1 parity=0");
  TextClassifierConfig bad = tiny("lstm");
  expect_error([&] { TextClassifier m(bad); }, {"TextClassifier", "encoder 'lstm'", "biblosa"});
  bad = tiny("multihead");
  bad.heads = 3;
  expect_error([&] { bad.resolved(); }, {"TextClassifier", "2d = 8", "3 heads"});
  bad = tiny("biblosa");
  bad.activation = "gelu";
  expect_error([&] { bad.resolved(); }, {"TextClassifier", "activation 'gelu'"});
  bad = tiny("biblosa");
  bad.dropout = 1.0;
  expect_error([&] { bad.resolved(); }, {"TextClassifier", "dropout", "[0, 1)"});
  bad = tiny("disan");
  bad.vocab_size = 0;
  expect_error([&] { bad.resolved(); }, {"TextClassifier", "vocab 0"});
  bad = tiny("biblosa");
  bad.block_len = -1;
  expect_error([&] { bad.resolved(); }, {"TextClassifier", "block_len", "-1"});
}

TEST(BiBloSAClassifier, InputErrorsNameTheOpAndShapes) {
  TextClassifier single(tiny("biblosa")), pair(tiny("biblosa", true));
  Tensor ids = ids_for({5, 3}, 5, 1), pad = padding_for({5, 3}, 5);
  expect_error([&] { pair.forward(ids, pad); },
               {"TextClassifier::forward", "pair", "forward_pair", "[2, 5]"});
  expect_error([&] { single.forward_pair(ids, pad, ids, pad); }, {"TextClassifier::forward_pair", "single"});
  expect_error([&] { single.forward(ids.to(kFloat32), pad); },
               {"TextClassifier::encode_tokens", "int64 [B, n]", "float32", "[2, 5]"});
  expect_error([&] { single.forward(ids.to(DType::Int32), pad); },
               {"TextClassifier::encode_tokens", "int32"});
  expect_error([&] { single.forward(ids.select(0, 0), Tensor()); }, {"TextClassifier::encode_tokens", "[5]"});
  expect_error([&] { single.forward(ids.unsqueeze(0), Tensor()); },
               {"TextClassifier::encode_tokens", "[1, 2, 5]"});
  expect_error(
      [&] {
        single.forward(ids, padding_for({4, 3}, 4));
      },
      {"TextClassifier::encode_tokens", "padding_mask must be bool [2, 5]", "[2, 4]"});
  expect_error(
      [&] {
        single.forward(ids, zeros({2, 5}, kInt64));
      },
      {"TextClassifier::encode_tokens", "padding_mask", "int64"});
  expect_error([&] { pair.forward_pair(ids, pad, ids.narrow(0, 0, 1), pad.narrow(0, 0, 1)); },
               {"TextClassifier::forward_pair", "differ", "[2, 5]", "[1, 5]"});
  expect_error(
      [&] {
        pair.forward_pair(ids, pad, ids, padding_for({5, 3, 1}, 5));
      },
      {"TextClassifier::forward_pair", "padding_mask", "[3, 5]"});
}

// ---- padding and batch invariance -------------------------------------------------------------------------

TEST(BiBloSAClassifier, PaddedIdsChangeNothing) {
  const std::vector<int64_t> lengths = {13, 5, 1, 8};
  const int64_t n = 13;
  for (const std::string& enc : kEncoders) {
    SCOPED_TRACE(enc);
    TextClassifier m(tiny(enc), kFloat64);
    randomize(m, 10);
    m.eval();
    NoGradGuard no_grad;
    Tensor pad = padding_for(lengths, n);
    Tensor zeros_ids = ids_for(lengths, n, 11, 0), random_ids = ids_for(lengths, n, 11, -1);
    ASSERT_GT(max_abs(sub(zeros_ids, random_ids).to(kFloat64)), 0.0);  // the padding did change
    Tensor a = m.forward(zeros_ids, pad), b = m.forward(random_ids, pad);
    expect_close(a, b, 0, 0, "logits with random ids at padding (bit-identical)");
    expect_close(m.encode(zeros_ids, pad), m.encode(random_ids, pad), 0, 0, "sentence vectors");
    // Extra padding columns (4 more blocks for biblosa, more masked keys for the others).
    Tensor wide = cat({random_ids, ids_for(lengths, 7, 12, -1)}, 1), wide_pad = padding_for(lengths, n + 7);
    expect_close(m.forward(wide, wide_pad), a, 1e-12, 1e-13, "logits with 7 more padding columns");
  }
}

TEST(BiBloSAClassifier, ASentenceAloneEqualsItInsideABatch) {
  const std::vector<int64_t> lengths = {13, 5, 1, 8};
  const int64_t n = 13;
  for (const std::string& enc : kEncoders)
    for (bool pair : {false, true}) {
      SCOPED_TRACE(enc + (pair ? " pair" : " single"));
      TextClassifier m(tiny(enc, pair), kFloat64);
      randomize(m, 20);
      m.eval();
      NoGradGuard no_grad;
      Tensor ids = ids_for(lengths, n, 21), pad = padding_for(lengths, n);
      Tensor other = ids_for({9, 9, 2, 4}, 9, 22), other_pad = padding_for({9, 9, 2, 4}, 9);
      Tensor batch = pair ? m.forward_pair(ids, pad, other, other_pad) : m.forward(ids, pad);
      ASSERT_EQ(batch.shape(), Shape({4, 3}));
      for (int64_t s = 1; s < 4; ++s) {
        const int64_t len = lengths[static_cast<size_t>(s)];
        const int64_t other_len = std::vector<int64_t>{9, 9, 2, 4}[static_cast<size_t>(s)];
        Tensor one = pair ? m.forward_pair(alone(ids, s, len), Tensor(), alone(other, s, other_len), Tensor())
                          : m.forward(alone(ids, s, len), Tensor());
        expect_close(one.select(0, 0), batch.select(0, s), 1e-12, 1e-13, "sentence " + std::to_string(s));
      }
    }
  // reference_parity reaches the encoder: with the TF code's behaviour the backward direction attends to the
  // empty blocks a longer batch-mate adds, so the same 5-token sentence gets other logits inside the batch.
  TextClassifierConfig c = tiny("biblosa");
  c.reference_parity = true;
  TextClassifier parity(c, kFloat64);
  randomize(parity, 20);
  parity.eval();
  NoGradGuard no_grad;
  Tensor ids = ids_for(lengths, n, 21), pad = padding_for(lengths, n);
  Tensor in_batch = parity.forward(ids, pad).select(0, 1);
  EXPECT_GT(max_abs(sub(in_batch, parity.forward(alone(ids, 1, 5), Tensor()).select(0, 0))), 1e-6);
}

TEST(BiBloSAClassifier, AnAllPaddingRowPoolsToZero) {
  for (const std::string& enc : kEncoders) {
    SCOPED_TRACE(enc);
    TextClassifier m(tiny(enc), kFloat64);
    randomize(m, 30);
    m.eval();
    NoGradGuard no_grad;
    Tensor ids = ids_for({6, 0}, 6, 31, -1), pad = padding_for({6, 0}, 6);
    Tensor s = m.encode(ids, pad);
    EXPECT_EQ(max_abs(s.select(0, 1)), 0.0);
    EXPECT_GT(max_abs(s.select(0, 0)), 0.0);
    EXPECT_TRUE(test::all_finite(m.forward(ids, pad)));
  }
}

// ---- directional independence through the embedding (spec T3 at the model level) --------------------------

TEST(BiBloSAClassifier, ChangingOneTokenLeavesTheBlocksItCannotReachAlone) {
  // r = 3, n = 13 (blocks {0-2} {3-5} {6-8} {9-11} {12}); token p = 7 (block 2) gets another id. The forward
  // half of U is exactly unchanged before block 2 and changes from block 2 on; the backward half is unchanged
  // after block 2 and changes up to block 2's end.
  const int64_t n = 13, p = 7, d = 4;
  TextClassifier m(tiny("biblosa"), kFloat64);
  randomize(m, 40);
  m.eval();
  NoGradGuard no_grad;
  Tensor ids = ids_for({13}, n, 41);
  Tensor moved = ids.clone();
  const int64_t old_id = ids.select(0, 0).select(0, p).item<int64_t>();
  set_row(moved, 0, p, old_id == 2 ? 3 : 2);
  Tensor a = m.encode_tokens(ids, Tensor()).select(0, 0), b = m.encode_tokens(moved, Tensor()).select(0, 0);
  ASSERT_EQ(a.shape(), Shape({n, 2 * d}));
  for (int64_t t = 0; t < n; ++t) {
    SCOPED_TRACE("token " + std::to_string(t));
    const double fw = max_abs(sub(a.select(0, t).narrow(0, 0, d), b.select(0, t).narrow(0, 0, d)));
    const double bw = max_abs(sub(a.select(0, t).narrow(0, d, d), b.select(0, t).narrow(0, d, d)));
    if (t < 6)
      EXPECT_EQ(fw, 0.0);
    else
      EXPECT_GT(fw, 1e-9);
    if (t >= 9)
      EXPECT_EQ(bw, 0.0);
    else
      EXPECT_GT(bw, 1e-9);
  }

  // DiSAN is directional at token level: forward outputs before p and backward outputs after p are unchanged.
  TextClassifier disan(tiny("disan"), kFloat64);
  randomize(disan, 42);
  disan.eval();
  a = disan.encode_tokens(ids, Tensor()).select(0, 0);
  b = disan.encode_tokens(moved, Tensor()).select(0, 0);
  for (int64_t t = 0; t < n; ++t) {
    SCOPED_TRACE("disan token " + std::to_string(t));
    const double fw = max_abs(sub(a.select(0, t).narrow(0, 0, d), b.select(0, t).narrow(0, 0, d)));
    const double bw = max_abs(sub(a.select(0, t).narrow(0, d, d), b.select(0, t).narrow(0, d, d)));
    if (t < p)
      EXPECT_EQ(fw, 0.0);
    else
      EXPECT_GT(fw, 1e-9);
    if (t > p)
      EXPECT_EQ(bw, 0.0);
    else
      EXPECT_GT(bw, 1e-9);
  }
}

// ---- the multi-head baseline ------------------------------------------------------------------------------

TEST(BiBloSAClassifier, MultiheadPositionsAreTheReferences) {
  // Interleaved sin / cos pairs with exponent 2 f / dim (f the feature index): dim 4 gives frequencies 1 and
  // 1e-4 (10000^(4/4)).
  Tensor pe = models::MultiheadEncoder::positions(3, 4, kFloat64);
  std::vector<double> want;
  for (double t : {0.0, 1.0, 2.0}) {
    want.insert(want.end(), {std::sin(t), std::cos(t), std::sin(t / 1e4), std::cos(t / 1e4)});
  }
  expect_close(pe, tensor(want, {3, 4}), 1e-15, 1e-15, "positions");
}

TEST(BiBloSAClassifier, MultiheadTrainingLayoutEqualsTheFusedEvalPath) {
  // With dropout 0 the training graph (input tiled per projection and head, explicit softmax) and the eval
  // graph (one packed GEMM, fused attention) compute the same logits.
  TextClassifier m(tiny("multihead"), kFloat64);
  randomize(m, 50);
  Tensor ids = ids_for({7, 3, 5}, 7, 51), pad = padding_for({7, 3, 5}, 7);
  NoGradGuard no_grad;
  m.train();
  Tensor train = m.forward(ids, pad);
  m.eval();
  expect_close(train, m.forward(ids, pad), 1e-12, 1e-13, "train vs eval graph");
  // With dropout the training graph is random (and reproducible from the seed); eval is not affected.
  TextClassifierConfig c = tiny("multihead");
  c.dropout = 0.3;
  TextClassifier drop(c, kFloat64);
  randomize(drop, 50);
  manual_seed(5);
  Tensor r1 = drop.forward(ids, pad);
  manual_seed(5);
  Tensor r2 = drop.forward(ids, pad);
  Tensor r3 = drop.forward(ids, pad);
  EXPECT_TRUE(test::identical(r1, r2));
  EXPECT_GT(max_abs(sub(r1, r3)), 1e-6);
  drop.eval();
  expect_close(drop.forward(ids, pad), m.forward(ids, pad), 1e-12, 1e-13, "eval ignores dropout");
}

// ---- L2 ---------------------------------------------------------------------------------------------------

TEST(BiBloSAClassifier, L2CoversDenseWeightsOnly) {
  TextClassifier m(tiny("biblosa", true), kFloat64);
  randomize(m, 60);
  const std::vector<std::string> names = m.decayed_parameter_names();
  const std::set<std::string> decayed(names.begin(), names.end());
  // mBloSA's intra-block W_kq is decayed (built with wd in TF); DiSA's W_1 / W_2 are not, nor biases, the
  // embedding or the 1-d f_bias / o_bias.
  EXPECT_EQ(decayed.count("encoder.fw.key_query.weight"), 1u);
  EXPECT_EQ(decayed.count("encoder.fw.inter_block.key_query.weight"), 0u);
  EXPECT_EQ(decayed.count("encoder.fw.inter_block.gate_in.weight"), 1u);
  EXPECT_EQ(decayed.count("embedding.weight"), 0u);
  EXPECT_EQ(decayed.count("head.highway_gate.weight"), 1u);
  EXPECT_EQ(decayed.count("head.logits.weight"), 1u);
  double want = 0;
  int64_t matrices = 0;
  for (const auto& [name, p] : m.named_parameters()) {
    if (name == "embedding.weight" || p.dim() < 2 ||
        name.find("inter_block.key_query") != std::string::npos) {
      EXPECT_EQ(decayed.count(name), 0u) << name;
      continue;
    }
    EXPECT_EQ(decayed.count(name), 1u) << name;
    want += 0.5 * sum(mul(p, p)).item<double>();
    ++matrices;
  }
  EXPECT_EQ(static_cast<int64_t>(names.size()), matrices);
  Tensor l2 = m.l2_penalty();
  EXPECT_EQ(l2.dim(), 0);
  EXPECT_EQ(l2.dtype(), kFloat64);
  EXPECT_NEAR(l2.item<double>(), want, 1e-12 * want);
  // Gradient: W itself for every decayed weight, none for the rest.
  l2.backward();
  expect_close(m.head->named_parameters()[0].second.grad(), m.head->named_parameters()[0].second, 0, 0,
               "dL2/dW");
  EXPECT_FALSE(m.embedding->weight.grad().defined());

  TextClassifier disan(tiny("disan"));
  const std::vector<std::string> dn = disan.decayed_parameter_names();
  EXPECT_EQ(std::count(dn.begin(), dn.end(), "encoder.fw.key_query.weight"), 0);
  EXPECT_EQ(std::count(dn.begin(), dn.end(), "encoder.bw.fc.weight"), 1);
  TextClassifier mh(tiny("multihead"));
  const std::vector<std::string> mn = mh.decayed_parameter_names();
  EXPECT_EQ(std::count(mn.begin(), mn.end(), "encoder.weight"), 1);
}

// ---- gradients --------------------------------------------------------------------------------------------

TEST(BiBloSAClassifier, GradcheckOfTheWholeLoss) {
  struct Case {
    std::string encoder;
    bool pair;
  };
  for (const Case& k :
       {Case{"biblosa", true}, Case{"biblosa", false}, Case{"disan", true}, Case{"multihead", false}}) {
    SCOPED_TRACE(k.encoder + (k.pair ? " pair" : " single"));
    TextClassifierConfig c = tiny(k.encoder, k.pair);
    c.vocab_size = 8;
    c.embed_dim = 4;
    c.hidden_dim = 3;
    c.heads = 2;
    c.block_len = 3;
    TextClassifier m(c, kFloat64);
    randomize(m, 70);
    m.eval();
    const std::vector<int64_t> lengths = {7, 4};
    Tensor ids = ids_for(lengths, 7, 71, 0, 8), pad = padding_for(lengths, 7);
    Tensor ids2 = ids_for({3, 5}, 5, 72, 0, 8), pad2 = padding_for({3, 5}, 5);
    Tensor target = tensor(std::vector<int64_t>{2, 0}, {2});
    std::vector<Tensor> inputs = {m.embedding->weight};
    for (const auto& [name, p] : m.named_parameters())
      if (name == "encoder.fw.fc.weight" || name == "encoder.bw.key_query.weight" ||
          name == "encoder.weight" || name == "pooling.hidden.weight" || name == "head.hidden.bias" ||
          name == "head.highway_gate.weight" || name == "head.logits.weight")
        inputs.push_back(p);
    ASSERT_GE(inputs.size(), 4u);
    auto loss = [&](const std::vector<Tensor>&) {
      Tensor logits = k.pair ? m.forward_pair(ids, pad, ids2, pad2) : m.forward(ids, pad);
      return add(cross_entropy(logits, target), mul(m.l2_penalty(), 0.1));
    };
    EXPECT_TRUE(gradcheck(loss, inputs));
  }
}

// ---- checkpoints ------------------------------------------------------------------------------------------

TEST(BiBloSAClassifier, CheckpointRoundTripGivesIdenticalLogits) {
  for (const std::string& enc : kEncoders) {
    SCOPED_TRACE(enc);
    manual_seed(80);
    TextClassifier a(tiny(enc, true));
    manual_seed(81);
    TextClassifier b(tiny(enc, true));
    Tensor ids = ids_for({6, 2}, 6, 82), pad = padding_for({6, 2}, 6);
    a.eval();
    b.eval();
    NoGradGuard no_grad;
    Tensor want = a.forward_pair(ids, pad, ids, pad);
    ASSERT_GT(max_abs(sub(want, b.forward_pair(ids, pad, ids, pad))), 1e-6);  // different before loading
    const std::string path =
        (std::filesystem::temp_directory_path() / ("loom_biblosa_ckpt_" + enc + ".safetensors")).string();
    nn::save_checkpoint(path, a, nullptr, {{"config", a.config().str()}});
    auto meta = nn::load_checkpoint(path, b);
    EXPECT_EQ(meta.at("config"), a.config().str());
    EXPECT_TRUE(test::identical(b.forward_pair(ids, pad, ids, pad), want));
    std::filesystem::remove(path);
  }
}

// ---- CUDA -------------------------------------------------------------------------------------------------

TEST(BiBloSAClassifier, CudaMatchesCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  const Device gpu(DeviceType::CUDA, 0);
  for (const std::string& enc : kEncoders) {
    SCOPED_TRACE(enc);
    TextClassifier cpu_model(tiny(enc, true), kFloat64), gpu_model(tiny(enc, true), kFloat64);
    randomize(cpu_model, 100);
    std::map<std::string, Tensor> sd;
    for (const auto& [name, t] : cpu_model.state_dict()) sd[name] = t;
    gpu_model.load_state_dict(sd);
    gpu_model.to(gpu);
    cpu_model.eval();
    gpu_model.eval();
    Tensor ids = ids_for({13, 5, 1}, 13, 101, -1), pad = padding_for({13, 5, 1}, 13);
    Tensor ids2 = ids_for({4, 9, 6}, 9, 102, -1), pad2 = padding_for({4, 9, 6}, 9);
    Tensor want = cpu_model.forward_pair(ids, pad, ids2, pad2);
    Tensor got = gpu_model.forward_pair(ids.cuda(), pad.cuda(), ids2.cuda(), pad2.cuda());
    Tensor probe = test::normal(want.shape(), 103);
    sum(mul(want, probe)).backward();
    sum(mul(got, probe.cuda())).backward();
    expect_close(got.cpu(), want, 1e-9, 1e-11, "logits");
    auto gpu_params = gpu_model.named_parameters();
    auto cpu_params = cpu_model.named_parameters();
    for (size_t i = 0; i < cpu_params.size(); ++i)
      expect_close(gpu_params[i].second.grad().cpu(), cpu_params[i].second.grad(), 1e-9, 1e-11,
                   "grad " + cpu_params[i].first);
  }
}

// ---- training sanity --------------------------------------------------------------------------------------

TEST(BiBloSAClassifier, LearnsWhetherAToken5Appears) {
  // 64 sentences of 3-9 tokens over ids 2..11 without 5; half get a 5 at a random place: class 1. A few dozen
  // Adam steps on the whole set must fit it.
  const int64_t count = 64, n = 9;
  std::vector<int64_t> ids, labels;
  std::vector<bool> pad;
  uint64_t state = 12345;
  auto next = [&](int64_t lo, int64_t hi) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + static_cast<int64_t>((state >> 33) % static_cast<uint64_t>(hi - lo));
  };
  for (int64_t s = 0; s < count; ++s) {
    const int64_t len = next(3, n + 1), label = s % 2;
    std::vector<int64_t> row;
    for (int64_t t = 0; t < len; ++t) {
      int64_t id = next(2, 11);
      row.push_back(id >= 5 ? id + 1 : id);  // 2..11 without 5
    }
    if (label == 1) row[static_cast<size_t>(next(0, len))] = 5;
    for (int64_t t = 0; t < n; ++t) {
      ids.push_back(t < len ? row[static_cast<size_t>(t)] : 0);
      pad.push_back(t >= len);
    }
    labels.push_back(label);
  }
  Tensor x = tensor(ids, {count, n}), mask = tensor(pad, {count, n}), y = tensor(labels, {count});

  const auto start = std::chrono::steady_clock::now();
  manual_seed(90);
  TextClassifierConfig c = tiny("biblosa");
  c.vocab_size = 12;
  c.num_classes = 2;
  c.embed_dim = 8;
  c.hidden_dim = 8;
  c.activation = "relu";
  c.dropout = 0.0;
  TextClassifier m(c);
  nn::Adam opt(m.named_parameters(), 1e-2);
  double first_loss = 0, last_loss = 0;
  for (int step = 0; step < 40; ++step) {
    opt.zero_grad();
    Tensor loss = add(cross_entropy(m.forward(x, mask), y), mul(m.l2_penalty(), 1e-4));
    loss.backward();
    opt.step();
    (step == 0 ? first_loss : last_loss) = loss.item<double>();
  }
  m.eval();
  NoGradGuard no_grad;
  Tensor predicted = argmax(m.forward(x, mask), 1);
  const double accuracy = sum(eq(predicted, y).to(kFloat64)).item<double>() / static_cast<double>(count);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ synthetic ] loss %.4f -> %.4f, train accuracy %.3f, %.2f s\n", first_loss, last_loss,
              accuracy, seconds);
  EXPECT_GE(accuracy, 0.9);
  EXPECT_LT(last_loss, first_loss);
}
