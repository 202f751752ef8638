// nn modules: registration and dotted names, modes, moves, state dicts; Linear, LayerNorm, Embedding, Dropout,
// Sequential and the initialisers against hand-computed values; MultiheadAttention and TransformerBlock against
// a loop-by-loop computation and PyTorch (tests/golden/nn/modules.safetensors, from make_nn_golden.py).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "loom/autograd/profiler.h"
#include "loom/loom.h"
#include "support/compare.h"
#include "support/expect.h"
#include "support/golden_file.h"

using namespace loom;
using test::expect_close;
using test::expect_error;

namespace {

std::vector<std::string> names_of(const nn::NamedTensors& named) {
  std::vector<std::string> out;
  for (const auto& [name, t] : named) out.push_back(name);
  return out;
}

// A module with its own parameter registered after a child, a buffer, and a nested Sequential.
struct Net : nn::Module {
  Net() : Module("Net") {
    embed = register_module("embed", std::make_shared<nn::Embedding>(10, 4));
    blocks = register_module("blocks", std::make_shared<nn::Sequential>());
    blocks->push_back(std::make_shared<nn::Linear>(4, 4));
    blocks->push_back(std::make_shared<nn::GELU>());
    blocks->push_back(std::make_shared<nn::Linear>(4, 2, false));
    scale = register_parameter("scale", ones({2}));
    register_buffer("positions", arange(3.0));
  }
  std::shared_ptr<nn::Embedding> embed;
  std::shared_ptr<nn::Sequential> blocks;
  Tensor scale;
};

// ---- Module ------------------------------------------------------------------------------------------------

TEST(Module, NamedParametersAreDottedAndInRegistrationOrder) {
  Net net;
  // Own parameters first (PyTorch's order), then children depth first.
  EXPECT_EQ(names_of(net.named_parameters()),
            (std::vector<std::string>{"scale", "embed.weight", "blocks.0.weight", "blocks.0.bias",
                                      "blocks.2.weight"}));
  EXPECT_EQ(names_of(net.named_parameters(/*recurse=*/false)), (std::vector<std::string>{"scale"}));
  EXPECT_EQ(names_of(net.named_buffers()), (std::vector<std::string>{"positions"}));
  EXPECT_EQ(names_of(net.state_dict()),
            (std::vector<std::string>{"scale", "embed.weight", "blocks.0.weight", "blocks.0.bias",
                                      "blocks.2.weight", "positions"}));
  EXPECT_EQ(net.num_parameters(), 2 + 40 + 16 + 4 + 8);
  std::vector<std::string> modules;
  for (const auto& [name, m] : net.named_modules()) modules.push_back(name + ":" + m->name());
  EXPECT_EQ(modules, (std::vector<std::string>{"embed:Embedding", "blocks:Sequential", "blocks.0:Linear",
                                               "blocks.1:GELU", "blocks.2:Linear"}));
  for (const Tensor& p : net.parameters()) EXPECT_TRUE(p.requires_grad());
  EXPECT_FALSE(net.named_buffers()[0].second.requires_grad());
}

TEST(Module, TransformerBlockNames) {
  nn::TransformerBlock block(8, 2);
  EXPECT_EQ(names_of(block.named_parameters()),
            (std::vector<std::string>{"ln1.weight", "ln1.bias", "attn.in_proj_weight", "attn.in_proj_bias",
                                      "attn.out_proj.weight", "attn.out_proj.bias", "ln2.weight", "ln2.bias",
                                      "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}));
  EXPECT_EQ(block.fc1->weight.shape(), (Shape{32, 8}));
  EXPECT_EQ(block.num_parameters(), 2 * 8 + (24 * 8 + 24) + (64 + 8) + 2 * 8 + (32 * 8 + 32) + (8 * 32 + 8));
}

TEST(Module, TiedParametersAreListedOnce) {
  struct Tied : nn::Module {
    Tied() : Module("Tied") {
      embed = register_module("embed", std::make_shared<nn::Embedding>(5, 3));
      head = register_module("head", std::make_shared<nn::Linear>(3, 5, false));
      head->weight = embed->weight;  // the member only; the registry still holds the head's own weight
    }
    std::shared_ptr<nn::Embedding> embed;
    std::shared_ptr<nn::Linear> head;
  } tied;
  EXPECT_EQ(tied.named_parameters().size(), 2u);

  struct Shared : nn::Module {
    Shared() : Module("Shared") {
      Tensor w = zeros({3});
      register_parameter("a", w);
      register_parameter("b", w);
    }
  } shared;
  EXPECT_EQ(names_of(shared.named_parameters()), (std::vector<std::string>{"a"}));
}

TEST(Module, RegistrationErrors) {
  nn::Module m("Custom");
  m.register_parameter("w", zeros({2}));
  expect_error([&] { m.register_parameter("w", zeros({2})); }, {"Custom.register_parameter", "'w'", "already"});
  expect_error([&] { m.register_buffer("w", zeros({2})); }, {"Custom.register_buffer", "already"});
  expect_error([&] { m.register_parameter("a.b", zeros({2})); }, {"must not contain '.'"});
  expect_error([&] { m.register_parameter("", zeros({2})); }, {"must not be empty"});
  expect_error([&] { m.register_parameter("i", zeros({2}, kInt64)); }, {"floating point", "int64"});
  expect_error([&] { m.register_module("child", std::shared_ptr<nn::Module>()); }, {"null"});
  expect_error([&] { m.forward(zeros({2})); }, {"Custom", "no single-input forward"});
}

TEST(Module, TrainEvalIsRecursive) {
  Net net;
  EXPECT_TRUE(net.is_training());
  net.eval();
  EXPECT_FALSE(net.is_training());
  for (const auto& [name, m] : net.named_modules()) EXPECT_FALSE(m->is_training()) << name;
  net.train();
  for (const auto& [name, m] : net.named_modules()) EXPECT_TRUE(m->is_training()) << name;
  net.blocks->train(false);
  EXPECT_TRUE(net.is_training());
  EXPECT_FALSE((*net.blocks)[0]->is_training());
}

TEST(Module, ZeroGradDropsGradients) {
  nn::Linear lin(3, 2);
  lin.weight.set_grad(ones({2, 3}));
  lin.bias.set_grad(ones({2}));
  lin.zero_grad();
  EXPECT_FALSE(lin.weight.grad().defined());
  EXPECT_FALSE(lin.bias.grad().defined());
}

TEST(Module, ToDTypeConvertsInPlaceSoHandlesFollow) {
  nn::Linear lin(3, 2);
  Tensor held = lin.named_parameters()[0].second;  // e.g. an optimizer's handle
  std::vector<float> before = lin.weight.to_vector<float>();
  lin.weight.set_grad(full({2, 3}, 0.5));
  lin.to(DType::Float64);
  EXPECT_EQ(lin.weight.dtype(), DType::Float64);
  EXPECT_EQ(held.dtype(), DType::Float64);
  EXPECT_TRUE(held.is_same(lin.weight));
  EXPECT_TRUE(lin.weight.requires_grad());
  EXPECT_EQ(lin.weight.grad().dtype(), DType::Float64);
  std::vector<double> after = lin.weight.to_vector<double>();
  for (size_t i = 0; i < before.size(); ++i) EXPECT_EQ(after[i], static_cast<double>(before[i]));
  // Integer buffers keep their dtype.
  Net net;
  net.to(DType::Float64);
  EXPECT_EQ(net.named_buffers()[0].second.dtype(), DType::Int64);
  expect_error([&] { net.to(DType::Int32); }, {"Net.to", "floating"});
}

TEST(Module, ToCudaMovesParametersAndGrads) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  nn::Linear lin(3, 2);
  Tensor held = lin.weight;
  lin.weight.set_grad(ones({2, 3}));
  Tensor x = randn({4, 3});
  Tensor want = lin.forward(x);
  lin.to(kCUDA);
  EXPECT_TRUE(held.device().is_cuda());
  EXPECT_TRUE(lin.weight.grad().device().is_cuda());
  expect_close(lin.forward(x.cuda()).cpu(), want, 1e-5, 1e-5);
  lin.to(kCPU);
  EXPECT_TRUE(held.device().is_cpu());
}

TEST(Module, LoadStateDictChecksEverythingFirst) {
  Net a, b;
  std::map<std::string, Tensor> sd;
  for (const auto& [name, t] : a.state_dict()) sd[name] = t.detach().clone();
  b.load_state_dict(sd);
  for (const auto& [name, t] : b.state_dict()) EXPECT_TRUE(allclose(t, sd.at(name), 0, 0)) << name;

  Net c;
  std::map<std::string, Tensor> snapshot;
  for (const auto& [name, t] : c.state_dict()) snapshot[name] = t.detach().clone();
  auto bad = sd;
  bad.erase("blocks.0.bias");
  bad["extra"] = zeros({1});
  bad["embed.weight"] = zeros({10, 5});
  bad["scale"] = zeros({2}, DType::Float64);
  expect_error([&] { c.load_state_dict(bad); },
               {"Net.load_state_dict: nothing was loaded", "missing tensor 'blocks.0.bias'", "unexpected tensor 'extra'",
                "'embed.weight' is float32[10, 5] but the module's is float32[10, 4]", "'scale' is float64"});
  for (const auto& [name, t] : c.state_dict()) EXPECT_TRUE(allclose(t, snapshot.at(name), 0, 0)) << name;
}

// ---- layers --------------------------------------------------------------------------------------------

TEST(Linear, ForwardMatchesHandComputation) {
  nn::Linear lin(3, 2);
  {
    NoGradGuard no_grad;
    lin.weight.copy_(tensor<float>({1, 2, 3, -1, 0.5f, 2}, {2, 3}));
    lin.bias.copy_(tensor<float>({0.5f, -1}));
  }
  Tensor x = tensor<float>({1, 0, -1, 2, 1, 0.5f}, {2, 3});
  // row 0: [1 - 3 + 0.5, -1 - 2 - 1]; row 1: [2 + 2 + 1.5 + 0.5, -2 + 0.5 + 1 - 1]
  expect_close(lin.forward(x), tensor<float>({-1.5f, -4, 6, -1.5f}, {2, 2}), 1e-5, 1e-5);
  // Leading dims pass through.
  EXPECT_EQ(lin.forward(zeros({4, 5, 3})).shape(), (Shape{4, 5, 2}));
  expect_error([&] { lin.forward(zeros({2, 4})); }, {"Linear(3, 2)", "[2, 4]"});
}

TEST(Linear, PyTorchDefaultInitBounds) {
  manual_seed(7);
  nn::Linear lin(25, 64);
  double bound = 1.0 / std::sqrt(25.0);  // kaiming_uniform_(a = sqrt(5)) on fan_in 25
  std::vector<float> w = lin.weight.to_vector<float>();
  double lo = 1, hi = -1;
  for (float v : w) lo = std::min(lo, double(v)), hi = std::max(hi, double(v));
  EXPECT_GE(lo, -bound);
  EXPECT_LE(hi, bound);
  EXPECT_LT(lo, -0.8 * bound);  // 1600 draws cover the range
  EXPECT_GT(hi, 0.8 * bound);
  for (float v : lin.bias.to_vector<float>()) EXPECT_LE(std::fabs(v), bound);
  nn::Linear no_bias(4, 3, false);
  EXPECT_FALSE(no_bias.bias.defined());
  EXPECT_EQ(no_bias.named_parameters().size(), 1u);
  // Same seed, same weights.
  manual_seed(7);
  nn::Linear again(25, 64);
  EXPECT_TRUE(allclose(again.weight, lin.weight, 0, 0));
}

TEST(LayerNorm, ForwardMatchesHandComputation) {
  nn::LayerNorm ln(4, 1e-5);
  EXPECT_EQ(ln.weight.to_vector<float>(), std::vector<float>(4, 1.0f));
  EXPECT_EQ(ln.bias.to_vector<float>(), std::vector<float>(4, 0.0f));
  {
    NoGradGuard no_grad;
    ln.weight.copy_(tensor<float>({1, 2, 0.5f, -1}));
    ln.bias.copy_(tensor<float>({0, 1, 0, 0.25f}));
  }
  std::vector<float> xs = {1, 2, 3, 4, -2, 0, 0, 6};
  Tensor y = ln.forward(tensor<float>(xs, {2, 4}));
  std::vector<double> w = {1, 2, 0.5, -1}, b = {0, 1, 0, 0.25}, want;
  for (int r = 0; r < 2; ++r) {
    double mean = 0, var = 0;
    for (int i = 0; i < 4; ++i) mean += xs[r * 4 + i] / 4.0;
    for (int i = 0; i < 4; ++i) var += (xs[r * 4 + i] - mean) * (xs[r * 4 + i] - mean) / 4.0;  // biased
    for (int i = 0; i < 4; ++i) want.push_back((xs[r * 4 + i] - mean) / std::sqrt(var + 1e-5) * w[i] + b[i]);
  }
  expect_close(y, tensor<double>(want, {2, 4}).to(DType::Float32), 1e-5, 1e-5);
  nn::LayerNorm plain(Shape{2, 2}, 1e-5, /*elementwise_affine=*/false);
  EXPECT_TRUE(plain.named_parameters().empty());
  EXPECT_EQ(plain.forward(randn({3, 2, 2})).shape(), (Shape{3, 2, 2}));
}

TEST(Embedding, LooksUpRowsAndInitsStandardNormal) {
  manual_seed(3);
  nn::Embedding big(1000, 64);
  std::vector<float> w = big.weight.to_vector<float>();
  double mean = 0, sq = 0;
  for (float v : w) mean += v, sq += double(v) * v;
  mean /= double(w.size());
  double std = std::sqrt(sq / double(w.size()) - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(std, 1.0, 0.01);

  nn::Embedding emb(4, 2);
  {
    NoGradGuard no_grad;
    emb.weight.copy_(tensor<float>({0, 1, 10, 11, 20, 21, 30, 31}, {4, 2}));
  }
  Tensor out = emb.forward(tensor<int64_t>({3, 0, 2, 2}, {2, 2}));
  EXPECT_EQ(out.shape(), (Shape{2, 2, 2}));
  EXPECT_EQ(out.to_vector<float>(), (std::vector<float>{30, 31, 0, 1, 20, 21, 20, 21}));
}

TEST(Dropout, ActiveOnlyWhileTraining) {
  nn::Dropout drop(0.5);
  Tensor x = ones({4000});
  std::vector<float> y = drop.forward(x).to_vector<float>();
  int zeros_seen = 0;
  for (float v : y) {
    EXPECT_TRUE(v == 0.0f || v == 2.0f) << v;
    zeros_seen += v == 0.0f;
  }
  EXPECT_GT(zeros_seen, 1700);
  EXPECT_LT(zeros_seen, 2300);
  drop.eval();
  EXPECT_TRUE(allclose(drop.forward(x), x, 0, 0));
  expect_error([] { nn::Dropout(1.5); }, {"Dropout", "1.5"});
}

TEST(Sequential, AppliesInOrder) {
  auto seq = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Functional>([](const Tensor& x) { return mul(x, 2.0); }), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::Functional>([](const Tensor& x) { return add(x, 1.0); })});
  EXPECT_EQ(seq->size(), 3u);
  EXPECT_EQ(seq->forward(tensor<float>({-1, 0.5f, 2})).to_vector<float>(), (std::vector<float>{1, 2, 5}));
  expect_error([&] { (*seq)[3]; }, {"Sequential", "index 3"});
}

// ---- init --------------------------------------------------------------------------------------------------

TEST(Init, BoundsFansAndConstants) {
  Tensor w = empty({30, 20, 2});
  nn::init::Fans fans = nn::init::calculate_fans(w);
  EXPECT_EQ(fans.fan_in, 40);
  EXPECT_EQ(fans.fan_out, 60);
  auto range = [](const Tensor& t) {
    std::vector<float> v = t.to_vector<float>();
    return std::pair<double, double>(*std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()));
  };
  double xavier = std::sqrt(6.0 / 100.0);
  nn::init::xavier_uniform_(w);
  auto [lo, hi] = range(w);
  EXPECT_GE(lo, -xavier);
  EXPECT_LE(hi, xavier);
  EXPECT_GT(hi, 0.9 * xavier);
  double kaiming = std::sqrt(2.0) * std::sqrt(3.0 / 40.0);  // relu gain, fan_in
  nn::init::kaiming_uniform_(w, 0.0, "fan_in", "relu");
  std::tie(lo, hi) = range(w);
  EXPECT_GE(lo, -kaiming);
  EXPECT_LE(hi, kaiming);
  EXPECT_GT(hi, 0.9 * kaiming);
  nn::init::uniform_(w, 2, 3);
  std::tie(lo, hi) = range(w);
  EXPECT_GE(lo, 2);
  EXPECT_LT(hi, 3);

  Tensor big = empty({200, 300});
  nn::init::xavier_normal_(big, 2.0);
  double sq = 0;
  for (float v : big.to_vector<float>()) sq += double(v) * v;
  EXPECT_NEAR(std::sqrt(sq / 60000.0), 2.0 * std::sqrt(2.0 / 500.0), 0.002);

  nn::init::ones_(big);
  EXPECT_EQ(sum(big).item<float>(), 60000.0f);
  nn::init::zeros_(big);
  EXPECT_EQ(sum(big).item<float>(), 0.0f);
  // In place on a view, and on a parameter that requires grad (under the init's NoGradGuard).
  Tensor p = zeros({4, 4});
  p.requires_grad_();
  nn::init::constant_(p.narrow(0, 1, 2), 3.0);
  EXPECT_EQ(sum(p.detach()).item<float>(), 24.0f);
  EXPECT_NEAR(nn::init::calculate_gain("leaky_relu", std::sqrt(5.0)), std::sqrt(1.0 / 3.0), 1e-15);
  EXPECT_NEAR(nn::init::calculate_gain("tanh"), 5.0 / 3.0, 1e-15);
  expect_error([] { nn::init::xavier_uniform_(empty({5})); }, {"xavier_uniform_", "fewer than 2 dims", "[5]"});
  expect_error([] { nn::init::calculate_gain("swish"); }, {"calculate_gain", "swish"});
}

// ---- MultiheadAttention ----------------------------------------------------------------------------------

// Attention written out as loops in double, from the module's weights: the reference for masks.
std::vector<double> manual_attention(nn::MultiheadAttention& mha, const Tensor& query, const Tensor& kv,
                                     const std::vector<std::vector<bool>>& padding, bool causal) {
  const int64_t e = mha.embed_dim(), h = mha.num_heads(), d = mha.head_dim();
  const int64_t b = query.size(0), l = query.size(1), s = kv.size(1);
  std::vector<double> w = mha.in_proj_weight.to(DType::Float64).to_vector<double>();
  std::vector<double> bias = mha.in_proj_bias.to(DType::Float64).to_vector<double>();
  std::vector<double> wo = mha.out_proj->weight.to(DType::Float64).to_vector<double>();
  std::vector<double> bo = mha.out_proj->bias.to(DType::Float64).to_vector<double>();
  std::vector<double> xq = query.to(DType::Float64).to_vector<double>();
  std::vector<double> xkv = kv.to(DType::Float64).to_vector<double>();
  auto project = [&](const std::vector<double>& x, int64_t rows, int64_t block) {
    std::vector<double> out(b * rows * e);
    for (int64_t i = 0; i < b * rows; ++i)
      for (int64_t j = 0; j < e; ++j) {
        double acc = bias[block * e + j];
        for (int64_t c = 0; c < e; ++c) acc += x[i * e + c] * w[(block * e + j) * e + c];
        out[i * e + j] = acc;
      }
    return out;
  };
  std::vector<double> q = project(xq, l, 0), k = project(xkv, s, 1), v = project(xkv, s, 2);
  std::vector<double> ctx(b * l * e, 0.0);
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t hi = 0; hi < h; ++hi)
      for (int64_t t = 0; t < l; ++t) {
        std::vector<double> p(s, 0.0);
        double mx = -INFINITY, total = 0;
        for (int64_t u = 0; u < s; ++u) {
          if ((causal && u > t) || (!padding.empty() && padding[bi][u])) continue;
          double dot = 0;
          for (int64_t c = 0; c < d; ++c) dot += q[(bi * l + t) * e + hi * d + c] * k[(bi * s + u) * e + hi * d + c];
          p[u] = dot / std::sqrt(double(d));
          mx = std::max(mx, p[u]);
        }
        for (int64_t u = 0; u < s; ++u) {
          bool masked = (causal && u > t) || (!padding.empty() && padding[bi][u]);
          p[u] = masked ? 0.0 : std::exp(p[u] - mx);
          total += p[u];
        }
        for (int64_t u = 0; u < s; ++u)
          for (int64_t c = 0; c < d; ++c)
            ctx[(bi * l + t) * e + hi * d + c] += p[u] / total * v[(bi * s + u) * e + hi * d + c];
      }
  std::vector<double> out(b * l * e);
  for (int64_t i = 0; i < b * l; ++i)
    for (int64_t j = 0; j < e; ++j) {
      double acc = bo[j];
      for (int64_t c = 0; c < e; ++c) acc += ctx[i * e + c] * wo[j * e + c];
      out[i * e + j] = acc;
    }
  return out;
}

