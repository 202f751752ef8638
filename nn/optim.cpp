// nn::Optimizer: the update loop, gradient checks and state export/import shared by every optimizer.
#include "loom/nn/optim.h"

#include <cmath>
#include <set>

#include "loom/autograd/grad_mode.h"

namespace loom::nn {

Optimizer::Optimizer(NamedParameters params, double lr, std::string type)
    : params_(std::move(params)), lr_(lr), type_(std::move(type)) {
  LOOM_CHECK(!params_.empty(), type_, ": got an empty parameter list");
  LOOM_CHECK(std::isfinite(lr) && lr >= 0, type_, ": invalid learning rate ", lr);
  std::set<std::string> names;
  std::set<const TensorImpl*> tensors;
  for (const auto& [name, p] : params_) {
    LOOM_CHECK(!name.empty(), type_, ": a parameter has an empty name");
    LOOM_CHECK(p.defined(), type_, ": parameter '", name, "' is undefined");
    LOOM_CHECK(is_floating(p.dtype()), type_, ": parameter '", name, "' must be floating point, got ", describe(p));
    LOOM_CHECK(names.insert(name).second, type_, ": parameter name '", name, "' appears twice");
    LOOM_CHECK(tensors.insert(p.unsafe_impl()).second, type_, ": parameter '", name,
               "' is a tensor already in the list under another name (it would be updated twice)");
  }
  state_.resize(params_.size());
}

void Optimizer::set_lr(double lr) {
  LOOM_CHECK(std::isfinite(lr) && lr >= 0, type_, ".set_lr: invalid learning rate ", lr);
  lr_ = lr;
}

void Optimizer::step() {
  NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& [name, param] = params_[i];
    Tensor grad = param.grad();
    if (!grad.defined()) continue;
    LOOM_CHECK(grad.shape() == param.shape() && grad.dtype() == param.dtype() && grad.device() == param.device(),
               type_, ".step: gradient ", describe(grad), " of parameter '", name, "' does not match it, ",
               describe(param));
    ParamState& s = state_[i];
    // A module moved or converted after earlier steps: its state follows it.
    for (Tensor& b : s.buffers) {
      if (b.device() != param.device()) b = b.to(param.device());
      if (b.dtype() != param.dtype()) b = b.to(param.dtype());
    }
    ++s.step;
    update(param, grad, s);
  }
}

void Optimizer::zero_grad() {
  for (const auto& [name, p] : params_) {
    if (p.grad().defined()) p.set_grad(Tensor());
  }
}

int64_t Optimizer::step_count(const std::string& name) const {
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_[i].first == name) return state_[i].step;
  }
  LOOM_FAIL(type_, ".step_count: no parameter named '", name, "'");
}

OptimizerState Optimizer::state_dict() const {
  OptimizerState out;
  out.type = type_;
  out.hyperparameters = hyperparameters();
  out.hyperparameters["lr"] = lr_;
  std::vector<std::string> names = buffer_names(out.hyperparameters);
  for (size_t i = 0; i < params_.size(); ++i) {
    const ParamState& s = state_[i];
    if (s.step == 0) continue;
    const std::string& pname = params_[i].first;
    out.steps[pname] = s.step;
    for (size_t b = 0; b < names.size() && b < s.buffers.size(); ++b) out.tensors[pname + "." + names[b]] = s.buffers[b];
  }
  return out;
}

std::vector<std::string> Optimizer::check_state_dict(const OptimizerState& state) const {
  std::vector<std::string> problems;
  if (state.type != type_) {
    problems.push_back("the state is for optimizer '" + state.type + "', not " + type_);
    return problems;
  }
  // Hyperparameters: exactly this optimizer's names, with valid values.
  std::map<std::string, double> mine = hyperparameters();
  mine["lr"] = lr_;
  for (const auto& [key, value] : mine) {
    if (!state.hyperparameters.count(key)) problems.push_back("missing hyperparameter '" + key + "'");
  }
  for (const auto& [key, value] : state.hyperparameters) {
    if (!mine.count(key)) problems.push_back("unexpected hyperparameter '" + key + "'");
  }
  if (!problems.empty()) return problems;
  double lr = state.hyperparameters.at("lr");
  if (!std::isfinite(lr) || lr < 0) problems.push_back("invalid learning rate " + std::to_string(lr));
  std::string bad = check_hyperparameters(state.hyperparameters);
  if (!bad.empty()) problems.push_back(bad);
  if (!problems.empty()) return problems;

  // Steps and buffers: only known parameters; every stepped parameter has all its buffers, of its shape.
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, p] : params_) by_name[name] = &p;
  std::vector<std::string> names = buffer_names(state.hyperparameters);
  std::set<std::string> expected;
  for (const auto& [pname, step] : state.steps) {
    auto it = by_name.find(pname);
    if (it == by_name.end()) {
      problems.push_back("state for unknown parameter '" + pname + "'");
      continue;
    }
    if (step < 1) problems.push_back("parameter '" + pname + "' has step count " + std::to_string(step));
    const Tensor& p = *it->second;
    for (const std::string& b : names) {
      std::string key = pname + "." + b;
      expected.insert(key);
      auto t = state.tensors.find(key);
      if (t == state.tensors.end() || !t->second.defined()) {
        problems.push_back("missing state tensor '" + key + "'");
      } else if (t->second.shape() != p.shape() || t->second.dtype() != p.dtype()) {
        problems.push_back("state tensor '" + key + "' is " + dtype_name(t->second.dtype()) +
                           shape_str(t->second.shape()) + " but parameter '" + pname + "' is " +
                           dtype_name(p.dtype()) + shape_str(p.shape()));
      }
    }
  }
  for (const auto& [key, t] : state.tensors) {
    if (!expected.count(key)) problems.push_back("unexpected state tensor '" + key + "'");
  }
  return problems;
}

void Optimizer::load_state_dict(const OptimizerState& state) {
  std::vector<std::string> problems = check_state_dict(state);
  if (!problems.empty()) {
    std::string msg = type_ + ".load_state_dict: nothing was loaded:";
    for (const std::string& p : problems) msg += "\n  " + p;
    LOOM_FAIL(msg);
  }
  NoGradGuard no_grad;
  std::vector<std::string> names = buffer_names(state.hyperparameters);
  std::vector<ParamState> fresh(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [pname, p] = params_[i];
    auto it = state.steps.find(pname);
    if (it == state.steps.end()) continue;
    fresh[i].step = it->second;
    for (const std::string& b : names) {
      // A private copy on the parameter's device: the optimizer then owns its state outright.
      Tensor buffer = Tensor::empty(p.shape(), p.options());
      buffer.copy_(state.tensors.at(pname + "." + b));
      fresh[i].buffers.push_back(buffer);
    }
  }
  set_hyperparameters(state.hyperparameters);
  lr_ = state.hyperparameters.at("lr");
  state_ = std::move(fresh);
}

}  // namespace loom::nn
