// Derivatives of the elementwise ops (ops/elementwise.cpp), checked against finite differences with
// gradcheck, plus the conventions finite differences cannot see (ties, kinks, zeros of pow) checked by value.
#include <gtest/gtest.h>

#include <cmath>

#include "loom/loom.h"
#include "loom/ops/backend.h"

using namespace loom;

namespace {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// A leaf holding the given values (test::leaf draws normal values instead).
Tensor leaf(std::vector<double> v, Shape shape) { return tensor(std::move(v), shape).requires_grad_(); }

// Uniform values in [lo, hi) from a fixed Philox state, as a float64 leaf.
Tensor uniform_leaf(Shape shape, double lo, double hi, uint64_t seed) {
  Tensor u = rand(shape, PhiloxState{seed, 0}, kFloat64);
  Tensor v;
  {
    NoGradGuard no_grad;
    v = add(mul(u, hi - lo), lo).contiguous();
  }
  return v.requires_grad_();
}

// Values in [lo, hi) that keep at least `gap` away from every point in `kinks` (so the finite differences
// never straddle a kink of relu, abs, clamp, ...).
Tensor leaf_away_from(Shape shape, double lo, double hi, std::vector<double> kinks, double gap,
                      uint64_t seed) {
  std::vector<double> v = rand(shape, PhiloxState{seed, 0}, kFloat64).to_vector<double>();
  for (double& x : v) {
    x = lo + (hi - lo) * x;
    for (double k : kinks)
      if (std::abs(x - k) < gap) x = k + (x < k ? -gap : gap);
  }
  return leaf(v, shape);
}

bool check(const Fn& fn, const std::vector<Tensor>& inputs) { return gradcheck(fn, inputs); }

std::vector<double> grad_of(const Tensor& x) { return x.grad().to_vector<double>(); }

}  // namespace

// ---- binary
// -------------------------------------------------------------------------------------------------

TEST(GradcheckElementwise, PowTensorTensorWithBroadcasting) {
  Tensor a = uniform_leaf({2, 3}, 0.5, 2.0, 1);
  Tensor b = uniform_leaf({3}, -1.5, 2.5, 2);
  EXPECT_TRUE(check([](const auto& in) { return pow(in[0], in[1]); }, {a, b}));
  Tensor c = uniform_leaf({2, 1}, 0.5, 2.0, 3);
  Tensor e = uniform_leaf({1, 4}, -1.0, 2.0, 4);
  EXPECT_TRUE(check([](const auto& in) { return pow(in[0], in[1]); }, {c, e}));
  // Only one side requiring grad, and a 0-d exponent.
  Tensor e0 = uniform_leaf({}, 0.5, 1.5, 5);
  Tensor a_const = a.detach();
  EXPECT_TRUE(check([a_const](const auto& in) { return pow(a_const, in[0]); }, {e0}));
  EXPECT_TRUE(check([](const auto& in) { return pow(in[0], in[1]); }, {a, e0}));
}

TEST(GradcheckElementwise, PowOfNonContiguousViews) {
  Tensor a = uniform_leaf({3, 2}, 0.5, 2.0, 6);
  Tensor b = uniform_leaf({2, 6}, -1.0, 2.0, 7);
  // a transposed, b sliced with a step: both reach the kernel as strided views.
  EXPECT_TRUE(
      check([](const auto& in) { return pow(in[0].transpose(0, 1), in[1].slice(1, 0, 6, 2)); }, {a, b}));
}

TEST(GradcheckElementwise, PowScalarExponentAndScalarBase) {
  Tensor a = uniform_leaf({2, 3}, 0.5, 2.0, 8);
  for (double e : {3.0, 2.0, 0.5, -1.5, 1.0, 0.0}) {
    EXPECT_TRUE(check([e](const auto& in) { return pow(in[0], e); }, {a})) << "exponent " << e;
  }
  Tensor x = uniform_leaf({2, 3}, -1.5, 1.5, 9);
  for (double base : {2.0, 0.5, 3.7}) {
    EXPECT_TRUE(check([base](const auto& in) { return pow(base, in[0]); }, {x})) << "base " << base;
  }
  EXPECT_TRUE(check([](const auto& in) { return pow(in[0].transpose(0, 1), 2.5); }, {a}));
}

