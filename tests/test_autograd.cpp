// The tape engine: recording, backward, accumulation, freeing, errors, custom Functions, checkpoint().
// Per-op derivatives are checked by gradcheck in test_gradcheck_*.cpp.
#include <gtest/gtest.h>

#include <cmath>

#include "loom/loom.h"
#include "support/expect.h"

using namespace loom;
using test::error_of;

namespace {

Tensor f64(std::vector<double> v, Shape shape) { return tensor(std::move(v), shape).requires_grad_(); }

}  // namespace

TEST(Autograd, LeafAndRecordedTensors) {
  Tensor x = f64({1, 2, 3}, {3});
  EXPECT_TRUE(x.requires_grad());
  EXPECT_TRUE(x.is_leaf());
  Tensor y = exp(x);
  EXPECT_TRUE(y.requires_grad());
  EXPECT_FALSE(y.is_leaf());
  EXPECT_EQ(y.grad_fn_name(), "exp");
  Tensor c = tensor(std::vector<double>{1, 2, 3}, {3});
  EXPECT_FALSE(exp(c).requires_grad());
  {
    NoGradGuard no_grad;
    EXPECT_FALSE(exp(x).requires_grad());
  }
  EXPECT_FALSE(x.detach().requires_grad());
  EXPECT_TRUE(x.detach().storage() == x.storage());
}

TEST(Autograd, ChainRuleAndBroadcasting) {
  // y = sum(exp(a) * b + a / b), a [2, 3], b [3] broadcast over rows.
  Tensor a = f64({0.1, 0.2, 0.3, -0.4, 0.5, -0.6}, {2, 3});
  Tensor b = f64({1.5, -2.0, 0.5}, {3});
  Tensor y = sum(exp(a) * b + a / b);
  y.backward();
  std::vector<double> av = a.to_vector<double>(), bv = b.to_vector<double>();
  std::vector<double> ga = a.grad().to_vector<double>(), gb = b.grad().to_vector<double>();
  ASSERT_EQ(a.grad().shape(), a.shape());
  ASSERT_EQ(b.grad().shape(), b.shape());
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(ga[i], std::exp(av[i]) * bv[i % 3] + 1 / bv[i % 3], 1e-12);
  for (int j = 0; j < 3; ++j) {
    double want = 0;
    for (int r = 0; r < 2; ++r) want += std::exp(av[r * 3 + j]) - av[r * 3 + j] / (bv[j] * bv[j]);
    EXPECT_NEAR(gb[j], want, 1e-12);
  }
}

TEST(Autograd, GradientsAccumulateAcrossBackwardCalls) {
  Tensor x = f64({1, 2}, {2});
  sum(x * 3.0).backward();
  sum(x * 3.0).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{6, 6}));
  x.set_grad(Tensor());
  sum(x * 2.0).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 2}));
}

TEST(Autograd, ATensorUsedTwiceGetsBothContributions) {
  Tensor x = f64({2, -1}, {2});
  Tensor y = sum(x * x + x);  // dy/dx = 2x + 1
  y.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{5, -1}));
}

TEST(Autograd, LeafGradNeverAliasesAnotherTensor) {
  // add's backward hands the same gradient to both inputs; each leaf must own its grad.
  Tensor a = f64({1, 2}, {2}), b = f64({3, 4}, {2});
  Tensor g = tensor(std::vector<double>{1, 1}, {2});
  add(a, b).backward(g);
  EXPECT_FALSE(a.grad().storage() == b.grad().storage());
  EXPECT_FALSE(a.grad().storage() == g.storage());
  Tensor ag = a.grad();
  sum(a * 5.0).backward();  // accumulates in place
  EXPECT_EQ(ag.to_vector<double>(), (std::vector<double>{6, 6}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{1, 1}));
  EXPECT_EQ(g.to_vector<double>(), (std::vector<double>{1, 1}));
}

TEST(Autograd, ExplicitOutputGradient) {
  Tensor x = f64({1, 2, 3}, {3});
  Tensor y = x * 2.0;
  y.backward(tensor(std::vector<double>{1, 10, 100}, {3}));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 20, 200}));
}

