#pragma once
// The gtest assertions and helpers the test suites share: error messages, closeness through compare(), seeded
// inputs, and a scoped thread count.
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "loom/core/tensor.h"
#include "support/compare.h"

namespace loom::test {

// Expects fn to throw loom::Error whose message contains every needle; a failure names each missing needle
// and quotes the message. Another exception type propagates and fails the test.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& needles);
void expect_error(const std::function<void()>& fn, const std::string& needle);
// For a braced list of needles: {"a", "b"} would otherwise convert to std::string (the iterator-pair
// constructor) as readily as to std::vector, and the call would be ambiguous.
void expect_error(const std::function<void()>& fn, std::initializer_list<std::string> needles);

// The message of the loom::Error fn throws, or "" when it throws none.
std::string error_of(const std::function<void()>& fn);

// compare(got, want, tol) as a gtest expectation (both sides made contiguous); `what` prefixes the failure.
// The default tolerance is compare()'s for the dtype.
void expect_close(const Tensor& got, const Tensor& want, Tolerance tol = {}, const std::string& what = "");
void expect_close(const Tensor& got, const Tensor& want, double rtol, double atol,
                  const std::string& what = "");

// Standard normal draws from Philox state {seed, 0}, times scale, contiguous and outside autograd.
Tensor normal(Shape shape, uint64_t seed, DType dtype = kFloat64, double scale = 1.0);
// normal(...) as a leaf that requires grad.
Tensor leaf(Shape shape, uint64_t seed, DType dtype = kFloat64, double scale = 1.0);
// A bool mask with each entry true with probability p (uniform draws from Philox state {seed, 0}).
Tensor random_mask(Shape shape, uint64_t seed, double p);

// Same shape and equal values elementwise (what == says: -0 equals 0, NaN equals nothing).
bool identical(const Tensor& a, const Tensor& b);
// No NaN or infinity.
bool all_finite(const Tensor& t);
// max |t|, 0 for an empty tensor.
double max_abs(const Tensor& t);
// max |a - b| with both read as float64 (broadcasting as the subtraction does).
double max_abs_diff(const Tensor& a, const Tensor& b);

// Sets the CPU pool size for a scope and restores it after: a kernel's work split (and so its summation
// order) follows the thread count, which the tests pin or vary.
class ThreadsGuard {
 public:
  explicit ThreadsGuard(int n);
  ~ThreadsGuard();
  ThreadsGuard(const ThreadsGuard&) = delete;
  ThreadsGuard& operator=(const ThreadsGuard&) = delete;

 private:
  int saved_;
};

}  // namespace loom::test
