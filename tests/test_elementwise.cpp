// Elementwise ops: values against std:: references, broadcasting, strided views, dtype promotion, special
// values, in-place forms and error messages.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "loom/loom.h"
#include "support/expect.h"

using namespace loom;
using test::expect_error;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Same value, or both NaN, or within rel * |want| (+ a tiny absolute slack for values near zero). On host
// vectors against a long double reference, so not test::expect_close (which compares two Tensors).
template <typename T>
void expect_close(const std::vector<T>& got, const std::vector<T>& want, double rel) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(static_cast<double>(want[i]))) {
      EXPECT_TRUE(std::isnan(static_cast<double>(got[i]))) << "at " << i << ": got " << got[i];
    } else if (std::isinf(static_cast<double>(want[i]))) {
      EXPECT_EQ(got[i], want[i]) << "at " << i;
    } else {
      double tol = rel * std::fabs(static_cast<double>(want[i])) + 1e-300;
      EXPECT_NEAR(got[i], want[i], tol) << "at " << i;
    }
  }
}

std::vector<float> sample_floats() {
  std::vector<float> v;
  for (int i = -400; i <= 400; ++i) v.push_back(static_cast<float>(i) * 0.025f);  // [-10, 10]
  for (float x : {-1000.f, -150.f, -104.f, -88.f, -20.f, 20.f, 88.f, 88.7f, 89.f, 150.f, 1000.f, 1e-20f,
                  -1e-20f, 1e-40f, 0.f, -0.f, kInf, -kInf, kNaN})
    v.push_back(x);
  return v;
}

// Applies `op` to float32 and float64 inputs and compares with `ref` evaluated in long double.
void check_unary(const std::function<Tensor(const Tensor&)>& op,
                 const std::function<long double(long double)>& ref, double rel32, double rel64) {
  std::vector<float> xs = sample_floats();
  std::vector<float> want32;
  std::vector<double> xs64, want64;
  for (float x : xs) {
    want32.push_back(static_cast<float>(ref(x)));
    xs64.push_back(x);
    want64.push_back(static_cast<double>(ref(x)));
  }
  Tensor t32 = tensor(xs);
  Tensor t64 = tensor(xs64);
  Tensor o32 = op(t32), o64 = op(t64);
  EXPECT_EQ(o32.dtype(), kFloat32);
  EXPECT_EQ(o64.dtype(), kFloat64);
  expect_close(o32.to_vector<float>(), want32, rel32);
  expect_close(o64.to_vector<double>(), want64, rel64);
}

}  // namespace

TEST(Elementwise, AddBroadcastsRowsAndColumns) {
  Tensor a = arange(6, kFloat32).view({2, 3});
  Tensor row = tensor<float>({10, 20, 30});
  Tensor col = tensor<float>({100, 200}, {2, 1});
  EXPECT_EQ((a + row).to_vector<float>(), (std::vector<float>{10, 21, 32, 13, 24, 35}));
  EXPECT_EQ((a + col).to_vector<float>(), (std::vector<float>{100, 101, 102, 203, 204, 205}));
  Tensor outer = add(tensor<float>({1, 2}, {2, 1}), tensor<float>({10, 20, 30}, {1, 3}));
  EXPECT_EQ(outer.shape(), (Shape{2, 3}));
  EXPECT_EQ(outer.to_vector<float>(), (std::vector<float>{11, 21, 31, 12, 22, 32}));
  // The scalar operand on the left.
  EXPECT_EQ(sub(tensor<float>({5}), a).to_vector<float>(), (std::vector<float>{5, 4, 3, 2, 1, 0}));
}

