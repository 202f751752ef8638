#pragma once
// Helpers shared by the derivative rules in ops/*.cpp (internal to ops/).
#include "loom/core/tensor.h"

namespace loom::detail {

// The gradient of a broadcast input: g summed over the dims broadcasting added or stretched, viewed as
// `shape`, converted to `dtype`. Undefined when dtype is not floating (integer inputs get no gradient).
Tensor reduce_grad(const Tensor& g, const Shape& shape, DType dtype);

}  // namespace loom::detail
