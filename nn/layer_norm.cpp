// nn::LayerNorm.
#include "loom/nn/layer_norm.h"

#include "loom/nn/init.h"
#include "loom/ops/factory.h"
#include "loom/ops/nn_ops.h"

namespace loom::nn {

LayerNorm::LayerNorm(Shape normalized_shape, double eps, bool elementwise_affine, TensorOptions options)
    : Module("LayerNorm"), normalized_shape_(normalized_shape), eps_(eps) {
  LOOM_CHECK(!normalized_shape.empty(), "LayerNorm: normalized_shape must name at least one dim");
  LOOM_CHECK(eps >= 0, "LayerNorm: eps must be non-negative, got ", eps);
  if (elementwise_affine) {
    weight = register_parameter("weight", empty(normalized_shape, options));
    bias = register_parameter("bias", empty(normalized_shape, options));
  }
  reset_parameters();
}

void LayerNorm::reset_parameters() {
  if (weight.defined()) init::ones_(weight);
  if (bias.defined()) init::zeros_(bias);
}

Tensor LayerNorm::forward(const Tensor& x) {
  LOOM_CHECK(x.defined(), "LayerNorm: undefined input");
  return layer_norm(x, normalized_shape_, weight, bias, eps_);
}

}  // namespace loom::nn