TEST(Elementwise, ArithmeticValues) {
  Tensor a = tensor<double>({1.5, -2, 3, 0.25});
  Tensor b = tensor<double>({2, 4, -3, 0.5});
  EXPECT_EQ(sub(a, b).to_vector<double>(), (std::vector<double>{-0.5, -6, 6, -0.25}));
  EXPECT_EQ(mul(a, b).to_vector<double>(), (std::vector<double>{3, -8, -9, 0.125}));
  EXPECT_EQ(div(a, b).to_vector<double>(), (std::vector<double>{0.75, -0.5, -1, 0.5}));
  EXPECT_EQ(maximum(a, b).to_vector<double>(), (std::vector<double>{2, 4, 3, 0.5}));
  EXPECT_EQ(minimum(a, b).to_vector<double>(), (std::vector<double>{1.5, -2, -3, 0.25}));
  expect_close(pow(abs(a), b).to_vector<double>(),
               {std::pow(1.5, 2), std::pow(2.0, 4), std::pow(3.0, -3), std::pow(0.25, 0.5)}, 1e-15);
}

TEST(Elementwise, NonContiguousInputs) {
  Tensor a = arange(12, kFloat32).view({3, 4});
  Tensor at = a.t();  // [4, 3], strides [1, 4]
  Tensor b = arange(12, kFloat32).view({4, 3});
  Tensor sum = add(at, b);
  std::vector<float> want;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j) want.push_back(static_cast<float>(j * 4 + i + i * 3 + j));
  EXPECT_EQ(sum.to_vector<float>(), want);
  // A stepped slice and an expanded column.
  Tensor stepped = arange(10, kFloat32).slice(0, 0, 10, 3);  // 0 3 6 9
  EXPECT_EQ(mul(stepped, 2.0).to_vector<float>(), (std::vector<float>{0, 6, 12, 18}));
  Tensor col = tensor<float>({1, 2, 3}, {3, 1}).expand({3, 4});
  EXPECT_EQ(sub(a, col).to_vector<float>(), (std::vector<float>{-1, 0, 1, 2, 2, 3, 4, 5, 5, 6, 7, 8}));
  EXPECT_EQ(exp(at).contiguous().to_vector<float>(), exp(at.contiguous()).to_vector<float>());
}

TEST(Elementwise, LargeTensorsSplitAcrossThreads) {
  const int64_t n = 1 << 20;
  Tensor a = arange(n, kFloat32);
  Tensor b = full({n}, 0.5);
  std::vector<float> s = add(a, b).to_vector<float>();
  for (int64_t i : {int64_t{0}, int64_t{12345}, n / 2, n - 1}) EXPECT_EQ(s[i], static_cast<float>(i) + 0.5f);
  // Transposed 1024 x 1024: strided on every run.
  Tensor m = arange(n, kFloat32).view({1024, 1024});
  std::vector<float> d = sub(m.t(), m).to_vector<float>();
  EXPECT_EQ(d[1], 1024.0f - 1.0f);
  EXPECT_EQ(d[1024 * 5 + 3], (3.0f * 1024 + 5) - (5.0f * 1024 + 3));
}

TEST(Elementwise, EmptyAndSizeOneDims) {
  Tensor e = add(Tensor::empty({0, 3}), tensor<float>({1, 2, 3}));
  EXPECT_EQ(e.shape(), (Shape{0, 3}));
  EXPECT_EQ(exp(Tensor::empty({0})).numel(), 0);
  EXPECT_EQ(gt(Tensor::empty({2, 0}), 1.0).shape(), (Shape{2, 0}));
  Tensor one = tensor<float>({2}, {1, 1, 1});
  EXPECT_EQ(mul(one, tensor<float>({1, 2, 3}, {3, 1, 1})).shape(), (Shape{3, 1, 1}));
  Tensor s = scalar_tensor(3.0);
  EXPECT_EQ(add(s, s).shape(), Shape{});
  EXPECT_EQ(add(s, s).item<float>(), 6.0f);
}