TEST(GradcheckElementwise, PowZerosFollowPyTorch) {
  // x^0 has gradient 0 even at x = 0 (not 0 * 0^-1 = NaN).
  Tensor x = leaf({0.0, 2.0}, {2});
  sum(pow(x, 0.0)).backward();
  EXPECT_EQ(grad_of(x), (std::vector<double>{0, 0}));
  // Tensor exponent: zero exponent gives a zero gradient; a = 0 with b >= 0 gives b a zero gradient.
  Tensor a = leaf({0.0, 0.0, 2.0}, {3});
  Tensor b = leaf({0.0, 2.0, 3.0}, {3});
  sum(pow(a, b)).backward();
  std::vector<double> ga = grad_of(a), gb = grad_of(b);
  EXPECT_EQ(ga[0], 0.0);
  EXPECT_EQ(ga[1], 0.0);  // 2 * 0^1
  EXPECT_DOUBLE_EQ(ga[2], 3.0 * 4.0);
  EXPECT_EQ(gb[0], 0.0);
  EXPECT_EQ(gb[1], 0.0);
  EXPECT_DOUBLE_EQ(gb[2], 8.0 * std::log(2.0));
  // 0^e: no NaN for e >= 0.
  Tensor e = leaf({0.5, 2.0}, {2});
  sum(pow(0.0, e)).backward();
  EXPECT_EQ(grad_of(e), (std::vector<double>{0, 0}));
}

TEST(GradcheckElementwise, MaximumMinimumWithBroadcasting) {
  // Distinct values everywhere (no ties), so the max is differentiable.
  Tensor a = leaf({0.1, -0.7, 1.3, 0.4, -1.2, 0.9}, {2, 3});
  Tensor b = leaf({0.3, -0.2, 0.8}, {3});
  EXPECT_TRUE(check([](const auto& in) { return maximum(in[0], in[1]); }, {a, b}));
  EXPECT_TRUE(check([](const auto& in) { return minimum(in[0], in[1]); }, {a, b}));
  EXPECT_TRUE(check([](const auto& in) { return maximum(in[0].transpose(0, 1), in[1].unsqueeze(1)); },
                    {leaf({0.1, -0.7, 1.3, 0.4, -1.2, 0.9}, {2, 3}), leaf({0.3, -0.2, 0.8}, {3})}));
}

TEST(GradcheckElementwise, MaximumMinimumSplitTiesHalfAndHalf) {
  for (bool is_max : {true, false}) {
    Tensor a = leaf({1.0, 2.0, 3.0}, {3});
    Tensor b = leaf({1.0, 5.0, 0.0}, {3});
    Tensor y = is_max ? maximum(a, b) : minimum(a, b);
    sum(mul(y, 2.0)).backward();
    EXPECT_EQ(grad_of(a), is_max ? (std::vector<double>{1, 0, 2}) : (std::vector<double>{1, 2, 0}));
    EXPECT_EQ(grad_of(b), is_max ? (std::vector<double>{1, 2, 0}) : (std::vector<double>{1, 0, 2}));
  }
  // A broadcast operand collects the halves of all its ties.
  Tensor a = leaf({1.0, 1.0, 1.0}, {3});
  Tensor s = leaf({1.0}, {1});
  sum(maximum(a, s)).backward();
  EXPECT_EQ(grad_of(s), (std::vector<double>{1.5}));
}

TEST(GradcheckElementwise, ScalarOnTheLeftRecords) {
  Tensor x = uniform_leaf({2, 3}, 0.5, 2.0, 10);
  EXPECT_TRUE(check([](const auto& in) { return 2.0 - in[0]; }, {x}));
  EXPECT_TRUE(check([](const auto& in) { return 2.0 / in[0]; }, {x}));
  EXPECT_TRUE(check([](const auto& in) { return 2.0 * in[0]; }, {x}));
  EXPECT_TRUE(check([](const auto& in) { return 2.0 + in[0]; }, {x}));
  EXPECT_TRUE(
      check([](const auto& in) { return 1.5 / in[0].transpose(0, 1) - 3.0 * in[0].transpose(0, 1); }, {x}));
  EXPECT_EQ((2.0 - x).grad_fn_name(), "sub");
  EXPECT_EQ((2.0 / x).grad_fn_name(), "div");
}