TEST(Autograd, ViewsCarryGradients) {
  Tensor x = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor y = x.transpose(0, 1).reshape({6}).slice(0, 1, 6, 2);  // elements x[1,0], x[0,2], x[1,2]... picked
  sum(y * tensor(std::vector<double>{1, 2, 3}, {3})).backward();
  // transpose -> [[1,4],[2,5],[3,6]] flattened [1,4,2,5,3,6]; slice 1::2 -> [4,5,6] = x[1,:]
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 0, 0, 1, 2, 3}));
}

TEST(Autograd, BackwardTwiceOnAFreedTapeIsAnError) {
  Tensor x = f64({1, 2}, {2});
  Tensor y = sum(exp(x));
  y.backward();
  std::string msg = error_of([&] { y.backward(); });
  EXPECT_NE(msg.find("already replayed and freed"), std::string::npos) << msg;
  EXPECT_NE(msg.find("retain_graph"), std::string::npos) << msg;
}

TEST(Autograd, RetainGraphAllowsASecondBackward) {
  Tensor x = f64({1, 2}, {2});
  Tensor y = sum(exp(x));
  y.backward(Tensor(), /*retain_graph=*/true);
  y.backward();
  std::vector<double> g = x.grad().to_vector<double>();
  EXPECT_NEAR(g[0], 2 * std::exp(1.0), 1e-12);
  EXPECT_NEAR(g[1], 2 * std::exp(2.0), 1e-12);
}

TEST(Autograd, BackwardOnATensorThatNeedsNoGradIsAnError) {
  Tensor x = tensor(std::vector<double>{1, 2}, {2});
  std::string msg = error_of([&] { sum(x).backward(); });
  EXPECT_NE(msg.find("does not require grad"), std::string::npos) << msg;
}

TEST(Autograd, ImplicitGradientOnlyForOneElementOutputs) {
  Tensor x = f64({1, 2}, {2});
  std::string msg = error_of([&] { exp(x).backward(); });
  EXPECT_NE(msg.find("one-element outputs"), std::string::npos) << msg;
  msg = error_of([&] { exp(x).backward(tensor(std::vector<double>{1, 2, 3}, {3})); });
  EXPECT_NE(msg.find("does not match output"), std::string::npos) << msg;
}

TEST(Autograd, InPlaceWriteIntoATensorThatRequiresGradIsAnError) {
  Tensor x = f64({1, 2}, {2});
  std::string msg = error_of([&] { add_(x, 1.0); });
  EXPECT_NE(msg.find("add_: in-place write"), std::string::npos) << msg;
  {
    NoGradGuard no_grad;
    add_(x, 1.0);  // optimizers update parameters this way
  }
  EXPECT_EQ(x.to_vector<double>(), (std::vector<double>{2, 3}));
}

TEST(Autograd, ModifyingASavedTensorIsDetected) {
  Tensor x = f64({1, 2}, {2});
  Tensor y = exp(x);  // saves its output
  Tensor z = sum(y * 1.0);
  {
    NoGradGuard no_grad;
    Tensor alias = y.detach();
    add_(alias, 1.0);
  }
  std::string msg = error_of([&] { z.backward(); });
  EXPECT_NE(msg.find("exp backward"), std::string::npos) << msg;
  EXPECT_NE(msg.find("modified by an in-place operation"), std::string::npos) << msg;
}

TEST(Autograd, BackwardFreesEntriesAndTheirMemory) {
  autograd::TapeGuard guard;
  Tensor x = randn({256, 256}, kFloat64).requires_grad_();
  int64_t before = memory_stats().current_bytes;
  Tensor h = x;
  for (int i = 0; i < 8; ++i) h = tanh(h * 1.01);  // each entry keeps a 512 KiB activation
  Tensor loss = sum(h);
  EXPECT_EQ(guard.tape().live_entries(), 17);  // 8 x (mul, tanh) + sum
  EXPECT_GE(memory_stats().current_bytes - before, 8 * 256 * 256 * 8);
  h = Tensor();
  loss.backward();
  EXPECT_EQ(guard.tape().live_entries(), 0);
  // What is left beyond the start: the loss and x's grad.
  EXPECT_LE(memory_stats().current_bytes - before, 256 * 256 * 8 + 64);
}

