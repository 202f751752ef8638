// The PyTorch trajectory test (llm.c's test_gpt2): models::TransformerLm against the same model written in
// PyTorch (tests/golden/make_trajectory.py) from the same weights on the same batch: the logits, the loss,
// every parameter's gradient, then the loss of each of 10 AdamW steps and the weights they end at. It checks
// the whole training path at once (embeddings, attention, layer norm, GELU, cross-entropy, their derivatives,
// gradient accumulation into shared tensors, the optimizer) the way a user would run it.
//
// Two references, the same run in float32 (tests/golden/trajectory/transformer_lm.safetensors) and in float64
// (transformer_lm_f64.safetensors), both from the same float32-valued initial weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "loom/loom.h"
#include "loom/models/transformer_lm/transformer_lm.h"
#include "support/compare.h"
#include "support/golden_file.h"

using namespace loom;

namespace {

// make_trajectory.py's VOCAB, D_MODEL, LAYERS, HEADS, MAX_SEQ and optimizer; the metadata test below checks
// that the files were made with these.
models::TransformerLmConfig trajectory_config() {
  models::TransformerLmConfig c;
  c.vocab_size = 23;
  c.d_model = 32;
  c.layers = 2;
  c.heads = 4;
  c.max_seq = 16;
  c.dropout = 0.0;  // the reference has no dropout; anything else would make the run random
  return c;
}
constexpr double kLr = 1e-3, kBeta1 = 0.9, kBeta2 = 0.99, kEps = 1e-8, kWeightDecay = 0.01;
constexpr int kSteps = 10;

std::string optimizer_description() {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "AdamW lr=%.17g beta1=%.17g beta2=%.17g eps=%.17g weight_decay=%.17g steps=%d", kLr, kBeta1,
                kBeta2, kEps, kWeightDecay, kSteps);
  return buf;
}

struct Tol {
  double rtol, atol;
};

// Per dtype: |loom - torch| <= atol + rtol * |torch| elementwise (allclose), for each kind of output.
struct Tolerances {
  const char* file;
  DType dtype;
  Tol logits, loss, grads, losses, final_weights;
  // The key third of each attn.in_proj_bias after training; see float32_tolerances.
  Tol final_key_bias;
};

// How gtest names a parameter in test listings (otherwise a dump of the struct's bytes).
void PrintTo(const Tolerances& t, std::ostream* os) { *os << dtype_name(t.dtype) << " (" << t.file << ")"; }

Tolerances float32_tolerances() {
  Tolerances t;
  t.file = "transformer_lm.safetensors";
  t.dtype = kFloat32;
  // Forward: float32's unit roundoff is 6e-8 and the forward has ~10 dependent stages (embedding, 2 x (layer
  // norm, attention, MLP), layer norm, head), each a sum over at most 128 terms, which PyTorch and Loom
  // accumulate in different orders (different GEMM kernels, blocked reductions). The error is absolute, about
  // 4e-7 of the largest logit (|logits| <= 3) in every entry, small ones included: PyTorch's float32 logits
  // are within 1.1e-6 of its float64 run, Loom's within 1.25e-6, and the two errors are independent, so
  // their difference can reach ~2.4e-6 (observed here: 1.07e-6, in an entry of 0.024). atol 3e-6 allows that
  // on other CPUs and BLAS kernels; a formula difference (tanh GELU, a wrong eps) shows up at 1e-4 or more.
  t.logits = {1e-5, 3e-6};
  t.loss = {1e-5, 1e-6};
  // Gradients: the backward pass repeats every stage once more (the chain rule re-accumulates the same sums
  // in transposed orders), and the errors are absolute, of the order of the gradient tensor's largest entry
  // (at most 0.16 here) times 1e-7, not of each entry: an entry that is 1e-4 of its tensor's scale carries
  // the same absolute error as the big ones. PyTorch float32 vs float64 differs by at most 3.9e-8 absolute.
  // So the same rtol with atol 1e-6 (about 1e-5 of the largest gradient).
  t.grads = {1e-5, 1e-6};
  // Losses along the trajectory carry the weights' drift (next), still far below 1e-5 relative.
  t.losses = {1e-5, 1e-6};
  // Final weights: Adam normalises each entry's step, lr * m / sqrt(v), so a gradient entry's relative error
  // becomes the same relative error of its step (<= lr = 1e-3 per step). An entry whose gradient is tiny
  // compared with its tensor's rounding noise gets a step of noisy size, up to ~lr. PyTorch's float32 run
  // ends within 7.3e-7 of its float64 run (|w| <= 1.7); 1e-5 relative plus 2e-6 absolute (2e-4 of one
  // step's maximum size) keeps a margin over that.
  t.final_weights = {1e-5, 2e-6};
  // The key bias (in_proj_bias rows [D, 2D)) shifts every score of a query by the same q . b_k, which softmax
  // ignores: its true gradient is exactly 0, and both frameworks compute rounding noise (~1e-9) in its place.
  // Adam divides that noise by sqrt(v) + eps with eps = 1e-8 of the same order, so each step moves these
  // entries by a random fraction of lr, differently in each framework (PyTorch float32 vs float64: 8.6e-4
  // after 10 steps). Nothing can match there; we only check that the two differ by less than 10 full-size
  // steps (lr each) in opposite directions, i.e. that Loom does nothing wilder. The float64 test checks these
  // entries tightly.
  t.final_key_bias = {0.0, 2.0 * kSteps * kLr};
  return t;
}