TEST(Elementwise, DtypePromotion) {
  Tensor i32 = tensor<int32_t>({1, 2});
  Tensor i64 = tensor<int64_t>({3, 4});
  Tensor f32 = tensor<float>({0.5f, 1.5f});
  Tensor f64 = tensor<double>({0.25, 0.75});
  Tensor b = tensor<bool>({true, false});
  EXPECT_EQ(add(i32, i64).dtype(), kInt64);
  EXPECT_EQ(add(i64, f32).dtype(), kFloat32);
  EXPECT_EQ(add(f32, f64).dtype(), kFloat64);
  EXPECT_EQ(add(b, i32).dtype(), kInt32);
  EXPECT_EQ(add(b, b).dtype(), kBool);
  EXPECT_EQ(add(b, b).to_vector<bool>(), (std::vector<bool>{true, false}));
  EXPECT_EQ(mul(b, b).to_vector<bool>(), (std::vector<bool>{true, false}));
  // A 0-d tensor only decides within a higher category.
  EXPECT_EQ(add(f32, scalar_tensor(1, kFloat64)).dtype(), kFloat32);
  EXPECT_EQ(add(i64, scalar_tensor(1, kFloat64)).dtype(), kFloat64);
  EXPECT_EQ(add(i32, scalar_tensor(1, kInt64)).dtype(), kInt32);
  // True division of integers gives float32.
  Tensor q = div(tensor<int64_t>({1, 3, -7}), tensor<int64_t>({2, 2, 2}));
  EXPECT_EQ(q.dtype(), kFloat32);
  EXPECT_EQ(q.to_vector<float>(), (std::vector<float>{0.5f, 1.5f, -3.5f}));
  Tensor q0 = div(tensor<int64_t>({1, 0, -1}), tensor<int64_t>({0, 0, 0}));
  std::vector<float> qv = q0.to_vector<float>();
  EXPECT_EQ(qv[0], kInf);
  EXPECT_TRUE(std::isnan(qv[1]));
  EXPECT_EQ(qv[2], -kInf);
  // Scalars adopt the tensor's dtype unless a fractional scalar meets an integral tensor.
  EXPECT_EQ(add(i32, 2.0).dtype(), kInt32);
  EXPECT_EQ(add(i32, 2.5).dtype(), kFloat32);
  EXPECT_EQ(add(i32, 2.5).to_vector<float>(), (std::vector<float>{3.5f, 4.5f}));
  EXPECT_EQ(mul(f64, 3.0).dtype(), kFloat64);
  EXPECT_EQ(add(b, 1.0).dtype(), kInt64);
  EXPECT_EQ(div(i64, 2.0).dtype(), kFloat32);
  EXPECT_EQ((2.0 * i64).to_vector<int64_t>(), (std::vector<int64_t>{6, 8}));
}

TEST(Elementwise, IntegerArithmetic) {
  Tensor a = tensor<int64_t>({7, -7, 3, 0});
  Tensor b = tensor<int64_t>({2, 2, -4, 5});
  EXPECT_EQ(add(a, b).to_vector<int64_t>(), (std::vector<int64_t>{9, -5, -1, 5}));
  EXPECT_EQ(mul(a, b).to_vector<int64_t>(), (std::vector<int64_t>{14, -14, -12, 0}));
  EXPECT_EQ(maximum(a, b).to_vector<int64_t>(), (std::vector<int64_t>{7, 2, 3, 5}));
  EXPECT_EQ(neg(a).to_vector<int64_t>(), (std::vector<int64_t>{-7, 7, -3, 0}));
  EXPECT_EQ(abs(a).to_vector<int64_t>(), (std::vector<int64_t>{7, 7, 3, 0}));
  EXPECT_EQ(relu(a).to_vector<int64_t>(), (std::vector<int64_t>{7, 0, 3, 0}));
  EXPECT_EQ(sign(a).to_vector<int64_t>(), (std::vector<int64_t>{1, -1, 1, 0}));
  EXPECT_EQ(square(a).to_vector<int64_t>(), (std::vector<int64_t>{49, 49, 9, 0}));
  Tensor i32 = tensor<int32_t>({-3, 4});
  EXPECT_EQ(sub(i32, 1.0).to_vector<int32_t>(), (std::vector<int32_t>{-4, 3}));
  // Integer pow: exact, and negative tensor exponents truncate as PyTorch.
  EXPECT_EQ(pow(tensor<int64_t>({2, 3, -2}), 3.0).to_vector<int64_t>(), (std::vector<int64_t>{8, 27, -8}));
  EXPECT_EQ(pow(tensor<int64_t>({2, 3, -2}), 3.0).dtype(), kInt64);
  EXPECT_EQ(pow(tensor<int64_t>({2, 1, -1, -1}), tensor<int64_t>({-1, -2, -3, -2})).to_vector<int64_t>(),
            (std::vector<int64_t>{0, 1, -1, 1}));
  EXPECT_EQ(pow(2.0, tensor<int64_t>({0, 1, 10})).to_vector<int64_t>(), (std::vector<int64_t>{1, 2, 1024}));
  EXPECT_EQ(pow(tensor<int64_t>({4}), 0.5).dtype(), kFloat32);
  EXPECT_EQ(pow(tensor<int64_t>({4}), 0.5).item<float>(), 2.0f);
  expect_error([] { pow(tensor<int64_t>({2}), -1.0); }, "pow: integers to negative integer powers");
}

