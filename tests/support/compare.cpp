#include "support/compare.h"

#include <cmath>
#include <sstream>
#include <vector>

namespace loom::test {
namespace {

Tolerance resolve(Tolerance tol, DType dtype) {
  double rtol = dtype == DType::Float64 ? 1e-10 : 1e-5;
  double atol = dtype == DType::Float64 ? 1e-12 : 1e-6;
  if (!is_floating(dtype)) rtol = atol = 0;
  return {tol.rtol >= 0 ? tol.rtol : rtol, tol.atol >= 0 ? tol.atol : atol};
}

bool close(double g, double w, const Tolerance& tol) {
  if (std::isnan(g) || std::isnan(w)) return std::isnan(g) && std::isnan(w);
  if (std::isinf(g) || std::isinf(w)) return g == w;
  return std::fabs(g - w) <= tol.atol + tol.rtol * std::fabs(w);
}

}  // namespace

Comparison compare(const Tensor& got, const Tensor& want, Tolerance tol) {
  Comparison c;
  std::ostringstream msg;
  msg.precision(9);
  if (got.dtype() != want.dtype() || got.shape() != want.shape()) {
    c.ok = false;
    msg << "got " << dtype_name(got.dtype()) << shape_str(got.shape()) << ", expected "
        << dtype_name(want.dtype()) << shape_str(want.shape());
    c.message = msg.str();
    return c;
  }
  tol = resolve(tol, want.dtype());
  // float64 holds every value of every Loom dtype except int64 beyond 2^53, so integers compare as int64.
  int64_t bad = 0;
  int64_t first_bad = -1;
  double first_got = 0, first_want = 0;
  if (is_floating(want.dtype())) {
    std::vector<double> g = got.to_vector<double>();
    std::vector<double> w = want.to_vector<double>();
    for (size_t i = 0; i < w.size(); ++i) {
      double err = std::fabs(g[i] - w[i]);
      if (std::isfinite(err) && err > c.max_abs_err) c.max_abs_err = err;
      if (!close(g[i], w[i], tol)) {
        if (bad++ == 0) first_bad = static_cast<int64_t>(i), first_got = g[i], first_want = w[i];
      }
    }
  } else {
    std::vector<int64_t> g = got.to_vector<int64_t>();
    std::vector<int64_t> w = want.to_vector<int64_t>();
    for (size_t i = 0; i < w.size(); ++i) {
      double err = std::fabs(static_cast<double>(g[i]) - static_cast<double>(w[i]));
      if (err > c.max_abs_err) c.max_abs_err = err;
      if (g[i] != w[i] && bad++ == 0) {
        first_bad = static_cast<int64_t>(i), first_got = static_cast<double>(g[i]),
        first_want = static_cast<double>(w[i]);
      }
    }
  }
  if (bad == 0) return c;
  c.ok = false;
  msg << bad << " of " << want.numel() << " elements of " << dtype_name(want.dtype())
      << shape_str(want.shape()) << " differ; max abs err " << c.max_abs_err << "; first at flat index "
      << first_bad << ": got " << first_got << ", expected " << first_want << " (rtol " << tol.rtol
      << ", atol " << tol.atol << ")";
  c.message = msg.str();
  return c;
}

}  // namespace loom::test