Tolerances float64_tolerances() {
  Tolerances t;
  t.file = "transformer_lm_f64.safetensors";
  t.dtype = kFloat64;
  // float64's unit roundoff is 1.1e-16; the same reasoning as for float32 gives errors around 1e-14, so 1e-10
  // relative is a wide margin that still catches any formula difference (which shows up at 1e-4 or more).
  t.logits = {1e-10, 1e-12};
  t.loss = {1e-10, 1e-12};
  t.grads = {1e-10, 1e-12};
  t.losses = {1e-10, 1e-12};
  // Adam's amplification of relative gradient error (see float32_tolerances) is harmless at this precision:
  // 1e-11 absolute is still 1e-8 of one step. This is where float64 earns its keep: applying AdamW's decay
  // after the update instead of before moves the final weights by only 1.8e-7 (computed with the script's
  // model), invisible to the float32 comparison but 1e4 times this tolerance.
  t.final_weights = {1e-10, 1e-11};
  // The key bias's noise gradient is ~1e-17 here (at most ~1e-16, a rounding of the 0.05-sized terms it
  // sums), and Adam turns it into steps of at most lr * 1e-16 / eps = 1e-11 each; 10 of them bound it by
  // 1e-10.
  t.final_key_bias = {0.0, 1e-10};
  return t;
}

const SafetensorsContents& golden_file(const Tolerances& tol) {
  return test::golden_file(std::string("trajectory/") + tol.file);
}

Tensor golden(const Tolerances& tol, const std::string& key) {
  return test::golden_tensor(std::string("trajectory/") + tol.file, key);
}

// The worst error seen for one kind of output, printed at the end of each test: what the tolerances are set
// against, and the first thing to look at when one fails.
// `used` is the largest |got - want| / (atol + rtol * |want|): the fraction of the tolerance spent (> 1
// fails).
struct Worst {
  double abs_err = 0, used = 0;
  std::string where = "-";
  void note(const std::string& name, double err, double fraction) {
    if (err > abs_err || where == "-") abs_err = err, where = name;
    used = std::max(used, fraction);
  }
  void print(const char* dtype, const char* what, Tol tol) const {
    std::printf("[trajectory %s] %-14s max abs err %.3e (%s); rtol %.0e atol %.0e, %.0f%% of it used\n",
                dtype, what, abs_err, where.c_str(), tol.rtol, tol.atol, 100 * used);
  }
};

double tolerance_used(const Tensor& got, const Tensor& want, Tol tol) {
  if (got.shape() != want.shape() || !is_floating(got.dtype())) return 0;
  std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
  double used = 0;
  for (size_t i = 0; i < w.size(); ++i)
    used = std::max(used, std::fabs(g[i] - w[i]) / (tol.atol + tol.rtol * std::fabs(w[i])));
  return used;
}

// EXPECTs allclose(got, want) and names the tensor and its max error on failure. Not test::expect_close: it
// also records the worst error for the summary line.
void expect_close(const std::string& name, const Tensor& got, const Tensor& want, Tol tol, Worst& worst) {
  test::Comparison c = test::compare(got.contiguous(), want, {tol.rtol, tol.atol});
  worst.note(name, c.max_abs_err, tolerance_used(got.contiguous(), want, tol));
  char summary[160];
  std::snprintf(summary, sizeof summary, ": max abs err %.3e exceeds rtol %.0e / atol %.0e: ", c.max_abs_err,
                tol.rtol, tol.atol);
  EXPECT_TRUE(c.ok) << name << summary << c.message;
}

// A TransformerLm with the reference's initial weights.
std::unique_ptr<models::TransformerLm> initial_model(const Tolerances& tol) {
  auto model = std::make_unique<models::TransformerLm>(trajectory_config(), TensorOptions(tol.dtype));
  std::map<std::string, Tensor> weights;
  for (const auto& [name, p] : model->named_parameters()) weights[name] = golden(tol, name);
  model->load_state_dict(weights);
  return model;
}