TEST(Elementwise, UnaryMathMatchesReferences) {
  check_unary([](const Tensor& t) { return exp(t); }, [](long double x) { return std::exp(x); }, 2e-7, 4e-16);
  check_unary([](const Tensor& t) { return log(abs(t)); },
              [](long double x) { return std::log(std::fabs(x)); }, 2e-7, 4e-16);
  check_unary([](const Tensor& t) { return tanh(t); }, [](long double x) { return std::tanh(x); }, 3e-7,
              6e-16);
  check_unary([](const Tensor& t) { return sigmoid(t); },
              [](long double x) { return 1 / (1 + std::exp(-x)); }, 3e-7, 6e-16);
  check_unary([](const Tensor& t) { return gelu(t); },
              [](long double x) { return 0.5L * x * std::erfc(-x / std::sqrt(2.0L)); }, 2e-5, 1e-13);
  check_unary([](const Tensor& t) { return gelu(t, "tanh"); },
              [](long double x) {
                long double u = std::sqrt(2.0L / 3.14159265358979323846L) * (x + 0.044715L * x * x * x);
                return x / (1 + std::exp(-2 * u));  // x/2 (1 + tanh u) without cancellation
              },
              2e-5, 1e-12);
  check_unary([](const Tensor& t) { return elu(t, 0.7); },
              [](long double x) { return x > 0 ? x : 0.7L * std::expm1(x); }, 3e-7, 6e-16);
  check_unary([](const Tensor& t) { return sqrt(abs(t)); },
              [](long double x) { return std::sqrt(std::fabs(x)); }, 1e-7, 2e-16);
  check_unary([](const Tensor& t) { return rsqrt(abs(t)); },
              [](long double x) { return 1 / std::sqrt(std::fabs(x)); }, 2e-7, 4e-16);
  check_unary([](const Tensor& t) { return reciprocal(t); }, [](long double x) { return 1 / x; }, 1e-7,
              2e-16);
  check_unary([](const Tensor& t) { return pow(t, 2.0); }, [](long double x) { return x * x; }, 1e-7, 2e-16);
  check_unary([](const Tensor& t) { return pow(abs(t), 1.75); },
              [](long double x) { return std::pow(std::fabs(x), 1.75L); }, 3e-7, 1e-15);
  check_unary([](const Tensor& t) { return pow(abs(t), -0.5); },
              [](long double x) { return 1 / std::sqrt(std::fabs(x)); }, 2e-7, 4e-16);
}