void randomise(nn::Module& m, uint64_t seed) {
  manual_seed(seed);
  for (const Tensor& p : m.parameters()) nn::init::normal_(p, 0.0, 0.3);
}

TEST(MultiheadAttention, CausalMaskMatchesManualComputation) {
  nn::MultiheadAttention mha(8, 2);
  randomise(mha, 11);
  Tensor x = randn({2, 5, 8});
  std::vector<double> want = manual_attention(mha, x, x, {}, /*causal=*/true);
  Tensor out = mha.forward(x, x, x, Tensor(), Tensor(), /*is_causal=*/true);
  expect_close(out, tensor<double>(want, {2, 5, 8}).to(DType::Float32), 1e-5, 1e-5);
  // The same mask given explicitly as a bool [L, S] mask, and as a float -inf mask.
  Tensor mask = triu(ones({5, 5}, DType::Bool), 1);
  expect_close(mha.forward(x, x, x, mask), out, 1e-6, 1e-6);
  Tensor additive = masked_fill(zeros({5, 5}), mask, -INFINITY);
  expect_close(mha.forward(x, x, x, additive), out, 1e-6, 1e-6);
  // The first query sees only the first key: its weights are one-hot.
  Tensor weights = mha.forward_with_weights(x, x, x, Tensor(), Tensor(), true).weights;
  EXPECT_EQ(weights.shape(), (Shape{2, 2, 5, 5}));
  expect_close(weights.select(2, 0).select(1, 0).select(0, 0), tensor<float>({1, 0, 0, 0, 0}), 0, 1e-7);
}

