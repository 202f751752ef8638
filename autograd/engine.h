#pragma once
// backward(): replays the tape in reverse from some outputs, accumulating into leaves' grads.
#include <vector>

#include "loom/core/tensor.h"

namespace loom::autograd {

// Backpropagates grad_outputs[i] from outputs[i] (an undefined grad means ones, allowed only for one-element
// outputs, as in PyTorch). Leaves accumulate (+=) into their grad. Unless retain_graph, every entry replayed is
// freed as soon as it has run, and replaying it again is an error.
void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs = {},
              bool retain_graph = false);

}  // namespace loom::autograd