TEST(Elementwise, SpecialValues) {
  Tensor x = tensor<float>({-1000, 1000, kNaN, -kInf, kInf, 0, -1});
  std::vector<float> e = exp(x).to_vector<float>();
  EXPECT_EQ(e[0], 0.0f);
  EXPECT_EQ(e[1], kInf);
  EXPECT_TRUE(std::isnan(e[2]));
  EXPECT_EQ(e[3], 0.0f);
  EXPECT_EQ(e[4], kInf);
  std::vector<float> l = log(x).to_vector<float>();
  EXPECT_TRUE(std::isnan(l[0]));
  EXPECT_EQ(l[4], kInf);
  EXPECT_EQ(l[5], -kInf);
  EXPECT_TRUE(std::isnan(l[6]));
  std::vector<float> s = sigmoid(x).to_vector<float>();
  EXPECT_EQ(s[0], 0.0f);
  EXPECT_EQ(s[1], 1.0f);
  EXPECT_TRUE(std::isnan(s[2]));
  std::vector<float> t = tanh(x).to_vector<float>();
  EXPECT_EQ(t[0], -1.0f);
  EXPECT_EQ(t[1], 1.0f);
  EXPECT_TRUE(std::isnan(t[2]));
  std::vector<float> r = relu(x).to_vector<float>();
  EXPECT_EQ(r[0], 0.0f);
  EXPECT_TRUE(std::isnan(r[2]));
  std::vector<float> sg = sign(x).to_vector<float>();
  EXPECT_EQ(sg, (std::vector<float>{-1, 1, 0, -1, 1, 0, -1}));
  // maximum/minimum propagate NaN from either side; comparisons with NaN are false (ne true).
  Tensor a = tensor<float>({kNaN, 1, 2});
  Tensor b = tensor<float>({1, kNaN, 3});
  std::vector<float> mx = maximum(a, b).to_vector<float>();
  EXPECT_TRUE(std::isnan(mx[0]) && std::isnan(mx[1]));
  EXPECT_EQ(mx[2], 3.0f);
  std::vector<float> mn = minimum(a, b).to_vector<float>();
  EXPECT_TRUE(std::isnan(mn[0]) && std::isnan(mn[1]));
  EXPECT_EQ(mn[2], 2.0f);
  EXPECT_EQ(eq(a, a).to_vector<bool>(), (std::vector<bool>{false, true, true}));
  EXPECT_EQ(ne(a, a).to_vector<bool>(), (std::vector<bool>{true, false, false}));
}

TEST(Elementwise, UnaryOnIntegersPromotesToFloat) {
  Tensor i = tensor<int64_t>({0, 1, 2});
  Tensor e = exp(i);
  EXPECT_EQ(e.dtype(), kFloat32);
  expect_close(e.to_vector<float>(), {1.0f, std::exp(1.0f), std::exp(2.0f)}, 2e-7);
  EXPECT_EQ(sqrt(i).dtype(), kFloat32);
  EXPECT_EQ(sigmoid(tensor<bool>({true})).dtype(), kFloat32);
  EXPECT_EQ(reciprocal(tensor<int32_t>({4})).item<float>(), 0.25f);
  expect_error([] { gelu(tensor<int64_t>({1})); }, "gelu: expected a floating tensor");
  expect_error([] { neg(tensor<bool>({true})); }, "neg: bool tensors are not supported");
  expect_error([] { gelu(tensor<float>({1}), "fast"); }, "gelu: approximate must be");
}

TEST(Elementwise, Comparisons) {
  Tensor a = tensor<float>({1, 2, 3});
  Tensor b = tensor<float>({3, 2, 1});
  EXPECT_EQ(lt(a, b).dtype(), kBool);
  EXPECT_EQ(lt(a, b).to_vector<bool>(), (std::vector<bool>{true, false, false}));
  EXPECT_EQ(le(a, b).to_vector<bool>(), (std::vector<bool>{true, true, false}));
  EXPECT_EQ(gt(a, b).to_vector<bool>(), (std::vector<bool>{false, false, true}));
  EXPECT_EQ(ge(a, b).to_vector<bool>(), (std::vector<bool>{false, true, true}));
  EXPECT_EQ(eq(a, 2.0).to_vector<bool>(), (std::vector<bool>{false, true, false}));
  EXPECT_EQ(ne(a, 2.0).to_vector<bool>(), (std::vector<bool>{true, false, true}));
  // Mixed dtypes compare after promotion: 2 (int) == 2.0 (float), and 1 (int) < 1.5.
  EXPECT_EQ(eq(tensor<int64_t>({2, 3}), tensor<float>({2.0f, 2.5f})).to_vector<bool>(),
            (std::vector<bool>{true, false}));
  EXPECT_EQ(lt(tensor<int64_t>({1, 2}), 1.5).to_vector<bool>(), (std::vector<bool>{true, false}));
  Tensor m = lt(tensor<float>({0, 5}, {2, 1}), tensor<float>({1, 6, 7}));  // broadcast to [2, 3]
  EXPECT_EQ(m.to_vector<bool>(), (std::vector<bool>{true, true, true, false, true, true}));
}

