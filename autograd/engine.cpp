// The backward pass: a loop over the reachable tape entries in decreasing sequence order.
//
// Every entry is recorded after the entries that produced its inputs, so when entries are replayed from the
// highest sequence number down, each one runs only after all of its consumers have handed it their gradients.
// A max-heap keyed on the sequence number holds the entries reached so far; no recursion anywhere, so a graph
// thousands of entries deep is as safe as a shallow one.
#include "loom/autograd/engine.h"

#include <algorithm>
#include <atomic>
#include <queue>

#include "loom/autograd/grad_mode.h"
#include "loom/autograd/node.h"
#include "loom/autograd/profiler.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/factory.h"

namespace loom::autograd {
namespace {

std::atomic<uint64_t> next_epoch{1};

// Set while an entry's backward runs; restored afterwards, since an entry may run a nested backward (reversible
// stacks and checkpoints rerun their blocks) whose own setting must not leak into the rest of its closure.
thread_local bool frees_graph = false;

class FreesGraphScope {
 public:
  explicit FreesGraphScope(bool value) : previous_(frees_graph) { frees_graph = value; }
  ~FreesGraphScope() { frees_graph = previous_; }
  FreesGraphScope(const FreesGraphScope&) = delete;
  FreesGraphScope& operator=(const FreesGraphScope&) = delete;

 private:
  bool previous_;
};

struct LaterFirst {
  bool operator()(const std::shared_ptr<Node>& a, const std::shared_ptr<Node>& b) const {
    return a->sequence_nr < b->sequence_nr;
  }
};
using ReadyQueue = std::priority_queue<std::shared_ptr<Node>, std::vector<std::shared_ptr<Node>>, LaterFirst>;

// A leaf may keep an exclusively owned gradient as its grad and later accumulate into it in place; anything
// else (the caller's tensor, a broadcast view, a tensor a backward closure also returned elsewhere) is copied.
void accumulate_into_leaf(AutogradMeta& leaf, const Tensor& g) {
  if (!leaf.grad.defined()) {
    leaf.grad = exclusively_owned(g) ? g : g.clone();
    return;
  }
  LOOM_CHECK(leaf.grad.shape() == g.shape() && leaf.grad.dtype() == g.dtype() && leaf.grad.device() == g.device(),
             "backward: the existing grad ", describe(leaf.grad), " of a leaf cannot accumulate a gradient ",
             describe(g), " (was grad replaced by a tensor of another shape?)");
  add_(leaf.grad, g);
}

void check_not_freed(const Node& node) {
  LOOM_CHECK(!node.freed, "backward: the tape entry '", node.name,
             "' was already replayed and freed by an earlier backward(); call backward(grad, /*retain_graph=*/true) "
             "the first time to replay a graph twice");
}

// Stores g as the grad of output slot `slot` of `node`, adding to what is there (in place when the buffer is
// the engine's alone, so a tensor consumed twice costs no third gradient-sized buffer).
void accumulate_into_node(Node& node, int slot, const Tensor& g) {
  Tensor& buffer = node.grad_buffer[static_cast<size_t>(slot)];
  if (!buffer.defined())
    buffer = g;
  else if (exclusively_owned(buffer))
    add_(buffer, g);
  else
    buffer = add(buffer, g);
}

void check_grad_matches(const Node& node, size_t i, const Tensor& g) {
  const InputInfo& in = node.inputs[i];
  LOOM_CHECK(g.shape() == in.shape && g.dtype() == in.dtype && g.device() == in.device, node.name,
             " backward: the gradient for input ", i, " is ", describe(g), " but the input was ",
             dtype_name(in.dtype), shape_str(in.shape), " on ", in.device.str());
}

// Clears the gradients still held by entries that were reached but not run (after an error).
void drain(ReadyQueue& queue) {
  while (!queue.empty()) {
    queue.top()->grad_buffer.clear();
    queue.pop();
  }
}

// One backward pass: the entries reached so far, replayed latest first.
class Pass {
 public:
  explicit Pass(bool retain_graph)
      : retain_graph_(retain_graph), epoch_(next_epoch.fetch_add(1, std::memory_order_relaxed)) {}
  Pass(const Pass&) = delete;
  Pass& operator=(const Pass&) = delete;
  ~Pass() { drain(queue_); }  // after an error: the entries reached but not run hold no gradients

  // g flows into output slot `slot` of `node`.
  void seed(const std::shared_ptr<Node>& node, int slot, const Tensor& g) {
    enqueue(node);
    accumulate_into_node(*node, slot, g);
  }

