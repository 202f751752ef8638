// nn::SGD with momentum, dampening, Nesterov and L2 weight decay.
#include "loom/nn/optim_sgd.h"

#include "loom/ops/elementwise.h"

namespace loom::nn {
namespace {

std::map<std::string, double> to_map(const SGDOptions& o) {
  return {{"lr", o.lr},
          {"momentum", o.momentum},
          {"dampening", o.dampening},
          {"weight_decay", o.weight_decay},
          {"nesterov", o.nesterov ? 1.0 : 0.0}};
}

SGDOptions from_map(const std::map<std::string, double>& h) {
  SGDOptions o;
  o.lr = h.at("lr");
  o.momentum = h.at("momentum");
  o.dampening = h.at("dampening");
  o.weight_decay = h.at("weight_decay");
  o.nesterov = h.at("nesterov") != 0.0;
  return o;
}

std::string check(const SGDOptions& o) {
  if (!(o.momentum >= 0)) return "SGD: invalid momentum value " + std::to_string(o.momentum);
  if (!(o.weight_decay >= 0)) return "SGD: invalid weight_decay value " + std::to_string(o.weight_decay);
  if (o.nesterov && (o.momentum <= 0 || o.dampening != 0))
    return "SGD: Nesterov momentum requires a momentum and zero dampening";
  return "";
}

SGDOptions make(double lr, double momentum, double weight_decay, bool nesterov) {
  SGDOptions o;
  o.lr = lr;
  o.momentum = momentum;
  o.weight_decay = weight_decay;
  o.nesterov = nesterov;
  return o;
}

}  // namespace

SGD::SGD(NamedParameters params, const SGDOptions& options)
    : Optimizer(std::move(params), options.lr, "SGD"), options_(options) {
  std::string bad = check(options_);
  LOOM_CHECK(bad.empty(), bad);
}

SGD::SGD(NamedParameters params, double lr, double momentum, double weight_decay, bool nesterov)
    : SGD(std::move(params), make(lr, momentum, weight_decay, nesterov)) {}

void SGD::update(Tensor& param, const Tensor& grad, ParamState& state) {
  const SGDOptions& o = options_;
  Tensor d = grad;
  if (o.weight_decay != 0) d = add(grad, mul(param, o.weight_decay));
  if (o.momentum != 0) {
    if (state.buffers.empty()) {
      // The first buffer is d itself (a copy when d is still the caller's grad).
      state.buffers.push_back(d.is_same(grad) ? grad.clone() : d);
    } else {
      Tensor& buf = state.buffers[0];
      mul_(buf, o.momentum);
      add_(buf, o.dampening != 0 ? mul(d, 1 - o.dampening) : d);
    }
    const Tensor& buf = state.buffers[0];
    d = o.nesterov ? add(d, mul(buf, o.momentum)) : buf;
  }
  add_(param, mul(d, -lr()));
}

std::vector<std::string> SGD::buffer_names(const std::map<std::string, double>& h) const {
  if (h.at("momentum") != 0) return {"momentum_buffer"};
  return {};
}

std::map<std::string, double> SGD::hyperparameters() const {
  std::map<std::string, double> h = to_map(options_);
  h.erase("lr");
  return h;
}

std::string SGD::check_hyperparameters(const std::map<std::string, double>& h) const { return check(from_map(h)); }

void SGD::set_hyperparameters(const std::map<std::string, double>& h) {
  options_ = from_map(h);
}

}  // namespace loom::nn
