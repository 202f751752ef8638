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

// True while a tape entry's backward runs in a pass that frees the graph (retain_graph = false, the usual
// case): the entry runs once, so it may consume what it saved (take it out of its SavedTensor, overwrite it in
// place when nothing else holds it) instead of copying. False under retain_graph and outside backward().
bool backward_frees_graph();

// Whether t is the only handle on all of its storage (one reference to t, one to the storage, contiguous from
// offset 0 over the whole storage): then nothing can observe an in-place update of t.
bool exclusively_owned(const Tensor& t);

}  // namespace loom::autograd