TEST(Autograd, AGraphDroppedWithoutBackwardFreesItself) {
  autograd::TapeGuard guard;
  Tensor x = f64({1, 2}, {2});
  { Tensor y = sum(exp(x) * 2.0); }
  EXPECT_EQ(guard.tape().recorded_entries(), 3);
  EXPECT_EQ(guard.tape().live_entries(), 0);
}

TEST(Autograd, DeepGraphsNeitherRecurseNorOverflow) {
  // 200k entries: a recursive replay or a recursive destructor would overflow the stack.
  Tensor x = f64({1.0}, {1});
  Tensor h = x;
  for (int i = 0; i < 200000; ++i) h = h + 1e-6;
  sum(h).backward();
  EXPECT_EQ(x.grad().item<double>(), 1.0);
  Tensor g = x;
  for (int i = 0; i < 200000; ++i) g = g * 1.0;
  g = Tensor();  // dropped without backward
}

TEST(Autograd, RequiresGradOnlyOnFloatingLeaves) {
  Tensor i = arange(4);
  std::string msg = error_of([&] { i.requires_grad_(); });
  EXPECT_NE(msg.find("only floating-point"), std::string::npos) << msg;
  Tensor x = f64({1}, {1});
  Tensor y = x * 2.0;
  msg = error_of([&] { y.requires_grad_(false); });
  EXPECT_NE(msg.find("not a leaf"), std::string::npos) << msg;
}

// ---- custom Functions ---------------------------------------------------------------------------------------

namespace {

// y = scale * x^3, with a hand-written backward; counts backward calls.
struct ScaledCube : autograd::Function<ScaledCube> {
  static constexpr const char* name = "scaled_cube";
  static inline int backward_calls = 0;
  static Tensor forward(autograd::AutogradContext* ctx, const Tensor& x, double scale) {
    ctx->save_for_backward({x});
    ctx->saved_data["scale"] = scale;
    return mul(mul(mul(x, x), x), scale);
  }
  static std::vector<Tensor> backward(autograd::AutogradContext* ctx, const std::vector<Tensor>& g) {
    ++backward_calls;
    Tensor x = ctx->get_saved_variables()[0];
    double scale = std::any_cast<double>(ctx->saved_data["scale"]);
    return {mul(mul(mul(x, x), 3.0 * scale), g[0]), Tensor()};
  }
};

struct WrongGradCount : autograd::Function<WrongGradCount> {
  static Tensor forward(autograd::AutogradContext*, const Tensor& x) { return x * 2.0; }
  static std::vector<Tensor> backward(autograd::AutogradContext*, const std::vector<Tensor>& g) {
    return {g[0], g[0]};
  }
};

}  // namespace

TEST(AutogradFunction, IsOneEntryWithTheUsersBackward) {
  autograd::TapeGuard guard;
  Tensor x = f64({1, -2}, {2});
  Tensor y = ScaledCube::apply(x, 0.5);
  EXPECT_EQ(y.grad_fn_name(), "scaled_cube");
  EXPECT_EQ(guard.tape().recorded_entries(), 1);  // the ops inside forward recorded nothing
  ScaledCube::backward_calls = 0;
  sum(y).backward();
  EXPECT_EQ(ScaledCube::backward_calls, 1);
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1.5, 6.0}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return ScaledCube::apply(in[0], 0.5); },
                        {f64({0.3, -0.7, 1.1}, {3})}));
}

TEST(AutogradFunction, WrongNumberOfGradientsIsAnError) {
  Tensor x = f64({1}, {1});
  std::string msg = error_of([&] { sum(WrongGradCount::apply(x)).backward(); });
  EXPECT_NE(msg.find("one per forward argument"), std::string::npos) << msg;
}

// ---- checkpoint ---------------------------------------------------------------------------------------------

