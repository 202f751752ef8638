// Optimizers, schedules and gradient clipping: SGD / Adam / AdamW over 3 steps against PyTorch 1.13
// (tests/golden/nn/optim.safetensors, from make_nn_golden.py) and against the formulas written out here in
// doubles; state export/import; learning-rate schedules at their key steps; clip_grad_norm_.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <numbers>
#include <sstream>
#include <string>
#include <vector>

#include "loom/loom.h"
#include "loom/ops/backend.h"
#include "support/compare.h"
#include "support/expect.h"

using namespace loom;
using test::expect_close;
using test::expect_error;

namespace {

nn::Optimizer::NamedParameters leaves(const std::vector<Tensor>& values) {
  nn::Optimizer::NamedParameters out;
  for (size_t i = 0; i < values.size(); ++i) {
    Tensor p = values[i].clone();
    p.requires_grad_();
    // Appended rather than "p" + to_string(i): GCC 12 gives a false -Wrestrict for the latter at -O3.
    std::string name = "p";
    name += std::to_string(i);
    out.emplace_back(name, p);
  }
  return out;
}

// ---- against PyTorch ------------------------------------------------------------------------------------

// The counterpart of OPTIM_CASES in make_nn_golden.py.
struct GoldenCase {
  std::string name;
  std::string type;
  std::map<std::string, double> hp;  // without lr
  DType dtype;
  std::vector<double> lrs;
  std::vector<int> skips;  // steps at which p1 has no gradient
};

std::vector<GoldenCase> golden_cases() {
  return {
      {"sgd_plain", "SGD", {{"momentum", 0}, {"dampening", 0}, {"weight_decay", 0.01}, {"nesterov", 0}},
       DType::Float64, {0.1, 0.1, 0.05}, {}},
      {"sgd_momentum", "SGD", {{"momentum", 0.9}, {"dampening", 0.1}, {"weight_decay", 0.01}, {"nesterov", 0}},
       DType::Float64, {0.1, 0.1, 0.1}, {}},
      {"sgd_nesterov", "SGD", {{"momentum", 0.8}, {"dampening", 0}, {"weight_decay", 0.001}, {"nesterov", 1}},
       DType::Float64, {0.05, 0.05, 0.02}, {2}},
      {"adam", "Adam", {{"beta1", 0.9}, {"beta2", 0.999}, {"eps", 1e-8}, {"weight_decay", 0}}, DType::Float64,
       {1e-2, 1e-2, 5e-3}, {2}},
      {"adam_l2", "Adam", {{"beta1", 0.8}, {"beta2", 0.99}, {"eps", 1e-6}, {"weight_decay", 0.1}}, DType::Float64,
       {1e-2, 1e-2, 1e-2}, {}},
      {"adamw", "AdamW", {{"beta1", 0.9}, {"beta2", 0.999}, {"eps", 1e-8}, {"weight_decay", 0.05}}, DType::Float64,
       {1e-2, 2e-2, 1e-2}, {2}},
      {"adamw_f32", "AdamW", {{"beta1", 0.9}, {"beta2", 0.95}, {"eps", 1e-8}, {"weight_decay", 0.1}},
       DType::Float32, {3e-3, 3e-3, 3e-3}, {}},
  };
}

std::string g17(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// The same string make_nn_golden.py's describe_case writes.
std::string describe(const GoldenCase& c) {
  std::vector<std::string> parts;
  for (const auto& [k, v] : c.hp) parts.push_back(k + "=" + g17(v));
  std::string lrs = "lrs=", skips = "skips=";
  for (size_t i = 0; i < c.lrs.size(); ++i) lrs += (i ? "," : "") + g17(c.lrs[i]);
  for (size_t i = 0; i < c.skips.size(); ++i) skips += (i ? "," : "") + std::to_string(c.skips[i]);
  parts.push_back(lrs);
  parts.push_back(skips);
  std::sort(parts.begin(), parts.end());
  std::string out = "type=" + c.type;
  for (const std::string& p : parts) out += " " + p;
  return out;
}

std::unique_ptr<nn::Optimizer> make(const GoldenCase& c, nn::Optimizer::NamedParameters params) {
  const auto& h = c.hp;
  if (c.type == "SGD") {
    nn::SGDOptions o;
    o.lr = c.lrs[0];
    o.momentum = h.at("momentum");
    o.dampening = h.at("dampening");
    o.weight_decay = h.at("weight_decay");
    o.nesterov = h.at("nesterov") != 0;
    return std::make_unique<nn::SGD>(std::move(params), o);
  }
  nn::AdamOptions o;
  o.lr = c.lrs[0];
  o.betas = {h.at("beta1"), h.at("beta2")};
  o.eps = h.at("eps");
  o.weight_decay = h.at("weight_decay");
  if (c.type == "Adam") return std::make_unique<nn::Adam>(std::move(params), o);
  return std::make_unique<nn::AdamW>(std::move(params), o);
}

TEST(Optimizer, ThreeStepsMatchPyTorch) {
  SafetensorsContents g =
      load_safetensors_with_metadata(std::string(LOOM_TEST_DATA_DIR) + "/golden/nn/optim.safetensors");
  for (const GoldenCase& c : golden_cases()) {
    SCOPED_TRACE(c.name);
    ASSERT_EQ(g.metadata.at(c.name), describe(c)) << "the case tables here and in make_nn_golden.py differ";
    auto at = [&](const std::string& key) { return g.tensors.at(c.name + "/" + key); };
    auto params = leaves({at("param0"), at("param1")});
    ASSERT_EQ(params[0].second.dtype(), c.dtype);
    auto opt = make(c, params);
    for (int k = 1; k <= 3; ++k) {
      opt->set_lr(c.lrs[k - 1]);
      for (int i = 0; i < 2; ++i) {
        std::string key = c.name + "/grad" + std::to_string(i) + "_step" + std::to_string(k);
        params[i].second.set_grad(g.tensors.count(key) ? g.tensors.at(key).clone() : Tensor());
      }
      opt->step();
      for (int i = 0; i < 2; ++i) {
        SCOPED_TRACE("param " + std::to_string(i) + " after step " + std::to_string(k));
        expect_close(params[i].second.detach(), at("param" + std::to_string(i) + "_step" + std::to_string(k)));
      }
    }
    EXPECT_EQ(opt->step_count("p0"), 3);
    EXPECT_EQ(opt->step_count("p1"), 3 - static_cast<int64_t>(c.skips.size()));
    nn::OptimizerState state = opt->state_dict();
    int buffers = 0;
    for (const auto& [key, t] : g.tensors) {
      std::string prefix = c.name + "/";
      if (key.rfind(prefix, 0) != 0 || key.find("param") != std::string::npos || key.find("grad") != std::string::npos)
        continue;
      std::string rest = key.substr(prefix.size());  // "<buffer><i>"
      std::string local = "p" + rest.substr(rest.size() - 1) + "." + rest.substr(0, rest.size() - 1);
      SCOPED_TRACE(local);
      ASSERT_TRUE(state.tensors.count(local));
      expect_close(state.tensors.at(local), t);
      ++buffers;
    }
    EXPECT_EQ(static_cast<size_t>(buffers), state.tensors.size());
  }
}

// ---- against the formulas, written out in doubles ----------------------------------------------------------

const std::vector<double> kP0 = {0.5, -1.0, 2.0};
const std::vector<std::vector<double>> kGrads = {{0.1, -0.2, 0.3}, {-0.4, 0.5, 0.05}, {0.2, 0.2, -0.6}};

// Runs three steps of `opt` on a float64 parameter starting at kP0 with kGrads and returns it.
std::vector<double> run_three(const std::function<std::unique_ptr<nn::Optimizer>(nn::Optimizer::NamedParameters)>& make_opt) {
  auto params = leaves({tensor<double>(kP0)});
  auto opt = make_opt(params);
  for (const auto& g : kGrads) {
    params[0].second.set_grad(tensor<double>(g));
    opt->step();
  }
  return params[0].second.detach().to_vector<double>();
}

void expect_vec_near(const std::vector<double>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-14 * std::max(1.0, std::fabs(want[i])));
}

TEST(SGD, MomentumAndNesterovFormulas) {
  const double lr = 0.1, mu = 0.9, wd = 0.01;
  for (bool nesterov : {false, true}) {
    SCOPED_TRACE(nesterov ? "nesterov" : "heavy ball");
    std::vector<double> p = kP0, buf(3);
    for (size_t k = 0; k < kGrads.size(); ++k) {
      for (size_t i = 0; i < 3; ++i) {
        double d = kGrads[k][i] + wd * p[i];
        buf[i] = k == 0 ? d : mu * buf[i] + d;
        p[i] -= lr * (nesterov ? d + mu * buf[i] : buf[i]);
      }
    }
    expect_vec_near(run_three([&](auto params) { return std::make_unique<nn::SGD>(params, lr, mu, wd, nesterov); }),
                    p);
  }
}

TEST(Adam, AdamAndAdamWFormulas) {
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
  for (bool decoupled : {false, true}) {
    SCOPED_TRACE(decoupled ? "AdamW" : "Adam");
    std::vector<double> p = kP0, m(3, 0.0), v(3, 0.0);
    for (size_t k = 0; k < kGrads.size(); ++k) {
      double t = double(k + 1);
      for (size_t i = 0; i < 3; ++i) {
        double g = kGrads[k][i];
        if (decoupled) p[i] *= 1 - lr * wd;
        else g += wd * p[i];
        m[i] = b1 * m[i] + (1 - b1) * g;
        v[i] = b2 * v[i] + (1 - b2) * g * g;
        double denom = std::sqrt(v[i]) / std::sqrt(1 - std::pow(b2, t)) + eps;
        p[i] -= lr / (1 - std::pow(b1, t)) * m[i] / denom;
      }
    }
    expect_vec_near(run_three([&](auto params) -> std::unique_ptr<nn::Optimizer> {
                      if (decoupled) return std::make_unique<nn::AdamW>(params, lr, std::pair{b1, b2}, eps, wd);
                      return std::make_unique<nn::Adam>(params, lr, std::pair{b1, b2}, eps, wd);
                    }),
                    p);
  }
}

TEST(Optimizer, SkipsParametersWithoutGradAndZeroGradDropsThem) {
  auto params = leaves({ones({2}), ones({3})});
  nn::SGD sgd(params, 0.5);
  params[0].second.set_grad(ones({2}));
  sgd.step();
  EXPECT_EQ(params[0].second.detach().to_vector<float>(), (std::vector<float>{0.5f, 0.5f}));
  EXPECT_EQ(params[1].second.detach().to_vector<float>(), (std::vector<float>{1, 1, 1}));
  EXPECT_EQ(sgd.step_count("p0"), 1);
  EXPECT_EQ(sgd.step_count("p1"), 0);
  sgd.zero_grad();
  EXPECT_FALSE(params[0].second.grad().defined());
  sgd.step();  // nothing to do
  EXPECT_EQ(params[0].second.detach().to_vector<float>(), (std::vector<float>{0.5f, 0.5f}));
  // The update left the parameter a leaf that requires grad.
  EXPECT_TRUE(params[0].second.requires_grad());
  EXPECT_TRUE(params[0].second.is_leaf());
}

TEST(Optimizer, ArgumentErrors) {
  expect_error([] { nn::SGD({}, 0.1); }, {"SGD", "empty parameter list"});
  Tensor p = ones({2});
  expect_error([&] { nn::SGD({{"a", p}, {"a", ones({2})}}, 0.1); }, {"'a'", "twice"});
  expect_error([&] { nn::SGD({{"a", p}, {"b", p}}, 0.1); }, {"'b'", "already in the list"});
  expect_error([&] { nn::SGD({{"a", p}}, -1.0); }, {"SGD", "learning rate"});
  expect_error([&] { nn::SGD({{"a", p}}, 0.1, 0.0, 0.0, true); }, {"Nesterov"});
  expect_error([&] { nn::Adam({{"a", p}}, 0.1, {1.0, 0.999}); }, {"Adam", "beta", "index 0"});
  expect_error([&] { nn::AdamW({{"a", p}}, 0.1, {0.9, 0.999}, -1.0); }, {"AdamW", "epsilon"});
  nn::Adam adam({{"a", p}});
  expect_error([&] { adam.set_lr(NAN); }, {"set_lr"});
  expect_error([&] { adam.step_count("b"); }, {"no parameter named 'b'"});
}

TEST(Optimizer, StateRoundTripGivesIdenticalNextSteps) {
  auto a_params = leaves({tensor<float>({1, 2, 3}), tensor<float>({-1, 0.5f})});
  nn::AdamW a(a_params, 0.01);
  for (int k = 0; k < 2; ++k) {
    a_params[0].second.set_grad(tensor<float>({0.1f, -0.2f, 0.3f}));
    a_params[1].second.set_grad(tensor<float>({0.5f * k, 1}));
    a.step();
  }
  // A fresh optimizer over copies of the parameters, given a's state.
  nn::Optimizer::NamedParameters b_params;
  for (auto& [n, t] : a_params) b_params.emplace_back(n, t.detach().clone().requires_grad_());
  nn::AdamW b(b_params, 0.5, {0.5, 0.5}, 1e-3, 0.0);
  b.load_state_dict(a.state_dict());
  EXPECT_EQ(b.lr(), 0.01);
  EXPECT_EQ(b.options().betas.second, 0.999);
  EXPECT_EQ(b.options().weight_decay, 1e-2);
  EXPECT_EQ(b.step_count("p0"), 2);
  for (auto* params : {&a_params, &b_params}) {
    (*params)[0].second.set_grad(tensor<float>({1, 1, 1}));
    (*params)[1].second.set_grad(tensor<float>({-1, 2}));
  }
  a.step();
  b.step();
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(allclose(a_params[i].second, b_params[i].second, 0, 0));
  // b owns its copies: a's later steps leave them alone.
  EXPECT_FALSE(b.state_dict().tensors.at("p0.exp_avg").storage() == a.state_dict().tensors.at("p0.exp_avg").storage());
}

TEST(Optimizer, BadStateIsRejectedWhole) {
  auto params = leaves({ones({3}), ones({2})});
  nn::Adam adam(params, 0.01);
  params[0].second.set_grad(ones({3}));
  adam.step();
  nn::OptimizerState good = adam.state_dict();

  auto fresh_params = leaves({ones({3}), ones({2})});
  nn::Adam fresh(fresh_params, 0.02);
  auto expect_rejected = [&](nn::OptimizerState s, std::vector<std::string> needles) {
    needles.insert(needles.begin(), "Adam.load_state_dict: nothing was loaded");
    expect_error([&] { fresh.load_state_dict(s); }, needles);
    EXPECT_EQ(fresh.lr(), 0.02);
    EXPECT_EQ(fresh.step_count("p0"), 0);
  };
  nn::OptimizerState s = good;
  s.type = "SGD";
  expect_rejected(s, {"'SGD', not Adam"});
  s = good;
  s.tensors["p0.exp_avg"] = ones({4});
  expect_rejected(s, {"'p0.exp_avg' is float32[4] but parameter 'p0' is float32[3]"});
  s = good;
  s.tensors.erase("p0.exp_avg_sq");
  s.steps["ghost"] = 1;
  expect_rejected(s, {"missing state tensor 'p0.exp_avg_sq'", "unknown parameter 'ghost'"});
  s = good;
  s.hyperparameters["beta1"] = 1.5;
  expect_rejected(s, {"beta"});
  s = good;
  s.hyperparameters.erase("eps");
  s.hyperparameters["momentum"] = 0.9;
  expect_rejected(s, {"missing hyperparameter 'eps'", "unexpected hyperparameter 'momentum'"});
  s = good;
  s.tensors["p1.exp_avg"] = ones({2});  // p1 never stepped
  expect_rejected(s, {"unexpected state tensor 'p1.exp_avg'"});
}

TEST(Optimizer, StateFollowsAModuleConvertedAfterSteps) {
  nn::Linear lin(3, 2);
  nn::Adam adam(lin.named_parameters(), 0.01);
  lin.weight.set_grad(ones({2, 3}));
  adam.step();
  lin.to(DType::Float64);
  lin.weight.set_grad(ones({2, 3}, DType::Float64));
  adam.step();
  EXPECT_EQ(adam.state_dict().tensors.at("weight.exp_avg").dtype(), DType::Float64);
  EXPECT_EQ(adam.step_count("weight"), 2);
}

// Uses only ops whose derivatives exist already (mul, sub, mean).
TEST(Optimizer, AdamFitsALinearModelEndToEnd) {
  manual_seed(5);
  Tensor x = randn({64, 4});
  Tensor true_w = tensor<float>({1, -2, 0.5f, 3});
  Tensor y = sum(mul(x, true_w), {1});
  Tensor w = zeros({4});
  w.requires_grad_();
  nn::Adam adam({{"w", w}}, 0.1);
  double first = 0, last = 0;
  for (int step = 1; step <= 300; ++step) {
    adam.zero_grad();
    Tensor diff = sub(sum(mul(x, w), {1}), y);
    Tensor loss = mean(mul(diff, diff));
    loss.backward();
    adam.step();
    (step == 1 ? first : last) = loss.item<float>();
  }
  EXPECT_LT(last, 1e-3 * first);
  expect_close(w.detach(), true_w, {1e-2, 1e-2});
}

// ---- schedules -----------------------------------------------------------------------------------------

TEST(LrSchedule, ValuesAtKeySteps) {
  EXPECT_EQ(nn::constant_lr(123, 0.5), 0.5);
  EXPECT_EQ(nn::linear_warmup_lr(0, 1.0, 10), 0.0);
  EXPECT_DOUBLE_EQ(nn::linear_warmup_lr(5, 1.0, 10), 0.5);
  EXPECT_EQ(nn::linear_warmup_lr(10, 1.0, 10), 1.0);
  EXPECT_EQ(nn::linear_warmup_lr(1000, 1.0, 10), 1.0);
  EXPECT_EQ(nn::linear_warmup_lr(0, 1.0, 0), 1.0);

  EXPECT_DOUBLE_EQ(nn::rsqrt_decay_lr(50, 2.0, 100), 1.0);
  EXPECT_DOUBLE_EQ(nn::rsqrt_decay_lr(100, 2.0, 100), 2.0);
  EXPECT_DOUBLE_EQ(nn::rsqrt_decay_lr(400, 2.0, 100), 1.0);

  // Vaswani et al.: d_model 512, warmup 4000 peaks at 512^-0.5 * 4000^-0.5 ~ 7.0e-4.
  double peak = 1.0 / std::sqrt(512.0 * 4000.0);
  EXPECT_DOUBLE_EQ(nn::noam_lr(4000, 512, 4000), peak);
  EXPECT_DOUBLE_EQ(nn::noam_lr(2000, 512, 4000), peak / 2);
  EXPECT_DOUBLE_EQ(nn::noam_lr(16000, 512, 4000), peak / 2);
  EXPECT_EQ(nn::noam_lr(0, 512, 4000), 0.0);
  // The same curve as rsqrt_decay with base_lr = factor / sqrt(d_model * warmup).
  for (int64_t s : {1, 7, 4000, 12345})
    EXPECT_NEAR(nn::noam_lr(s, 512, 4000, 2.0), nn::rsqrt_decay_lr(s, 2 * peak, 4000), 1e-12 * peak);

  EXPECT_DOUBLE_EQ(nn::cosine_with_warmup_lr(5, 1.0, 10, 110, 0.1), 0.5);
  EXPECT_DOUBLE_EQ(nn::cosine_with_warmup_lr(10, 1.0, 10, 110, 0.1), 1.0);
  EXPECT_DOUBLE_EQ(nn::cosine_with_warmup_lr(60, 1.0, 10, 110, 0.1), 0.55);  // half way down the cosine
  EXPECT_DOUBLE_EQ(nn::cosine_with_warmup_lr(110, 1.0, 10, 110, 0.1), 0.1);
  EXPECT_DOUBLE_EQ(nn::cosine_with_warmup_lr(500, 1.0, 10, 110, 0.1), 0.1);
  EXPECT_NEAR(nn::cosine_with_warmup_lr(35, 1.0, 10, 110, 0.0), 0.5 * (1 + std::cos(std::numbers::pi / 4)), 1e-15);

  expect_error([] { nn::linear_warmup_lr(-1, 1.0, 10); }, {"linear_warmup_lr", "-1"});
  expect_error([] { nn::cosine_with_warmup_schedule(1.0, 20, 10); }, {"cosine_with_warmup_lr", "20", "10"});
  expect_error([] { nn::rsqrt_decay_schedule(1.0, 0); }, {"rsqrt_decay_lr", "warmup_steps"});
}

TEST(LrSchedule, ApplySetsTheOptimizersRate) {
  auto params = leaves({ones({2})});
  nn::SGD sgd(params, 1.0);
  nn::LrSchedule schedule = nn::linear_warmup_schedule(0.4, 4);
  EXPECT_DOUBLE_EQ(nn::apply_lr(sgd, schedule, 1), 0.1);
  EXPECT_DOUBLE_EQ(sgd.lr(), 0.1);
  params[0].second.set_grad(ones({2}));
  sgd.step();
  EXPECT_FLOAT_EQ(params[0].second.detach().to_vector<float>()[0], 0.9f);
  EXPECT_DOUBLE_EQ(nn::apply_lr(sgd, nn::constant_schedule(0.3), 7), 0.3);
  EXPECT_DOUBLE_EQ(nn::apply_lr(sgd, nn::noam_schedule(512, 4000), 4000), 1.0 / std::sqrt(512.0 * 4000.0));
}

// ---- clip_grad_norm_ --------------------------------------------------------------------------------------

TEST(ClipGradNorm, ScalesToMaxNormAndReturnsTheTotal) {
  auto params = leaves({zeros({2, 2}), zeros({3}), zeros({1})});
  params[0].second.set_grad(tensor<float>({1, 2, 2, 0}, {2, 2}));
  params[1].second.set_grad(tensor<float>({0, 4, 0}));
  // params[2] has no grad: ignored.
  std::vector<Tensor> list;
  for (auto& [n, p] : params) list.push_back(p);
  Tensor total = nn::clip_grad_norm_(list, 2.5);
  EXPECT_EQ(total.dim(), 0);
  EXPECT_FLOAT_EQ(total.item<float>(), 5.0f);  // sqrt(1 + 4 + 4 + 16)
  double coef = 2.5 / (5.0 + 1e-6);
  expect_close(params[0].second.grad(), tensor<double>({coef, 2 * coef, 2 * coef, 0}, {2, 2}).to(DType::Float32));
  expect_close(params[1].second.grad(), tensor<double>({0, 4 * coef, 0}).to(DType::Float32));

  // Below max_norm: unchanged (the coefficient clamps at 1).
  std::vector<float> before = params[1].second.grad().to_vector<float>();
  EXPECT_NEAR(nn::clip_grad_norm_(list, 100.0).item<float>(), 2.5f, 1e-5);
  EXPECT_EQ(params[1].second.grad().to_vector<float>(), before);

  // Infinity norm: the largest |g|.
  params[0].second.set_grad(tensor<float>({-3, 1, 0, 0}, {2, 2}));
  params[1].second.set_grad(tensor<float>({0, 2, 0}));
  EXPECT_FLOAT_EQ(nn::clip_grad_norm_(list, 1.0, INFINITY).item<float>(), 3.0f);
  EXPECT_NEAR(params[0].second.grad().to_vector<float>()[0], -1.0f, 1e-6);
  // 1-norm.
  params[0].second.set_grad(tensor<float>({-3, 1, 0, 0}, {2, 2}));
  params[1].second.set_grad(tensor<float>({0, 2, 0}));
  EXPECT_FLOAT_EQ(nn::clip_grad_norm_(list, 100.0, 1.0).item<float>(), 6.0f);

  // Nothing to clip.
  EXPECT_EQ(nn::clip_grad_norm_({ones({2})}, 1.0).item<float>(), 0.0f);
  // A non-finite total is reported on request, before any gradient changes.
  params[1].second.set_grad(tensor<float>({0, INFINITY, 0}));
  expect_error([&] { nn::clip_grad_norm_(list, 1.0, 2.0, true); }, {"clip_grad_norm_", "non-finite"});
  EXPECT_EQ(params[0].second.grad().to_vector<float>()[0], -3.0f);
}

}  // namespace