TEST(Elementwise, LogicalOps) {
  Tensor a = tensor<bool>({true, true, false, false});
  Tensor b = tensor<bool>({true, false, true, false});
  EXPECT_EQ(logical_and(a, b).to_vector<bool>(), (std::vector<bool>{true, false, false, false}));
  EXPECT_EQ(logical_or(a, b).to_vector<bool>(), (std::vector<bool>{true, true, true, false}));
  EXPECT_EQ(logical_not(a).to_vector<bool>(), (std::vector<bool>{false, false, true, true}));
  expect_error([] { logical_and(tensor<float>({1}), tensor<bool>({true})); },
               "logical_and: expected bool tensors");
  expect_error([] { logical_not(tensor<int64_t>({1})); },
               "logical_not: expected a bool tensor, got int64[1]");
  expect_error([] { sub(tensor<bool>({true}), tensor<bool>({true})); }, "sub: subtraction of bool tensors");
}

TEST(Elementwise, Clamp) {
  Tensor x = tensor<float>({-5, -0.5f, 0.5f, 5, kNaN});
  std::vector<float> c = clamp(x, -1, 1).to_vector<float>();
  EXPECT_EQ(std::vector<float>(c.begin(), c.end() - 1), (std::vector<float>{-1, -0.5f, 0.5f, 1}));
  EXPECT_TRUE(std::isnan(c.back()));
  EXPECT_EQ(clamp(x, 0, INFINITY).to_vector<float>()[3], 5.0f);
  EXPECT_EQ(clamp(x, -INFINITY, 0).to_vector<float>()[0], -5.0f);
  EXPECT_EQ(clamp(tensor<float>({0, 5}), 3, 1).to_vector<float>(),
            (std::vector<float>{1, 1}));  // min > max: max
  Tensor i = tensor<int64_t>({-9, 2, 9});
  EXPECT_EQ(clamp(i, 0, 5).dtype(), kInt64);
  EXPECT_EQ(clamp(i, 0, 5).to_vector<int64_t>(), (std::vector<int64_t>{0, 2, 5}));
  EXPECT_EQ(clamp(i, -INFINITY, 5).to_vector<int64_t>(), (std::vector<int64_t>{-9, 2, 5}));
  EXPECT_EQ(clamp(i, 0.5, INFINITY).dtype(), kFloat32);
  EXPECT_EQ(clamp(i, 0.5, INFINITY).to_vector<float>(), (std::vector<float>{0.5f, 2, 9}));
}

TEST(Elementwise, WhereSelectsBitsExactly) {
  // A long random mask (vector body, tails, several threads) in every dtype, contiguous, scalar and
  // transposed operands, against a scalar loop; -0, inf and NaN pass through unchanged (the kernel selects
  // bits).
  manual_seed(21);
  const int64_t rows = 301, cols = 257;
  Tensor mask = gt(rand({rows, cols}), 0.5);
  std::vector<bool> m;
  for (double v : mask.to(kFloat64).to_vector<double>()) m.push_back(v != 0);
  for (DType dtype : {kFloat32, kFloat64, kInt64, kInt32, kBool}) {
    SCOPED_TRACE(dtype_name(dtype));
    Tensor a = (randn({rows, cols}) * 100.0).to(dtype), b = (randn({cols, rows}) * 100.0).to(dtype).t();
    if (is_floating(dtype)) {
      NoGradGuard no_grad;
      a.narrow(1, 0, 1).fill_(-0.0);
      a.narrow(1, 1, 1).fill_(std::numeric_limits<double>::infinity());
      a.narrow(1, 2, 1).fill_(std::numeric_limits<double>::quiet_NaN());
    }
    const std::vector<double> av = a.to(kFloat64).contiguous().to_vector<double>();
    const std::vector<double> bv = b.to(kFloat64).contiguous().to_vector<double>();
    auto expect_rows = [&](const Tensor& got, const std::vector<double>& x, const std::vector<double>& y) {
      std::vector<double> g = got.to(kFloat64).contiguous().to_vector<double>();
      int64_t wrong = 0;
      for (size_t i = 0; i < g.size(); ++i) {
        const double want = m[i] ? x[i] : y[i];
        const bool same =
            std::isnan(want) ? std::isnan(g[i]) : g[i] == want && std::signbit(g[i]) == std::signbit(want);
        wrong += !same;
      }
      EXPECT_EQ(wrong, 0);
    };
    expect_rows(where(mask, a, b), av, bv);  // one operand transposed: the strided loop
    expect_rows(where(mask, a.contiguous(), b.contiguous()), av, bv);
    if (dtype == kBool) continue;  // a scalar 7 is `true` there
    const std::vector<double> sevens(av.size(), 7.0);
    expect_rows(where(mask, a, 7.0).to(kFloat64), av, sevens);  // a scalar on either side
    expect_rows(masked_fill(a, mask, 7.0).to(kFloat64), sevens, av);
  }
}