TEST(MultiheadAttention, PaddedKeysHaveNoEffect) {
  nn::MultiheadAttention mha(8, 4);
  randomise(mha, 12);
  Tensor q = randn({2, 3, 8});
  Tensor kv = randn({2, 6, 8});
  Tensor padding = tensor<bool>({false, false, false, false, false, false, false, false, false, true, true, true}, {2, 6});
  Tensor out = mha.forward(q, kv, kv, Tensor(), padding);
  std::vector<std::vector<bool>> pad = {{false, false, false, false, false, false},
                                        {false, false, false, true, true, true}};
  expect_close(out, tensor<double>(manual_attention(mha, q, kv, pad, false), {2, 3, 8}).to(DType::Float32), 1e-5,
               1e-5);
  // Scribbling over the padded keys changes nothing.
  Tensor changed = kv.clone();
  {
    NoGradGuard no_grad;
    changed.select(0, 1).narrow(0, 3, 3).copy_(full({3, 8}, 100.0));
  }
  EXPECT_TRUE(allclose(mha.forward(q, changed, changed, Tensor(), padding), out, 0, 0));
  // Self-attention: padded positions still change their own rows, but no other row.
  Tensor x = randn({2, 6, 8});
  Tensor x2 = x.clone();
  {
    NoGradGuard no_grad;
    x2.select(0, 1).narrow(0, 3, 3).copy_(full({3, 8}, -50.0));
  }
  Tensor a = mha.forward(x, x, x, Tensor(), padding), b = mha.forward(x2, x2, x2, Tensor(), padding);
  EXPECT_TRUE(allclose(a.select(0, 0), b.select(0, 0), 0, 0));
  EXPECT_TRUE(allclose(a.select(0, 1).narrow(0, 0, 3), b.select(0, 1).narrow(0, 0, 3), 0, 0));
}