TEST(GradcheckElementwise, TensorScalarArithmetic) {
  Tensor x = uniform_leaf({2, 3}, 0.5, 2.0, 11);
  EXPECT_TRUE(check([](const auto& in) { return (in[0] + 1.5) * 3.0 - in[0] / 4.0 + (in[0] - 2.0); }, {x}));
}

TEST(GradcheckElementwise, MixedDtypesGiveEachInputItsOwnDtype) {
  Tensor a = tensor(std::vector<float>{0.5f, 1.5f, 2.0f}, {3}).requires_grad_();
  Tensor b = tensor(std::vector<double>{1.0, 2.0, 0.5}, {3}).requires_grad_();
  Tensor y = pow(a, b);
  EXPECT_EQ(y.dtype(), kFloat64);
  sum(maximum(y, b) + where(gt(b, 0.7), a, b)).backward();
  EXPECT_EQ(a.grad().dtype(), kFloat32);
  EXPECT_EQ(b.grad().dtype(), kFloat64);
}

TEST(GradcheckElementwise, ComparisonsAndLogicalOpsRecordNothing) {
  Tensor a = uniform_leaf({2, 3}, -1, 1, 12);
  Tensor b = uniform_leaf({3}, -1, 1, 13);
  autograd::TapeGuard guard;
  std::vector<Tensor> outs{eq(a, b),   ne(a, b),   lt(a, b),   le(a, b),   gt(a, b),   ge(a, b),
                           eq(a, 0.5), ne(a, 0.5), lt(a, 0.5), le(a, 0.5), gt(a, 0.5), ge(a, 0.5)};
  outs.push_back(logical_and(outs[0], outs[1]));
  outs.push_back(logical_or(outs[0], outs[1]));
  outs.push_back(logical_not(outs[2]));
  for (const Tensor& t : outs) {
    EXPECT_EQ(t.dtype(), kBool);
    EXPECT_FALSE(t.requires_grad());
  }
  EXPECT_EQ(guard.tape().recorded_entries(), 0);
}

// ---- unary
// --------------------------------------------------------------------------------------------------

TEST(GradcheckElementwise, SmoothUnaryOps) {
  Tensor pos = uniform_leaf({2, 3}, 0.3, 3.0, 20);
  Tensor any = uniform_leaf({2, 3}, -3.0, 3.0, 21);
  Tensor nonzero = leaf_away_from({2, 3}, -2.0, 2.0, {0.0}, 0.2, 22);
  EXPECT_TRUE(check([](const auto& in) { return log(in[0]); }, {pos}));
  EXPECT_TRUE(check([](const auto& in) { return sqrt(in[0]); }, {pos}));
  EXPECT_TRUE(check([](const auto& in) { return rsqrt(in[0]); }, {pos}));
  EXPECT_TRUE(check([](const auto& in) { return tanh(in[0]); }, {any}));
  EXPECT_TRUE(check([](const auto& in) { return sigmoid(in[0]); }, {any}));
  EXPECT_TRUE(check([](const auto& in) { return exp(in[0]); }, {any}));
  EXPECT_TRUE(check([](const auto& in) { return neg(in[0]); }, {any}));
  EXPECT_TRUE(check([](const auto& in) { return square(in[0]); }, {any}));
  EXPECT_TRUE(check([](const auto& in) { return reciprocal(in[0]); }, {nonzero}));
  EXPECT_TRUE(check([](const auto& in) { return gelu(in[0]); }, {any}));
  EXPECT_TRUE(check([](const auto& in) { return gelu(in[0], "tanh"); }, {any}));
  // Strided views into the ops.
  EXPECT_TRUE(check([](const auto& in) { return log(in[0].transpose(0, 1)); }, {pos}));
  EXPECT_TRUE(check([](const auto& in) { return gelu(in[0].transpose(0, 1)); }, {any}));
  EXPECT_TRUE(check([](const auto& in) { return tanh(in[0].slice(1, 0, 3, 2)); }, {any}));
}

