#include "loom/ops/grad_helpers.h"

#include "loom/ops/reduce.h"

namespace loom::detail {

Tensor reduce_grad(const Tensor& g, const Shape& shape, DType dtype) {
  if (!is_floating(dtype)) return Tensor();
  Tensor r = g.shape() == shape ? g : sum_to_size(g, shape);
  return r.dtype() == dtype ? r : r.to(dtype);
}

}  // namespace loom::detail
