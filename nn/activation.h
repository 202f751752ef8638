#pragma once
// Parameter-free activation modules, for Sequential (torch.nn.GELU, ReLU, Tanh).
#include <string>

#include "loom/nn/module.h"

namespace loom::nn {

class GELU : public Module {
 public:
  // "none" (exact erf form, PyTorch's default) or "tanh".
  explicit GELU(std::string approximate = "none");
  Tensor forward(const Tensor& x) override;

 private:
  std::string approximate_;
};

class ReLU : public Module {
 public:
  ReLU() : Module("ReLU") {}
  Tensor forward(const Tensor& x) override;
};

class Tanh : public Module {
 public:
  Tanh() : Module("Tanh") {}
  Tensor forward(const Tensor& x) override;
};

}  // namespace loom::nn