TEST(GradcheckElementwise, GeluAcrossItsRange) {
  // Tails and the neighbourhood of 0 (where Phi comes from gelu(x) / x in the composite form).
  Tensor x = leaf({-12.0, -5.0, -2.5, -1e-3, -1e-40, 0.0, 1e-40, 1e-3, 0.7, 2.5, 6.0, 12.0}, {12});
  EXPECT_TRUE(check([](const auto& in) { return gelu(in[0]); }, {x}));
  EXPECT_TRUE(check([](const auto& in) { return gelu(in[0], "tanh"); }, {x}));
}

TEST(GradcheckElementwise, PiecewiseUnaryOpsAwayFromTheirKinks) {
  Tensor x = leaf_away_from({2, 4}, -2.0, 2.0, {0.0, -0.5, 1.0}, 0.05, 23);
  EXPECT_TRUE(check([](const auto& in) { return relu(in[0]); }, {x}));
  EXPECT_TRUE(check([](const auto& in) { return abs(in[0]); }, {x}));
  EXPECT_TRUE(check([](const auto& in) { return elu(in[0]); }, {x}));
  EXPECT_TRUE(check([](const auto& in) { return elu(in[0], 0.5); }, {x}));
  EXPECT_TRUE(check([](const auto& in) { return clamp(in[0], -0.5, 1.0); }, {x}));
  EXPECT_TRUE(check([](const auto& in) { return clamp(in[0], -INFINITY, 1.0); }, {x}));
  EXPECT_TRUE(check([](const auto& in) { return clamp(in[0], -0.5, INFINITY); }, {x}));
  EXPECT_TRUE(check([](const auto& in) { return sign(in[0]); }, {x}));
  EXPECT_TRUE(check([](const auto& in) { return relu(in[0].transpose(0, 1)); }, {x}));
}

TEST(GradcheckElementwise, ReluBackwardKernelMatchesComposedDefault) {
  // The CPU's fused relu_backward against the backend default (where(out > 0, grad, 0)) on a long float32 and
  // float64 tensor with zeros, negative zeros, NaN and infinities among the outputs (vector body and tail).
  for (DType dtype : {kFloat32, kFloat64}) {
    SCOPED_TRACE(dtype_name(dtype));
    manual_seed(3);
    const int64_t n = 100003;
    Tensor out = relu(randn({n}, dtype));
    {
      NoGradGuard no_grad;
      out.narrow(0, 5, 1).fill_(NAN);
      out.narrow(0, 6, 1).fill_(-0.0);
      out.narrow(0, 7, 1).fill_(INFINITY);
      out.narrow(0, n - 1, 1).fill_(NAN);
    }
    Tensor grad = randn({n}, dtype);
    Tensor fused = Tensor::empty({n}, dtype), composed = Tensor::empty({n}, dtype);
    cpu_backend().relu_backward(grad, out, fused);
    cpu_backend().Backend::relu_backward(grad, out, composed);
    EXPECT_EQ(sum(ne(fused, composed).to(kInt64)).item<int64_t>(), 0);
    EXPECT_EQ(fused.narrow(0, 5, 3).to(kFloat64).to_vector<double>(),
              (std::vector<double>{0, 0, grad.narrow(0, 7, 1).to(kFloat64).item<double>()}));
  }
}