TEST(MultiheadAttention, PackedProjectionEqualsSeparateOnes) {
  nn::MultiheadAttention mha(12, 3);
  randomise(mha, 13);
  Tensor x = randn({2, 4, 12});
  Tensor packed = mha.forward(x, x, x);                        // one [3E, E] GEMM
  Tensor kv_shared = mha.forward(x, x.clone(), x.clone());     // query separate, three GEMMs
  Tensor kv_pair = mha.forward(x.clone(), x, x);               // query separate, one [2E, E] GEMM for k, v
  expect_close(kv_shared, packed, 1e-5, 1e-6);
  expect_close(kv_pair, packed, 1e-5, 1e-6);
  expect_close(mha.forward(x), packed, 0, 0);
  // Unbatched input is a batch of one.
  expect_close(mha.forward(x.select(0, 1), x.select(0, 1), x.select(0, 1)), packed.select(0, 1), 1e-6, 1e-6);
  // A query whose every key is masked gets zero weights, not NaN.
  Tensor all_masked = ones({4, 4}, DType::Bool);
  Tensor w = mha.forward_with_weights(x, x, x, all_masked).weights;
  EXPECT_EQ(sum(w).item<float>(), 0.0f);
}

TEST(MultiheadAttention, ProjectedKeyValueEqualsProjectingInForward) {
  // forward(query, project_key_value(key, value)) is forward(query, key, value): outputs and the gradients of
  // the parameters, the query and the keys, with key == value (one [2E, E] GEMM) and without, masks included.
  nn::MultiheadAttention mha(8, 2, 0.0, true, TensorOptions(kFloat64));
  randomise(mha, 15);
  Tensor padding = tensor(std::vector<double>{0, 0, 0, 0, 1, 0, 0, 0, 0, 0}, {2, 5}).to(kBool);
  for (bool same_key_value : {true, false})
    for (bool causal : {false, true}) {
      SCOPED_TRACE(std::string(same_key_value ? "key == value" : "key != value") +
                   (causal ? ", causal" : ""));
      Tensor q = randn({2, 4, 8}, kFloat64).requires_grad_(), k = randn({2, 5, 8}, kFloat64).requires_grad_();
      Tensor v = same_key_value ? k : randn({2, 5, 8}, kFloat64).requires_grad_();
      Tensor c = randn({2, 4, 8}, kFloat64);
      auto grads = [&](const Tensor& out) {
        mha.zero_grad();
        for (const Tensor& t : {q, k, v}) t.set_grad(Tensor());
        sum(out * c).backward();
        std::vector<Tensor> g{q.grad().clone(), k.grad().clone(), v.grad().clone()};
        for (auto& p : mha.parameters()) g.push_back(p.grad().clone());
        return g;
      };
      Tensor want = mha.forward(q, k, v, Tensor(), padding, causal);
      std::vector<Tensor> want_grads = grads(want);
      Tensor got;
      {
        // key == value gives one packed projection, which the fused op takes whole (one gradient for both).
        autograd::Profiler profiler;
        got = mha.forward(q, mha.project_key_value(k, v), Tensor(), padding, causal);
        int64_t packed_calls = 0;
        for (const auto& e : profiler.entries())
          if (e.name == "scaled_dot_product_attention_kv_packed") packed_calls = e.calls;
        EXPECT_EQ(packed_calls, same_key_value ? 1 : 0);
      }
      expect_close(got, want, 1e-12, 1e-12);
      std::vector<Tensor> got_grads = grads(got);
      for (size_t i = 0; i < got_grads.size(); ++i) expect_close(got_grads[i], want_grads[i], 1e-12, 1e-12);
    }
  // One projection serves several queries; the keys' gradient is the sum of theirs.
  Tensor k = randn({2, 5, 8}, kFloat64).requires_grad_();
  Tensor q1 = randn({2, 3, 8}, kFloat64), q2 = randn({2, 6, 8}, kFloat64);
  Tensor c1 = randn({2, 3, 8}, kFloat64), c2 = randn({2, 6, 8}, kFloat64);
  sum(mha.forward(q1, k, k) * c1).backward();
  sum(mha.forward(q2, k, k) * c2).backward();
  Tensor want_grad = k.grad().clone();
  k.set_grad(Tensor());
  auto kv = mha.project_key_value(k, k);
  Tensor out1 = mha.forward(q1, kv), out2 = mha.forward(q2, kv);
  expect_close(out1, mha.forward(q1, k, k), 1e-12, 1e-12);
  expect_close(out2, mha.forward(q2, k, k), 1e-12, 1e-12);
  (sum(out1 * c1) + sum(out2 * c2)).backward();
  expect_close(k.grad(), want_grad, 1e-12, 1e-12);
  expect_error(
      [&] {
        mha.project_key_value(randn({2, 5, 6}, kFloat64), randn({2, 5, 6}, kFloat64));
      },
      {"project_key_value", "[2, 5, 6]"});
  expect_error(
      [&] {
        mha.project_key_value(k, randn({2, 4, 8}, kFloat64));
      },
      {"project_key_value", "[2, 4, 8]"});
  expect_error(
      [&] {
        mha.forward(randn({3, 4, 8}, kFloat64), kv);
      },
      {"MultiheadAttention", "[2, 2, 5, 4]", "[3, 4, 8]"});
  expect_error(
      [&] {
        mha.forward(q1, kv, Tensor(), ones({2, 4}, DType::Bool));
      },
      {"key_padding_mask", "[2, 4]"});
}

