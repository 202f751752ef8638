#pragma once
// The tape's entries. Every op that sees an input requiring grad records one Node: the op's name, where each
// input's gradient goes (an Edge), and a backward closure that maps output grads to input grads. Nodes are
// owned by the tensors they produced and by the Nodes that consume those tensors, so a graph nobody can reach
// any more (an evaluation pass run with grad on, say) frees itself. Each Node carries a sequence number from the
// tape; backward() replays the reachable Nodes in decreasing sequence order, which is the reverse of the order
// they were recorded in (see autograd/engine.cpp).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "loom/core/tensor.h"

namespace loom::autograd {

struct Node;
struct TapeCounters;

// Autograd state of one tensor. A leaf (requires_grad set by the user) has no grad_fn and accumulates into
// `grad`; a tensor computed from one has grad_fn = the Node that made it, output_nr = which output it was.
struct AutogradMeta {
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;
  int output_nr = 0;
};

// Where one input's gradient goes: into output slot `output_nr` of the Node that produced the input, or into
// a leaf's AutogradMeta. Both empty: the input needs no gradient.
struct Edge {
  std::shared_ptr<Node> node;
  int output_nr = 0;
  std::shared_ptr<AutogradMeta> leaf;
  bool defined() const { return node != nullptr || leaf != nullptr; }
};

// Maps the gradients of the outputs (one per output, never undefined: an output that received nothing gets
// zeros) to the gradients of the inputs (one per input; undefined where an input needs none). The engine hands
// the output gradients over: a backward may move them out of the vector (and, when it holds the only
// reference, update them in place) instead of keeping the engine's copies alive for as long as it runs.
using BackwardFn = std::function<std::vector<Tensor>(std::vector<Tensor>& grad_outputs)>;

// What an output looked like, to make zeros for a slot that received no gradient.
struct OutputInfo {
  Shape shape;
  DType dtype;
  Device device;
};

struct InputInfo {
  Shape shape;
  DType dtype;
  Device device;
};

struct Node {
  std::string name;
  uint64_t sequence_nr = 0;
  BackwardFn backward;
  std::vector<Edge> next;            // one per input
  std::vector<InputInfo> inputs;     // one per input, to check the shapes backward returns
  std::vector<OutputInfo> outputs;   // one per output
  std::vector<Tensor> grad_buffer;   // accumulated output grads during a backward pass
  bool freed = false;                // backward already ran and released the closure (retain_graph=false)
  uint64_t visit_epoch = 0;          // last backward pass that enqueued this node
  std::shared_ptr<TapeCounters> tape;

  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  ~Node();
  // Drops the closure (and with it the saved tensors) and the edges: the memory goes back to the allocator.
  void release();
};

// Autograd state of t, created on first use (never null on return).
AutogradMeta& meta(const Tensor& t);
// Autograd state of t, or null when t has none.
AutogradMeta* meta_if(const Tensor& t);

}  // namespace loom::autograd
