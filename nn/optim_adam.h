#pragma once
// nn::Adam and nn::AdamW (torch.optim.Adam / AdamW, torch 1.13 formulas, amsgrad off). Per parameter p with
// gradient g at update t (its own step counter, from 1):
//   Adam:  g = g + weight_decay * p                    (L2 penalty folded into the gradient)
//   AdamW: p = p * (1 - lr * weight_decay)             (decoupled decay, before the moments)
//   m = beta1 * m + (1 - beta1) * g                    (exp_avg)
//   v = beta2 * v + (1 - beta2) * g * g                (exp_avg_sq)
//   denom = sqrt(v) / sqrt(1 - beta2^t) + eps
//   p = p - lr / (1 - beta1^t) * m / denom
#include <utility>

#include "loom/nn/optim.h"

namespace loom::nn {

struct AdamOptions {
  double lr = 1e-3;
  std::pair<double, double> betas = {0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0.0;  // Adam's default; AdamW's is 1e-2
};

// The shared moment update; `decoupled` picks AdamW's weight decay.
class AdamBase : public Optimizer {
 public:
  // The options in force (lr as set by set_lr or a schedule).
  AdamOptions options() const {
    AdamOptions o = options_;
    o.lr = lr();
    return o;
  }

 protected:
  AdamBase(NamedParameters params, const AdamOptions& options, bool decoupled);
  void update(Tensor& param, const Tensor& grad, ParamState& state) override;
  std::vector<std::string> buffer_names(const std::map<std::string, double>& h) const override;
  std::map<std::string, double> hyperparameters() const override;
  std::string check_hyperparameters(const std::map<std::string, double>& h) const override;
  void set_hyperparameters(const std::map<std::string, double>& h) override;

 private:
  AdamOptions options_;
  bool decoupled_;
};

class Adam : public AdamBase {
 public:
  explicit Adam(NamedParameters params, const AdamOptions& options = {});
  Adam(NamedParameters params, double lr, std::pair<double, double> betas = {0.9, 0.999}, double eps = 1e-8,
       double weight_decay = 0.0);
};

class AdamW : public AdamBase {
 public:
  // AdamOptions with weight_decay = 1e-2, AdamW's default.
  static AdamOptions default_options();
  explicit AdamW(NamedParameters params, const AdamOptions& options = default_options());
  AdamW(NamedParameters params, double lr, std::pair<double, double> betas = {0.9, 0.999}, double eps = 1e-8,
        double weight_decay = 1e-2);
};

}  // namespace loom::nn
