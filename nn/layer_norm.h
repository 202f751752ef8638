#pragma once
// nn::LayerNorm (torch.nn.LayerNorm): normalises over the trailing `normalized_shape` dims, then scales by
// weight (init 1) and shifts by bias (init 0) when elementwise_affine.
#include "loom/nn/module.h"

namespace loom::nn {

class LayerNorm : public Module {
 public:
  LayerNorm(Shape normalized_shape, double eps = 1e-5, bool elementwise_affine = true, TensorOptions options = {});
  // Shorthand for the usual case of one normalised dim.
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool elementwise_affine = true, TensorOptions options = {})
      : LayerNorm(Shape{dim}, eps, elementwise_affine, options) {}

  Tensor forward(const Tensor& x) override;
  void reset_parameters();

  const Shape& normalized_shape() const { return normalized_shape_; }
  double eps() const { return eps_; }

  Tensor weight;  // undefined without elementwise_affine
  Tensor bias;

 private:
  Shape normalized_shape_;
  double eps_;
};

}  // namespace loom::nn
