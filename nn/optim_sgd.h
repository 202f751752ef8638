#pragma once
// nn::SGD (torch.optim.SGD, torch 1.13 formulas), per parameter p with gradient g:
//   d = g + weight_decay * p
//   with momentum: buf = d on the first update, else buf = momentum * buf + (1 - dampening) * d;
//                  d = nesterov ? d + momentum * buf : buf
//   p -= lr * d
#include "loom/nn/optim.h"

namespace loom::nn {

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;  // needs momentum > 0 and dampening == 0
};

class SGD : public Optimizer {
 public:
  SGD(NamedParameters params, const SGDOptions& options);
  SGD(NamedParameters params, double lr, double momentum = 0.0, double weight_decay = 0.0, bool nesterov = false);

  // The options in force (lr as set by set_lr or a schedule).
  SGDOptions options() const {
    SGDOptions o = options_;
    o.lr = lr();
    return o;
  }

 protected:
  void update(Tensor& param, const Tensor& grad, ParamState& state) override;
  std::vector<std::string> buffer_names(const std::map<std::string, double>& h) const override;
  std::map<std::string, double> hyperparameters() const override;
  std::string check_hyperparameters(const std::map<std::string, double>& h) const override;
  void set_hyperparameters(const std::map<std::string, double>& h) override;

 private:
  SGDOptions options_;
};

}  // namespace loom::nn