// The CPU's fused adam_step against the Backend default composed of ops (what a backend without its own kernel
// runs), for both weight-decay forms.
TEST(Optimizer, FusedAdamKernelMatchesTheComposedDefault) {
  for (bool decoupled : {false, true}) {
    loom::manual_seed(3);
    loom::Tensor p = loom::randn({1000}, loom::kFloat64), g = loom::randn({1000}, loom::kFloat64);
    loom::Tensor m = loom::mul(loom::randn({1000}, loom::kFloat64), 0.1);
    loom::Tensor v = loom::mul(loom::rand({1000}, loom::kFloat64), 0.01);
    loom::Tensor p2 = p.clone(), m2 = m.clone(), v2 = v.clone();
    loom::Backend::AdamStep s{1e-2, 0.9, 0.99, 1e-8, 0.1, decoupled, 1e-2 / (1 - 0.9 * 0.9),
                              std::sqrt(1 - 0.99 * 0.99)};
    loom::cpu_backend().adam_step(p, g, m, v, s);
    loom::cpu_backend().loom::Backend::adam_step(p2, g, m2, v2, s);  // qualified: the base-class default
    EXPECT_TRUE(loom::allclose(p, p2, 1e-12, 1e-14)) << "decoupled=" << decoupled;
    EXPECT_TRUE(loom::allclose(m, m2, 1e-12, 1e-14));
    EXPECT_TRUE(loom::allclose(v, v2, 1e-12, 1e-14));
  }
}
