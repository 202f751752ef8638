// nn::Adam and nn::AdamW: hyperparameters and state here, the arithmetic in the backend's adam_step kernel.
#include "loom/nn/optim_adam.h"

#include <cmath>

#include "loom/ops/backend.h"
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
  if (state.buffers.empty()) state.buffers = {zeros_like(param), zeros_like(param)};
  LOOM_CHECK(param.is_contiguous(), type(), ": parameters must be contiguous, got ", describe(param));
  LOOM_CHECK(grad.shape() == param.shape() && grad.dtype() == param.dtype() && grad.device() == param.device(),
             type(), ": gradient ", describe(grad), " does not match parameter ", describe(param));
  const auto [beta1, beta2] = options_.betas;
  const double lr = this->lr(), t = static_cast<double>(state.step);
  Backend::AdamStep step{lr,
                         beta1,
                         beta2,
                         options_.eps,
                         options_.weight_decay,
                         decoupled_,
                         lr / (1 - std::pow(beta1, t)),
                         std::sqrt(1 - std::pow(beta2, t))};
  // One fused pass where the backend has it (the CPU does); others compose ops.
  backend_for(param.device()).adam_step(param, grad, state.buffers[0], state.buffers[1], step);
  param.storage()->bump_version();
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
