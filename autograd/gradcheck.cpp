#include "loom/autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "loom/autograd/engine.h"
#include "loom/autograd/grad_mode.h"
#include "loom/ops/factory.h"

namespace loom {
namespace {

// The floating outputs of fn, flattened to doubles.
std::vector<std::vector<double>> evaluate(const GradcheckFn& fn, const std::vector<Tensor>& inputs) {
  NoGradGuard no_grad;
  std::vector<std::vector<double>> values;
  for (const Tensor& out : fn(inputs))
    values.push_back(out.defined() && is_floating(out.dtype()) ? out.to_vector<double>() : std::vector<double>());
  return values;
}

}  // namespace

bool gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, GradcheckOptions options) {
  std::vector<size_t> checked;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.defined() || !x.requires_grad()) continue;
    LOOM_CHECK(x.dtype() == DType::Float64 && x.device().is_cpu() && x.is_contiguous(), "gradcheck: input ", i,
               " is ", describe(x), "; inputs that require grad must be contiguous float64 CPU tensors "
               "(finite differences in float32 are too coarse to check anything)");
    LOOM_CHECK(x.is_leaf(), "gradcheck: input ", i, " must be a leaf (create it, then call requires_grad_())");
    checked.push_back(i);
  }
  LOOM_CHECK(!checked.empty(), "gradcheck: no input requires grad");

  // Analytic Jacobian, one row per output element: backward with a one-hot gradient.
  std::vector<Tensor> outputs;
  {
    GradModeGuard grad_on(true);
    outputs = fn(inputs);
  }
  std::vector<std::vector<std::vector<double>>> analytic(outputs.size());  // [output][input k][out elem * n + in]
  for (size_t o = 0; o < outputs.size(); ++o) {
    const Tensor& out = outputs[o];
    if (!out.defined() || !is_floating(out.dtype())) continue;
    analytic[o].resize(checked.size());
    for (size_t k = 0; k < checked.size(); ++k)
      analytic[o][k].assign(static_cast<size_t>(out.numel() * inputs[checked[k]].numel()), 0.0);
    if (!out.requires_grad()) continue;  // no path to any input: the analytic Jacobian is zero
    for (int64_t e = 0; e < out.numel(); ++e) {
      for (size_t k : checked) inputs[k].set_grad(Tensor());
      Tensor onehot = zeros(out.shape(), out.options());
      onehot.reshape({-1}).narrow(0, e, 1).fill_(1.0);
      autograd::backward({out}, {onehot}, /*retain_graph=*/true);
      for (size_t k = 0; k < checked.size(); ++k) {
        Tensor g = inputs[checked[k]].grad();
        if (!g.defined()) continue;
        std::vector<double> gv = g.to_vector<double>();
        int64_t n = inputs[checked[k]].numel();
        for (int64_t j = 0; j < n; ++j) analytic[o][k][static_cast<size_t>(e * n + j)] = gv[static_cast<size_t>(j)];
      }
    }
  }
  for (size_t k : checked) inputs[k].set_grad(Tensor());

  // Numeric Jacobian by central differences, one input element at a time, compared as it is built.
  for (size_t k = 0; k < checked.size(); ++k) {
    const Tensor& x = inputs[checked[k]];
    double* p = x.data<double>();
    int64_t n = x.numel();
    for (int64_t j = 0; j < n; ++j) {
      double orig = p[j];
      p[j] = orig + options.eps;
      auto plus = evaluate(fn, inputs);
      p[j] = orig - options.eps;
      auto minus = evaluate(fn, inputs);
      p[j] = orig;
      for (size_t o = 0; o < outputs.size(); ++o) {
        for (size_t e = 0; e < plus[o].size(); ++e) {
          double numeric = (plus[o][e] - minus[o][e]) / (2 * options.eps);
          double a = analytic[o][k][e * static_cast<size_t>(n) + static_cast<size_t>(j)];
          if (std::abs(a - numeric) <= options.atol + options.rtol * std::abs(numeric)) continue;
          if (!options.raise) return false;
          LOOM_FAIL("gradcheck: Jacobian mismatch for output ", o, " (", describe(outputs[o]),
                    ") with respect to input ", checked[k], " (", describe(x), ") at output element ", e,
                    ", input element ", j, ": analytic ", a, ", numeric ", numeric, " (atol ", options.atol,
                    ", rtol ", options.rtol, ")");
        }
      }
    }
  }
  return true;
}

bool gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn, const std::vector<Tensor>& inputs,
               GradcheckOptions options) {
  return gradcheck([&fn](const std::vector<Tensor>& in) { return std::vector<Tensor>{fn(in)}; }, inputs, options);
}

}  // namespace loom