TEST(GradcheckElementwise, KinksFollowPyTorch) {
  Tensor x = leaf({-1.0, 0.0, 1.0, 2.0, 3.0}, {5});
  sum(relu(x)).backward();
  EXPECT_EQ(grad_of(x), (std::vector<double>{0, 0, 1, 1, 1}));
  x.set_grad(Tensor());
  sum(abs(x)).backward();
  EXPECT_EQ(grad_of(x), (std::vector<double>{-1, 0, 1, 1, 1}));
  x.set_grad(Tensor());
  // Both bounds pass the gradient.
  sum(clamp(x, 0.0, 2.0)).backward();
  EXPECT_EQ(grad_of(x), (std::vector<double>{0, 1, 1, 1, 0}));
  x.set_grad(Tensor());
  Tensor s = sign(x);
  EXPECT_TRUE(s.requires_grad());
  sum(s).backward();
  EXPECT_EQ(grad_of(x), (std::vector<double>{0, 0, 0, 0, 0}));
  x.set_grad(Tensor());
  sum(elu(x, 2.0)).backward();
  EXPECT_NEAR(grad_of(x)[0], 2.0 * std::exp(-1.0), 1e-15);
  EXPECT_EQ(grad_of(x)[1], 2.0);  // x = 0 is on the exponential side
  EXPECT_EQ(grad_of(x)[2], 1.0);
}

TEST(GradcheckElementwise, FusedGeluBackwardMatchesTheComposite) {
  for (DType dtype : {kFloat32, kFloat64}) {
    for (bool tanh_approx : {false, true}) {
      // 1003 elements: whole vectors, a tail, and values from both tails of the curve through 0.
      Tensor x = mul(sub(rand({1003}, PhiloxState{30, 0}, dtype), 0.5), 24.0);
      x.narrow(0, 0, 3).copy_(tensor(std::vector<double>{0.0, 1e-35, -1e-35}, {3}).to(dtype));
      Tensor g = randn({1003}, PhiloxState{31, 0}, dtype);
      Tensor fused = empty({1003}, dtype), composite = empty({1003}, dtype);
      Backend& cpu = cpu_backend();
      cpu.gelu_backward(g, x, tanh_approx, fused);
      cpu.Backend::gelu_backward(g, x, tanh_approx, composite);
      double tol = dtype == kFloat32 ? 2e-6 : 1e-13;
      EXPECT_TRUE(allclose(fused, composite, tol, tol)) << dtype_name(dtype) << " tanh " << tanh_approx;
    }
  }
}

// ---- selection
// ----------------------------------------------------------------------------------------------

TEST(GradcheckElementwise, WhereWithBroadcasting) {
  Tensor cond = tensor(std::vector<bool>{true, false, true, false, false, true}, {2, 3});
  Tensor a = uniform_leaf({2, 3}, -1, 1, 40);
  Tensor b = uniform_leaf({3}, -1, 1, 41);
  EXPECT_TRUE(check([cond](const auto& in) { return where(cond, in[0], in[1]); }, {a, b}));
  // Condition broadcast too, a as a [2, 1] column, b a 0-d.
  Tensor row = tensor(std::vector<bool>{true, false, true}, {3});
  Tensor col = uniform_leaf({2, 1}, -1, 1, 42);
  Tensor b0 = uniform_leaf({}, -1, 1, 43);
  EXPECT_TRUE(check([row](const auto& in) { return where(row, in[0], in[1]); }, {col, b0}));
  EXPECT_TRUE(
      check([cond](const auto& in) { return where(cond, in[0].transpose(0, 1).transpose(0, 1), 2.5); }, {a}));
  EXPECT_TRUE(check(
      [cond](const auto& in) {
        return where(cond.transpose(0, 1), in[0].transpose(0, 1), in[1].unsqueeze(1).expand({3, 2}));
      },
      {a, leaf({0.1, 0.2, 0.3}, {3})}));
}

TEST(GradcheckElementwise, MaskedFillWithBroadcastMask) {
  Tensor x = uniform_leaf({2, 3}, -1, 1, 44);
  Tensor mask = tensor(std::vector<bool>{false, true, false}, {3});
  EXPECT_TRUE(check([mask](const auto& in) { return masked_fill(in[0], mask, 3.0); }, {x}));
  EXPECT_TRUE(check(
      [mask](const auto& in) { return masked_fill(in[0].transpose(0, 1), mask.unsqueeze(1), -2.0); }, {x}));
  sum(masked_fill(x, mask, -1e9)).backward();
  EXPECT_EQ(grad_of(x), (std::vector<double>{1, 0, 1, 1, 0, 1}));
}
