// Activation modules.
#include "loom/nn/activation.h"

#include <utility>

#include "loom/ops/elementwise.h"

namespace loom::nn {

GELU::GELU(std::string approximate) : Module("GELU"), approximate_(std::move(approximate)) {
  LOOM_CHECK(approximate_ == "none" || approximate_ == "tanh", "GELU: approximate must be 'none' or 'tanh', got '",
             approximate_, "'");
}

Tensor GELU::forward(const Tensor& x) { return gelu(x, approximate_); }
Tensor ReLU::forward(const Tensor& x) { return relu(x); }
Tensor Tanh::forward(const Tensor& x) { return tanh(x); }

}  // namespace loom::nn