TEST(MultiheadAttention, ArgumentErrors) {
  expect_error([] { nn::MultiheadAttention(10, 3); }, {"MultiheadAttention", "10", "divisible", "3"});
  nn::MultiheadAttention mha(8, 2);
  Tensor x = randn({2, 5, 8});
  expect_error([&] { mha.forward(randn({2, 5, 6})); }, {"MultiheadAttention", "[2, 5, 6]"});
  expect_error([&] { mha.forward(x, x, x, ones({4, 5}, DType::Bool)); }, {"attn_mask", "[4, 5]"});
  expect_error([&] { mha.forward(x, x, x, Tensor(), ones({2, 4}, DType::Bool)); }, {"key_padding_mask", "[2, 4]"});
  expect_error([&] { mha.forward(x, x, x, Tensor(), ones({2, 5})); }, {"key_padding_mask", "bool"});
  expect_error([&] { mha.forward(x, randn({2, 5, 8}), randn({2, 4, 8})); }, {"value", "[2, 4, 8]"});
}

TEST(MultiheadAttention, DropoutOnlyWhileTraining) {
  nn::MultiheadAttention mha(8, 2, 0.5);
  randomise(mha, 14);
  Tensor x = randn({2, 5, 8});
  mha.eval();
  Tensor a = mha.forward(x), b = mha.forward(x);
  EXPECT_TRUE(allclose(a, b, 0, 0));
  mha.train();
  EXPECT_FALSE(allclose(mha.forward(x), a, 1e-3, 1e-3));
}