TEST(Elementwise, WhereAndMaskedFill) {
  Tensor cond = tensor<bool>({true, false, true}, {3});
  Tensor a = tensor<float>({1, 2, 3});
  Tensor b = tensor<float>({10, 20}, {2, 1});
  Tensor w = where(cond, a, b);  // [2, 3]
  EXPECT_EQ(w.shape(), (Shape{2, 3}));
  EXPECT_EQ(w.to_vector<float>(), (std::vector<float>{1, 10, 3, 1, 20, 3}));
  EXPECT_EQ(where(cond, a, -1.0).to_vector<float>(), (std::vector<float>{1, -1, 3}));
  EXPECT_EQ(where(cond, tensor<int64_t>({1, 2, 3}), 0.5).dtype(), kFloat32);
  EXPECT_EQ(where(cond, tensor<int32_t>({1, 2, 3}), tensor<double>({0, 0, 0})).dtype(), kFloat64);
  expect_error([&] { where(a, a, a); }, "where: expected a bool condition, got float32[3]");

  Tensor x = arange(6, kFloat32).view({2, 3});
  Tensor col_mask = tensor<bool>({false, true, false});  // broadcast over rows
  EXPECT_EQ(masked_fill(x, col_mask, -INFINITY).to_vector<float>(),
            (std::vector<float>{0, -kInf, 2, 3, -kInf, 5}));
  Tensor row_mask = tensor<bool>({true, false}, {2, 1});
  EXPECT_EQ(masked_fill(x.t(), row_mask.t(), 7).to_vector<float>(), (std::vector<float>{7, 3, 7, 4, 7, 5}));
  EXPECT_EQ(masked_fill(tensor<int64_t>({1, 2}), tensor<bool>({true, false}), 9).to_vector<int64_t>(),
            (std::vector<int64_t>{9, 2}));
  expect_error(
      [&] {
        masked_fill(x, tensor<bool>({true, false}, {2, 1, 1}), 0);
      },
      "masked_fill: mask of shape [2, 1, 1] cannot be broadcast to [2, 3]");
  expect_error([&] { masked_fill(x, tensor<float>({1, 0, 1}), 0); }, "masked_fill: expected a bool mask");
}

TEST(Elementwise, BroadcastErrorsNameOpAndShapes) {
  expect_error(
      [] {
        add(Tensor::empty({2, 3}), Tensor::empty({4, 3}));
      },
      "add: shapes [2, 3] and [4, 3] cannot be broadcast");
  expect_error([] { mul(Tensor::empty({2}), Tensor::empty({3})); }, "mul: shapes [2] and [3]");
  expect_error([] { add(Tensor(), Tensor::empty({3})); }, "add: undefined tensor");
}

