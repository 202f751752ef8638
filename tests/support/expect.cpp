#include "support/expect.h"

#include <gtest/gtest.h>

#include <cmath>

#include "loom/loom.h"

namespace loom::test {

void expect_error(const std::function<void()>& fn, const std::vector<std::string>& needles) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const std::string& n : needles)
      EXPECT_NE(message.find(n), std::string::npos) << "expected '" << n << "' in: " << message;
    return;
  }
  std::string wanted;
  for (const std::string& n : needles) wanted += (wanted.empty() ? "'" : ", '") + n + "'";
  ADD_FAILURE() << "expected a loom::Error containing " << wanted;
}

void expect_error(const std::function<void()>& fn, const std::string& needle) {
  expect_error(fn, std::vector<std::string>{needle});
}

void expect_error(const std::function<void()>& fn, std::initializer_list<std::string> needles) {
  expect_error(fn, std::vector<std::string>(needles));
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void expect_close(const Tensor& got, const Tensor& want, Tolerance tol, const std::string& what) {
  ASSERT_TRUE(got.defined()) << what << ": got an undefined tensor";
  ASSERT_TRUE(want.defined()) << what << ": the reference is an undefined tensor";
  Comparison c = compare(got.contiguous(), want.contiguous(), tol);
  EXPECT_TRUE(c.ok) << what << (what.empty() ? "" : ": ") << c.message;
}

void expect_close(const Tensor& got, const Tensor& want, double rtol, double atol, const std::string& what) {
  expect_close(got, want, Tolerance{rtol, atol}, what);
}

Tensor normal(Shape shape, uint64_t seed, DType dtype, double scale) {
  NoGradGuard no_grad;
  Tensor t = randn(shape, PhiloxState{seed, 0}, dtype);
  if (scale != 1.0) t = mul(t, scale);
  return t.contiguous();
}

Tensor leaf(Shape shape, uint64_t seed, DType dtype, double scale) {
  return normal(std::move(shape), seed, dtype, scale).requires_grad_();
}

Tensor random_mask(Shape shape, uint64_t seed, double p) {
  NoGradGuard no_grad;
  return lt(rand(shape, PhiloxState{seed, 0}), p);
}

bool identical(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && loom::all(eq(a, b)).item<bool>();
}

bool all_finite(const Tensor& t) { return loom::all(lt(abs(t), INFINITY)).item<bool>(); }

double max_abs(const Tensor& t) { return t.numel() == 0 ? 0.0 : amax(abs(t)).item<double>(); }

double max_abs_diff(const Tensor& a, const Tensor& b) {
  return amax(abs(a.to(kFloat64) - b.to(kFloat64))).item<double>();
}

ThreadsGuard::ThreadsGuard(int n) : saved_(get_num_threads()) { set_num_threads(n); }

ThreadsGuard::~ThreadsGuard() { set_num_threads(saved_); }

}  // namespace loom::test
