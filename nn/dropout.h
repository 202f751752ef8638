#pragma once
// nn::Dropout (torch.nn.Dropout): inverted dropout with probability p while the module is training, the
// identity in eval mode. Masks come from the default generator (manual_seed reproduces them).
#include "loom/nn/module.h"

namespace loom::nn {

class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5);
  Tensor forward(const Tensor& x) override;
  double p() const { return p_; }

 private:
  double p_;
};

}  // namespace loom::nn
