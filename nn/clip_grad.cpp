// clip_grad_norm_: per-gradient norms, stacked, normed again; then one in-place scale per gradient.
#include "loom/nn/clip_grad.h"

#include <cmath>

#include "loom/autograd/grad_mode.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/factory.h"
#include "loom/ops/reduce.h"
#include "loom/ops/shape_ops.h"

namespace loom::nn {
namespace {

// The p-norm of all elements of t (p > 0, or inf).
Tensor norm(const Tensor& t, double p) {
  if (std::isinf(p)) return amax(abs(t));
  if (p == 2.0) return sqrt(sum(square(t)));
  if (p == 1.0) return sum(abs(t));
  return pow(sum(pow(abs(t), p)), 1.0 / p);
}

}  // namespace

Tensor clip_grad_norm_(const std::vector<Tensor>& parameters, double max_norm, double norm_type,
                       bool error_if_nonfinite) {
  LOOM_CHECK(norm_type > 0, "clip_grad_norm_: norm_type must be positive (or INFINITY), got ", norm_type);
  LOOM_CHECK(max_norm >= 0, "clip_grad_norm_: max_norm must be non-negative, got ", max_norm);
  NoGradGuard no_grad;
  std::vector<Tensor> grads;
  for (const Tensor& p : parameters) {
    LOOM_CHECK(p.defined(), "clip_grad_norm_: undefined parameter in the list");
    Tensor g = p.grad();
    if (g.defined()) grads.push_back(g);
  }
  if (grads.empty()) return scalar_tensor(0.0);

  const TensorOptions where = grads[0].options();
  std::vector<Tensor> norms;
  norms.reserve(grads.size());
  for (const Tensor& g : grads) norms.push_back(norm(g, norm_type).to(where.device).to(where.dtype));
  Tensor total = norms.size() == 1 ? norms[0] : norm(stack(norms), norm_type);
  if (error_if_nonfinite) {
    double value = total.to(DType::Float64).item<double>();
    LOOM_CHECK(std::isfinite(value), "clip_grad_norm_: the total norm of order ", norm_type, " of ", grads.size(),
               " gradients is non-finite (", value, "), so they cannot be clipped");
  }
  Tensor coef = clamp(max_norm / add(total, 1e-6), -INFINITY, 1.0);
  for (Tensor& g : grads) {
    Tensor c = coef.to(g.device()).to(g.dtype());
    mul_(g, c);
  }
  return total;
}

}  // namespace loom::nn