// ---- against PyTorch ------------------------------------------------------------------------------------

constexpr const char* kGoldenFile = "nn/modules.safetensors";

Tensor golden(const std::string& key) { return test::golden_tensor(kGoldenFile, key); }
bool has_golden(const std::string& key) { return test::has_golden_tensor(kGoldenFile, key); }

// Loads the case's parameters (stored under the module's own names) into `m`.
void load_case_parameters(nn::Module& m, const std::string& name) {
  std::map<std::string, Tensor> sd;
  for (const auto& [pname, t] : m.state_dict()) sd[pname] = golden(name + "/" + pname);
  m.load_state_dict(sd);
}

struct MhaCase {
  const char* name;
  int64_t embed_dim, heads;
};

TEST(MultiheadAttention, MatchesPyTorch) {
  for (MhaCase c : {MhaCase{"mha_self_causal_padded", 8, 2}, MhaCase{"mha_kv", 8, 4}, MhaCase{"mha_qkv", 6, 3},
                    MhaCase{"mha_float_mask", 8, 2}}) {
    SCOPED_TRACE(c.name);
    std::string n = c.name;
    nn::MultiheadAttention mha(c.embed_dim, c.heads);
    load_case_parameters(mha, n);
    Tensor q = golden(n + "/query");
    Tensor k = has_golden(n + "/key") ? golden(n + "/key") : q;
    Tensor v = has_golden(n + "/value") ? golden(n + "/value") : k;
    Tensor mask = has_golden(n + "/attn_mask") ? golden(n + "/attn_mask") : Tensor();
    Tensor padding = has_golden(n + "/key_padding_mask") ? golden(n + "/key_padding_mask") : Tensor();
    auto out = mha.forward_with_weights(q, k, v, mask, padding);
    expect_close(out.output, golden(n + "/output"), 1e-4, 1e-5);
    expect_close(out.weights, golden(n + "/weights"), 1e-4, 1e-6);
  }
}

