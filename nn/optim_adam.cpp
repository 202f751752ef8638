// nn::Adam and nn::AdamW, composed of in-place ops: roughly a dozen passes over a parameter's memory per update.
// A fused backend kernel (one pass reading p, g, m, v and writing p, m, v) would remove most of them.
#include "loom/nn/optim_adam.h"

#include <cmath>

#include "loom/ops/elementwise.h"
#include "loom/ops/factory.h"

namespace loom::nn {
namespace {

AdamOptions with(double lr, std::pair<double, double> betas, double eps, double weight_decay) {
  AdamOptions o;
  o.lr = lr;
  o.betas = betas;
  o.eps = eps;
  o.weight_decay = weight_decay;
  return o;
}

std::string check(const char* type, const AdamOptions& o) {
  std::string t = type;
  if (!(o.eps >= 0)) return t + ": invalid epsilon value " + std::to_string(o.eps);
  if (!(o.betas.first >= 0 && o.betas.first < 1))
    return t + ": invalid beta parameter at index 0: " + std::to_string(o.betas.first);
  if (!(o.betas.second >= 0 && o.betas.second < 1))
    return t + ": invalid beta parameter at index 1: " + std::to_string(o.betas.second);
  if (!(o.weight_decay >= 0)) return t + ": invalid weight_decay value " + std::to_string(o.weight_decay);
  return "";
}

AdamOptions from_map(const std::map<std::string, double>& h) {
  return with(h.at("lr"), {h.at("beta1"), h.at("beta2")}, h.at("eps"), h.at("weight_decay"));
}

}  // namespace

AdamBase::AdamBase(NamedParameters params, const AdamOptions& options, bool decoupled)
    : Optimizer(std::move(params), options.lr, decoupled ? "AdamW" : "Adam"), options_(options),
      decoupled_(decoupled) {
  std::string bad = check(type().c_str(), options_);
  LOOM_CHECK(bad.empty(), bad);
}

void AdamBase::update(Tensor& param, const Tensor& grad, ParamState& state) {
  const auto [beta1, beta2] = options_.betas;
  const double wd = options_.weight_decay, lr = this->lr();
  if (state.buffers.empty()) state.buffers = {zeros_like(param), zeros_like(param)};
  Tensor& exp_avg = state.buffers[0];
  Tensor& exp_avg_sq = state.buffers[1];

  Tensor g = grad;
  if (wd != 0) {
    if (decoupled_) {
      mul_(param, 1 - lr * wd);
    } else {
      g = add(grad, mul(param, wd));
    }
  }
  // m = beta1 * m + (1 - beta1) * g. Each temporary dies at the end of its block, so the next one reuses its
  // block from the allocator's cache.
  {
    mul_(exp_avg, beta1);
    Tensor scaled = mul(g, 1 - beta1);
    add_(exp_avg, scaled);
  }
  // v = beta2 * v + (1 - beta2) * g^2
  {
    mul_(exp_avg_sq, beta2);
    Tensor sq = mul(g, g);
    mul_(sq, 1 - beta2);
    add_(exp_avg_sq, sq);
  }
  const double t = static_cast<double>(state.step);
  const double bias_correction1 = 1 - std::pow(beta1, t);
  const double bias_correction2_sqrt = std::sqrt(1 - std::pow(beta2, t));
  const double step_size = lr / bias_correction1;
  Tensor denom = sqrt(exp_avg_sq);
  div_(denom, scalar_tensor(bias_correction2_sqrt, denom.options()));
  add_(denom, options_.eps);
  // p -= step_size * m / denom
  Tensor quotient = div(exp_avg, denom);
  mul_(quotient, -step_size);
  add_(param, quotient);
}

std::vector<std::string> AdamBase::buffer_names(const std::map<std::string, double>&) const {
  return {"exp_avg", "exp_avg_sq"};
}

std::map<std::string, double> AdamBase::hyperparameters() const {
  return {{"beta1", options_.betas.first},
          {"beta2", options_.betas.second},
          {"eps", options_.eps},
          {"weight_decay", options_.weight_decay}};
}

std::string AdamBase::check_hyperparameters(const std::map<std::string, double>& h) const {
  return check(type().c_str(), from_map(h));
}

void AdamBase::set_hyperparameters(const std::map<std::string, double>& h) { options_ = from_map(h); }

Adam::Adam(NamedParameters params, const AdamOptions& options) : AdamBase(std::move(params), options, false) {}

Adam::Adam(NamedParameters params, double lr, std::pair<double, double> betas, double eps, double weight_decay)
    : AdamBase(std::move(params), with(lr, betas, eps, weight_decay), false) {}

AdamOptions AdamW::default_options() { return with(1e-3, {0.9, 0.999}, 1e-8, 1e-2); }

AdamW::AdamW(NamedParameters params, const AdamOptions& options) : AdamBase(std::move(params), options, true) {}

AdamW::AdamW(NamedParameters params, double lr, std::pair<double, double> betas, double eps, double weight_decay)
    : AdamBase(std::move(params), with(lr, betas, eps, weight_decay), true) {}

}  // namespace loom::nn
