// nn::Linear.
#include "loom/nn/linear.h"

#include <cmath>

#include "loom/nn/init.h"
#include "loom/ops/factory.h"
#include "loom/ops/linalg.h"

namespace loom::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool with_bias, TensorOptions options)
    : Module("Linear"), in_features_(in_features), out_features_(out_features) {
  LOOM_CHECK(in_features >= 0 && out_features >= 0, "Linear: features must be non-negative, got in_features ",
             in_features, " and out_features ", out_features);
  weight = register_parameter("weight", empty({out_features, in_features}, options));
  if (with_bias) bias = register_parameter("bias", empty({out_features}, options));
  reset_parameters();
}

void Linear::reset_parameters() {
  // With a = sqrt(5) the kaiming bound is sqrt(2 / 6) * sqrt(3 / fan_in) = 1 / sqrt(fan_in).
  if (in_features_ > 0) {
    init::kaiming_uniform_(weight, std::sqrt(5.0));
  } else {
    init::zeros_(weight);
  }
  if (bias.defined()) {
    double bound = in_features_ > 0 ? 1.0 / std::sqrt(static_cast<double>(in_features_)) : 0.0;
    init::uniform_(bias, -bound, bound);
  }
}

Tensor Linear::forward(const Tensor& x) {
  LOOM_CHECK(x.defined(), "Linear: undefined input");
  LOOM_CHECK(x.dim() >= 1 && x.size(-1) == in_features_, "Linear(", in_features_, ", ", out_features_,
             "): input shape ", x.shape(), " does not end in ", in_features_);
  return linear(x, weight, bias);
}

}  // namespace loom::nn