TEST(Elementwise, AllClose) {
  Tensor a = tensor<float>({1, 2, kInf});
  EXPECT_TRUE(allclose(a, tensor<float>({1, 2.00001f, kInf})));
  EXPECT_FALSE(allclose(a, tensor<float>({1, 2.1f, kInf})));
  EXPECT_FALSE(allclose(a, tensor<float>({1, 2, -kInf})));
  EXPECT_FALSE(allclose(tensor<float>({kNaN}), tensor<float>({kNaN})));
  EXPECT_FALSE(allclose(a, tensor<float>({1, 2})));
  EXPECT_TRUE(allclose(tensor<float>({1, 2.1f}), tensor<double>({1, 2}), 0.1));
  EXPECT_TRUE(allclose(tensor<int64_t>({3}), tensor<int64_t>({3})));
  EXPECT_TRUE(allclose(Tensor::empty({0}), Tensor::empty({0})));
}

TEST(Elementwise, InPlaceForms) {
  Tensor a = arange(6, kFloat32).view({2, 3});
  uint64_t v0 = a.storage()->version();
  void* data = a.data_ptr();
  add_(a, tensor<float>({1, 1, 1}));
  EXPECT_EQ(a.data_ptr(), data);
  EXPECT_GT(a.storage()->version(), v0);
  EXPECT_EQ(a.to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  mul_(a, 2.0);
  sub_(a, tensor<float>({1, 2}, {2, 1}));
  div_(a, tensor<float>({2}));
  EXPECT_EQ(a.to_vector<float>(), (std::vector<float>{0.5f, 1.5f, 2.5f, 3, 4, 5}));
  add_(a, 0.5);
  EXPECT_EQ(a.to_vector<float>(), (std::vector<float>{1, 2, 3, 3.5f, 4.5f, 5.5f}));
  // b reading a's own memory in another layout still sees the old values.
  Tensor sq = arange(4, kFloat32).view({2, 2});
  add_(sq, sq.t());
  EXPECT_EQ(sq.to_vector<float>(), (std::vector<float>{0, 3, 3, 6}));
  add_(sq, sq);
  EXPECT_EQ(sq.to_vector<float>(), (std::vector<float>{0, 6, 6, 12}));
  // A view of a bigger tensor is written in place.
  Tensor big = zeros({3, 3});
  Tensor row = big.select(0, 1);
  add_(row, 1.0);
  EXPECT_EQ(big.to_vector<float>(), (std::vector<float>{0, 0, 0, 1, 1, 1, 0, 0, 0}));
  Tensor i = tensor<int64_t>({1, 2});
  expect_error([&] { add_(i, tensor<float>({0.5f, 0.5f})); }, "add_: result type float32 cannot be cast");
  expect_error([&] { div_(i, tensor<int64_t>({1, 1})); }, "div_: result type float32 cannot be cast");
  expect_error([&] { add_(i, 0.5); }, "add_: result type float32");
  expect_error(
      [&] {
        add_(i, tensor<int64_t>({1, 2, 3}, {3, 1}));
      },
      "add_: shape [3, 1] cannot be broadcast to the in-place shape [2]");
  Tensor expanded = zeros({1}).expand({3});
  expect_error([&] { add_(expanded, 1.0); }, "add_: cannot write in place into an expanded tensor");
}

TEST(Elementwise, Operators) {
  Tensor a = tensor<float>({1, 2, 4});
  EXPECT_EQ((a + a).to_vector<float>(), (std::vector<float>{2, 4, 8}));
  EXPECT_EQ((a - 1.0).to_vector<float>(), (std::vector<float>{0, 1, 3}));
  EXPECT_EQ((1.0 - a).to_vector<float>(), (std::vector<float>{0, -1, -3}));
  EXPECT_EQ((2.0 / a).to_vector<float>(), (std::vector<float>{2, 1, 0.5f}));
  EXPECT_EQ((a / 2.0).to_vector<float>(), (std::vector<float>{0.5f, 1, 2}));
  EXPECT_EQ((-a).to_vector<float>(), (std::vector<float>{-1, -2, -4}));
  EXPECT_EQ((a * a / a - a).to_vector<float>(), (std::vector<float>{0, 0, 0}));
  EXPECT_EQ((3.0 + a * 2.0).to_vector<float>(), (std::vector<float>{5, 7, 11}));
}