TEST(TransformerBlock, ForwardMatchesPyTorch) {
  nn::TransformerBlockOptions o;
  o.d_model = 8;
  o.num_heads = 2;
  o.hidden = 32;
  nn::TransformerBlock block(o);
  load_case_parameters(block, "block");
  Tensor causal = triu(ones({5, 5}, DType::Bool), 1);
  Tensor out = block.forward(golden("block/x"), causal, golden("block/key_padding_mask"));
  expect_close(out, golden("block/output"), 1e-4, 1e-5);
  // is_causal builds the same mask.
  expect_close(block.forward(golden("block/x"), Tensor(), golden("block/key_padding_mask"), true), out, 0, 0);
}

// Needs the derivatives of linear/matmul, softmax, layer_norm, gelu, permute/reshape and narrow.
TEST(TransformerBlock, GradientsMatchPyTorch) {
  nn::TransformerBlockOptions o;
  o.d_model = 8;
  o.num_heads = 2;
  o.hidden = 32;
  nn::TransformerBlock block(o);
  load_case_parameters(block, "block");
  Tensor x = golden("block/x").clone();
  x.requires_grad_();
  Tensor out = block.forward(x, triu(ones({5, 5}, DType::Bool), 1), golden("block/key_padding_mask"));
  sum(mul(out, golden("block/probe"))).backward();
  ASSERT_TRUE(x.grad().defined());
  expect_close(x.grad(), golden("block/grad/x"), 1e-3, 1e-5);
  for (const auto& [name, p] : block.named_parameters()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(p.grad().defined());
    expect_close(p.grad(), golden("block/grad/" + name), 1e-3, 1e-5);
  }
}

// Needs linear's derivative.
TEST(Linear, GradientsReachWeightAndBias) {
  nn::Linear lin(3, 2);
  Tensor x = tensor<float>({1, 2, 3, -1, 0, 1}, {2, 3});
  sum(lin.forward(x)).backward();
  ASSERT_TRUE(lin.weight.grad().defined());
  ASSERT_TRUE(lin.bias.grad().defined());
  // d sum(x W^T + b) / dW[o, i] = sum over rows of x[:, i]; / db = number of rows.
  expect_close(lin.weight.grad(), tensor<float>({0, 2, 4, 0, 2, 4}, {2, 3}), 1e-5, 1e-5);
  expect_close(lin.bias.grad(), tensor<float>({2, 2}), 1e-5, 1e-5);
}

}  // namespace