TEST(Checkpoint, GradientsEqualThePlainGraphWithDropoutOn) {
  auto block = [](const std::vector<Tensor>& in) {
    Tensor h = dropout(tanh(matmul(in[0], in[1])), 0.3, /*train=*/true);
    return std::vector<Tensor>{matmul(h, in[1])};
  };
  Tensor x0 = randn({4, 6}, kFloat64), w0 = randn({6, 6}, kFloat64);

  manual_seed(7);
  Tensor x1 = x0.clone().requires_grad_(), w1 = w0.clone().requires_grad_();
  Tensor plain = block({x1, w1})[0];
  sum(plain * plain).backward();

  manual_seed(7);
  Tensor x2 = x0.clone().requires_grad_(), w2 = w0.clone().requires_grad_();
  int64_t entries_before;
  Tensor ckpt;
  {
    autograd::TapeGuard guard;
    ckpt = checkpoint(block, {x2, w2})[0];
    entries_before = guard.tape().recorded_entries();
  }
  EXPECT_EQ(entries_before, 1);  // one entry; the activations inside were not kept
  EXPECT_TRUE(allclose(ckpt, plain, 0, 0));
  // Draw something else in between: the recomputation must rewind to the forward's Philox state anyway.
  Tensor noise = rand({100});
  sum(ckpt * ckpt).backward();
  EXPECT_TRUE(allclose(x2.grad(), x1.grad(), 1e-12, 1e-12));
  EXPECT_TRUE(allclose(w2.grad(), w1.grad(), 1e-12, 1e-12));
  // The generator continues where it was, not where the rewind left it.
  Tensor after = rand({1});
  manual_seed(7);
  (void)dropout(ones({4, 6}, kFloat64), 0.3, true);
  (void)rand({100});
  EXPECT_EQ(after.item<float>(), rand({1}).item<float>());
}

TEST(Checkpoint, ParametersCapturedByTheFunctionGetGradients) {
  Tensor w = f64({2.0}, {1});
  Tensor x = tensor(std::vector<double>{3.0}, {1});  // needs no grad
  Tensor y = checkpoint([w](const Tensor& in) { return in * w; }, x);
  sum(y).backward();
  EXPECT_EQ(w.grad().item<double>(), 3.0);
}

// ---- gradcheck itself -----------------------------------------------------------------------------------------

TEST(Gradcheck, CatchesAWrongDerivative) {
  struct WrongExp : autograd::Function<WrongExp> {
    static Tensor forward(autograd::AutogradContext*, const Tensor& x) { return exp(x); }
    static std::vector<Tensor> backward(autograd::AutogradContext*, const std::vector<Tensor>& g) {
      return {g[0] * 1.01};  // not exp(x)
    }
  };
  std::string msg = error_of([&] {
    gradcheck([](const std::vector<Tensor>& in) { return WrongExp::apply(in[0]); }, {f64({0.1, 0.2}, {2})});
  });
  EXPECT_NE(msg.find("Jacobian mismatch"), std::string::npos) << msg;
  EXPECT_FALSE(gradcheck([](const std::vector<Tensor>& in) { return WrongExp::apply(in[0]); },
                         {f64({0.1, 0.2}, {2})}, {.raise = false}));
}

TEST(Gradcheck, RefusesFloat32) {
  Tensor x = tensor(std::vector<float>{1, 2}, {2}).requires_grad_();
  std::string msg = error_of([&] { gradcheck([](const std::vector<Tensor>& in) { return exp(in[0]); }, {x}); });
  EXPECT_NE(msg.find("float64"), std::string::npos) << msg;
}

TEST(Gradcheck, ElementwiseArithmeticWithBroadcasting) {
  auto fn = [](const std::vector<Tensor>& in) { return exp(in[0]) * in[1] - in[0] / in[1] + in[1] * 2.0; };
  EXPECT_TRUE(gradcheck(fn, {f64({0.1, 0.2, 0.3, -0.4, 0.5, -0.6}, {2, 3}), f64({1.5, -2.0, 0.5}, {3})}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return mean(in[0] * in[0], {0}); },
                        {f64({0.1, 0.2, 0.3, -0.4, 0.5, -0.6}, {2, 3})}));
}
