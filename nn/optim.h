#pragma once
// nn::Optimizer: the base of SGD, Adam and AdamW (torch.optim.Optimizer with one parameter group). It holds
// (name, parameter) pairs (usually module.named_parameters()), the learning rate, and per-parameter state: a
// step counter and the optimizer's buffers (momentum_buffer, exp_avg, ...), created lazily on a parameter's
// first update as PyTorch does. step() updates, under NoGradGuard, every parameter that has a gradient.
//
// State export/import is by parameter name, so a checkpoint survives re-creating the model; checkpoint_io.h
// stores it in safetensors.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "loom/core/tensor.h"

namespace loom::nn {

// Everything an optimizer needs to resume (torch.optim.Optimizer.state_dict()).
struct OptimizerState {
  std::string type;                               // "SGD", "Adam", "AdamW"
  std::map<std::string, double> hyperparameters;  // lr, momentum, beta1, ... (booleans as 0 / 1)
  std::map<std::string, int64_t> steps;           // per parameter name; parameters never updated are absent
  std::map<std::string, Tensor> tensors;          // "<param>.<buffer>" for every parameter in `steps`
};

class Optimizer {
 public:
  using NamedParameters = std::vector<std::pair<std::string, Tensor>>;

  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // Updates every parameter whose grad is defined (the others are skipped, their step counters unchanged).
  void step();
  // Drops the parameters' gradients (set_to_none, PyTorch's default since 2.0).
  void zero_grad();

  double lr() const { return lr_; }
  void set_lr(double lr);
  const std::string& type() const { return type_; }
  const NamedParameters& named_parameters() const { return params_; }
  // How many updates parameter `name` has had (0 before its first).
  int64_t step_count(const std::string& name) const;

  OptimizerState state_dict() const;
  // Problems that would stop load_state_dict (wrong type, bad hyperparameters, unknown or missing parameter
  // names, buffers of the wrong shape or dtype), one line each naming the parameter; empty when it would load.
  std::vector<std::string> check_state_dict(const OptimizerState& state) const;
  // Restores hyperparameters, step counters and buffers (copied onto each parameter's device) after
  // check_state_dict finds nothing wrong; otherwise throws a loom::Error listing every problem, changing nothing.
  void load_state_dict(const OptimizerState& state);

 protected:
  struct ParamState {
    int64_t step = 0;
    std::vector<Tensor> buffers;  // in buffer_names() order; empty until the first update
  };

  Optimizer(NamedParameters params, double lr, std::string type);

  // One update of `param` with `grad`, run under NoGradGuard. state.step has already been incremented;
  // state.buffers is empty on the first update (update creates them, in buffer_names() order) and afterwards
  // on param's device and dtype.
  virtual void update(Tensor& param, const Tensor& grad, ParamState& state) = 0;
  // The buffers a parameter's state holds under hyperparameters h (SGD has none without momentum).
  virtual std::vector<std::string> buffer_names(const std::map<std::string, double>& h) const = 0;
  // Hyperparameters besides lr, by name; check_hyperparameters sees lr too and returns a problem or "".
  virtual std::map<std::string, double> hyperparameters() const = 0;
  virtual std::string check_hyperparameters(const std::map<std::string, double>& h) const = 0;
  virtual void set_hyperparameters(const std::map<std::string, double>& h) = 0;

 private:
  NamedParameters params_;
  double lr_;
  std::string type_;
  std::vector<ParamState> state_;
};

}  // namespace loom::nn
