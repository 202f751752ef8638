// nn::Dropout.
#include "loom/nn/dropout.h"

#include "loom/ops/nn_ops.h"

namespace loom::nn {

Dropout::Dropout(double p) : Module("Dropout"), p_(p) {
  LOOM_CHECK(p >= 0 && p <= 1, "Dropout: probability has to be between 0 and 1, got ", p);
}

Tensor Dropout::forward(const Tensor& x) { return dropout(x, p_, is_training()); }

}  // namespace loom::nn