bool is_in_proj_bias(const std::string& name) {
  const std::string suffix = "attn.in_proj_bias";
  return name.size() >= suffix.size() &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

class Trajectory : public ::testing::TestWithParam<Tolerances> {};

TEST_P(Trajectory, FileMatchesTheModel) {
  const Tolerances& tol = GetParam();
  const SafetensorsContents& file = golden_file(tol);
  EXPECT_EQ(file.metadata.at("config"), trajectory_config().str());
  EXPECT_EQ(file.metadata.at("optimizer"), optimizer_description());
  EXPECT_EQ(file.metadata.at("dtype"), tol.dtype == kFloat64 ? "float64" : "float32");
  // Every Loom parameter has an initial value, a gradient and a final value of its shape, and the file holds
  // nothing else (a parameter Loom lacks would be one PyTorch trains and Loom does not).
  models::TransformerLm model(trajectory_config(), TensorOptions(tol.dtype));
  size_t expected = 6;  // tokens, targets, logits, loss, losses, final_loss
  for (const auto& [name, p] : model.named_parameters()) {
    for (const std::string& key : {name, "grad." + name, "final." + name}) {
      ASSERT_TRUE(file.tensors.count(key)) << key << " missing from " << tol.file;
      EXPECT_EQ(file.tensors.at(key).shape(), p.shape()) << key;
      EXPECT_EQ(file.tensors.at(key).dtype(), tol.dtype) << key;
    }
    expected += 3;
  }
  EXPECT_EQ(file.tensors.size(), expected);
  EXPECT_EQ(golden(tol, "tokens").shape(), (Shape{4, 16}));
  EXPECT_EQ(golden(tol, "losses").shape(), (Shape{kSteps}));
}

TEST_P(Trajectory, LogitsLossAndGradientsMatchPyTorch) {
  const Tolerances& tol = GetParam();
  const char* dt = dtype_name(tol.dtype);
  auto model = initial_model(tol);
  Tensor tokens = golden(tol, "tokens"), targets = golden(tol, "targets");

  Worst logits_err, loss_err, grad_err;
  {
    NoGradGuard no_grad;
    expect_close("logits", model->forward(tokens), golden(tol, "logits"), tol.logits, logits_err);
  }
  Tensor loss = model->loss(tokens, targets);
  expect_close("loss", loss, golden(tol, "loss"), tol.loss, loss_err);
  loss.backward();
  for (const auto& [name, p] : model->named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name << " got no gradient";
    expect_close("grad." + name, p.grad(), golden(tol, "grad." + name), tol.grads, grad_err);
  }
  logits_err.print(dt, "logits", tol.logits);
  loss_err.print(dt, "loss", tol.loss);
  grad_err.print(dt, "gradients", tol.grads);
}

TEST_P(Trajectory, AdamWStepsMatchPyTorch) {
  const Tolerances& tol = GetParam();
  const char* dt = dtype_name(tol.dtype);
  auto model = initial_model(tol);
  Tensor tokens = golden(tol, "tokens"), targets = golden(tol, "targets");
  nn::AdamW opt(model->named_parameters(), kLr, {kBeta1, kBeta2}, kEps, kWeightDecay);

  // Each step as the reference's: zero_grad, forward, loss, backward, step; the loss is the one computed
  // before the step's update.
  std::vector<Tensor> losses;
  for (int step = 0; step < kSteps; ++step) {
    opt.zero_grad();
    Tensor loss = model->loss(tokens, targets);
    loss.backward();
    opt.step();
    losses.push_back(loss.detach().reshape({1}));
  }
  Worst losses_err, weights_err, key_bias_err, final_loss_err;
  expect_close("losses", cat(losses, 0), golden(tol, "losses"), tol.losses, losses_err);

  const int64_t d = trajectory_config().d_model;
  for (const auto& [name, p] : model->named_parameters()) {
    Tensor want = golden(tol, "final." + name);
    if (!is_in_proj_bias(name)) {
      expect_close("final." + name, p, want, tol.final_weights, weights_err);
      continue;
    }
    // Query and value rows as every other weight; the key rows (zero true gradient) separately.
    expect_close("final." + name + "[query]", p.narrow(0, 0, d), want.narrow(0, 0, d), tol.final_weights,
                 weights_err);
    expect_close("final." + name + "[value]", p.narrow(0, 2 * d, d), want.narrow(0, 2 * d, d),
                 tol.final_weights, weights_err);
    expect_close("final." + name + "[key]", p.narrow(0, d, d), want.narrow(0, d, d), tol.final_key_bias,
                 key_bias_err);
  }
  {
    NoGradGuard no_grad;
    expect_close("final_loss", model->loss(tokens, targets), golden(tol, "final_loss"), tol.losses,
                 final_loss_err);
  }
  losses_err.print(dt, "10 losses", tol.losses);
  final_loss_err.print(dt, "final loss", tol.losses);
  weights_err.print(dt, "final weights", tol.final_weights);
  key_bias_err.print(dt, "final key bias", tol.final_key_bias);
}

INSTANTIATE_TEST_SUITE_P(PyTorch, Trajectory, ::testing::Values(float32_tolerances(), float64_tolerances()),
                         [](const ::testing::TestParamInfo<Tolerances>& info) {
                           return std::string(dtype_name(info.param.dtype));
                         });

}  // namespace