  void run() {
    std::vector<Tensor> grads;
    while (!queue_.empty()) {
      std::shared_ptr<Node> node = queue_.top();
      queue_.pop();
      grads.clear();
      for (size_t s = 0; s < node->outputs.size(); ++s) {
        Tensor& b = node->grad_buffer[s];
        if (b.defined()) {
          grads.push_back(std::move(b));
        } else {
          const OutputInfo& o = node->outputs[s];
          grads.push_back(zeros(o.shape, {o.dtype, o.device}));
        }
      }
      node->grad_buffer.clear();
      LOOM_CHECK(node->backward, node->name, " backward: the entry has no backward function");
      std::vector<Tensor> input_grads;
      {
        FreesGraphScope scope(!retain_graph_);
        ProfileScope profile(node->name.c_str(), /*backward=*/true);
        input_grads = node->backward(grads);
      }
      grads.clear();
      LOOM_CHECK(input_grads.size() == node->next.size(), node->name, " backward: returned ", input_grads.size(),
                 " gradients for ", node->next.size(), " inputs");
      // Keep the edges alive past release(): the entries they point to are about to be enqueued.
      std::vector<Edge> edges = retain_graph_ ? node->next : std::move(node->next);
      if (!retain_graph_) node->release();
      for (size_t i = 0; i < edges.size(); ++i) {
        Edge& e = edges[i];
        Tensor& g = input_grads[i];
        if (!e.defined() || !g.defined()) continue;
        check_grad_matches(*node, i, g);
        if (e.leaf)
          accumulate_into_leaf(*e.leaf, g);
        else
          seed(e.node, e.output_nr, g);
        g = Tensor();
      }
    }
  }

 private:
  void enqueue(const std::shared_ptr<Node>& node) {
    check_not_freed(*node);
    if (node->visit_epoch != epoch_) {
      node->visit_epoch = epoch_;
      node->grad_buffer.assign(node->outputs.size(), Tensor());
      queue_.push(node);
    }
  }

  bool retain_graph_;
  uint64_t epoch_;
  ReadyQueue queue_;
};

}  // namespace

void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs, bool retain_graph) {
  LOOM_CHECK(grad_outputs.empty() || grad_outputs.size() == outputs.size(), "backward: got ", outputs.size(),
             " outputs but ", grad_outputs.size(), " gradients");
  GradModeGuard no_grad(false);
  Pass pass(retain_graph);
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& out = outputs[i];
    LOOM_CHECK(out.defined(), "backward: output ", i, " is undefined");
    AutogradMeta* m = meta_if(out);
    LOOM_CHECK(m && m->requires_grad, "backward: ", describe(out),
               " does not require grad and has no grad_fn: nothing recorded it (was it computed under "
               "NoGradGuard, or from tensors without requires_grad_()?)");
    Tensor g = grad_outputs.empty() ? Tensor() : grad_outputs[i];  // a second handle: never stolen
    if (!g.defined()) {
      LOOM_CHECK(out.numel() == 1, "backward: a gradient can be created implicitly only for one-element outputs, "
                 "got ", describe(out), "; pass the gradient explicitly");
      g = ones(out.shape(), out.options());
    }
    LOOM_CHECK(g.shape() == out.shape() && g.dtype() == out.dtype() && g.device() == out.device(),
               "backward: gradient ", describe(g), " does not match output ", describe(out));
    if (m->grad_fn)
      pass.seed(m->grad_fn, m->output_nr, g);
    else
      accumulate_into_leaf(*m, g);
  }
  pass.run();
}

GradRoot grad_root(const Tensor& t) {
  AutogradMeta* m = t.defined() ? meta_if(t) : nullptr;
  LOOM_CHECK(m && m->grad_fn, "grad_root: ", t.defined() ? describe(t) : std::string("an undefined tensor"),
             " was not computed by a recorded op (a leaf or a tensor without grad has no entry to start from)");
  return {m->grad_fn, m->output_nr, t.shape(), t.dtype(), t.device()};
}

void backward(const GradRoot& root, const Tensor& grad) {
  LOOM_CHECK(root.node, "backward: an empty GradRoot");
  LOOM_CHECK(grad.defined() && grad.shape() == root.shape && grad.dtype() == root.dtype &&
                 grad.device() == root.device,
             "backward: gradient ", grad.defined() ? describe(grad) : std::string("(undefined)"),
             " does not match the root ", dtype_name(root.dtype), shape_str(root.shape), " on ", root.device.str());
  GradModeGuard no_grad(false);
  Pass pass(/*retain_graph=*/false);
  pass.seed(root.node, root.output_nr, grad);
  pass.run();
}

bool backward_frees_graph() { return frees_graph; }

bool exclusively_owned(const Tensor& t) {
  return t.defined() && t.use_count() == 1 && t.storage().use_count() == 1 && t.is_contiguous() &&
         t.offset() == 0 && t.storage()->nbytes() == t.nbytes();
}

}  // namespace loom::autograd
