#pragma once
// backward(): replays the tape in reverse from some outputs, accumulating into leaves' grads.
#include <memory>
#include <vector>

#include "loom/core/tensor.h"

namespace loom::autograd {

// Backpropagates grad_outputs[i] from outputs[i] (an undefined grad means ones, allowed only for one-element
// outputs, as in PyTorch). Leaves accumulate (+=) into their grad. Unless retain_graph, every entry replayed is
// freed as soon as it has run, and replaying it again is an error.
void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs = {},
              bool retain_graph = false);

struct Node;

// Where a backward can start without the tensor it starts from: the entry that produced the tensor, which of
// its outputs the tensor is, and what it looked like. Holding a GradRoot keeps the graph but not the tensor's
// data, so a caller that has read an output (a reversible block's rerun, which subtracts it from the stream)
// can free it before backpropagating through the entry that made it.
struct GradRoot {
  std::shared_ptr<Node> node;
  int output_nr = 0;
  Shape shape;
  DType dtype = DType::Float32;
  Device device;
};

// t's root; t must have been computed by a recorded op (not a leaf).
GradRoot grad_root(const Tensor& t);

// Backpropagates `grad` (shaped like the root's tensor) from `root`, freeing the graph as it goes.
void backward(const GradRoot& root, const Tensor& grad);

// True while a tape entry's backward runs in a pass that frees the graph (retain_graph = false, the usual
// case): the entry runs once, so it may consume what it saved (take it out of its SavedTensor, overwrite it in
// place when nothing else holds it) instead of copying. False under retain_graph and outside backward().
bool backward_frees_graph();

// Whether t is the only handle on all of its storage (one reference to t, one to the storage, contiguous from
// offset 0 over the whole storage): then nothing can observe an in-place update of t.
bool exclusively_owned(const Tensor& t);

}  // namespace loom::autograd
