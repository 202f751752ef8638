// Recording: tapes, saved tensors and OpScope.
#include "loom/autograd/tape.h"

#include <atomic>

#include "loom/autograd/grad_mode.h"

namespace loom::autograd {
namespace {

// Sequence numbers are global so that entries recorded on different (nested) tapes still order correctly.
std::atomic<uint64_t> next_sequence_nr{1};

struct TapeStack {
  Tape base;
  std::vector<Tape*> stack;
};

TapeStack& tape_stack() {
  thread_local TapeStack s;
  return s;
}

// Nodes destroyed while this is set push their edges onto `pending` instead of releasing them, so freeing
// a long chain of entries is a loop rather than a recursion as deep as the graph.
thread_local bool draining = false;
thread_local std::vector<std::shared_ptr<Node>>* pending = nullptr;

void release_edges(std::vector<Edge>& edges) {
  std::vector<std::shared_ptr<Node>> local;
  bool outermost = !draining;
  if (outermost) {
    draining = true;
    pending = &local;
  }
  for (Edge& e : edges)
    if (e.node) pending->push_back(std::move(e.node));
  edges.clear();
  if (outermost) {
    while (!local.empty()) {
      std::shared_ptr<Node> n = std::move(local.back());
      local.pop_back();
      n.reset();  // may destroy the node, whose destructor appends its edges to `local`
    }
    pending = nullptr;
    draining = false;
  }
}

}  // namespace

Node::~Node() {
  if (!freed && tape) --tape->live;
  backward = nullptr;
  release_edges(next);
}

void Node::release() {
  if (!freed && tape) --tape->live;
  freed = true;
  backward = nullptr;
  grad_buffer.clear();
  release_edges(next);
}

AutogradMeta& meta(const Tensor& t) {
  TensorImpl* impl = t.unsafe_impl();
  LOOM_CHECK(impl != nullptr, "autograd: operation on an undefined tensor");
  if (!impl->autograd) impl->autograd = std::make_shared<AutogradMeta>();
  return *impl->autograd;
}

AutogradMeta* meta_if(const Tensor& t) {
  TensorImpl* impl = t.unsafe_impl();
  return impl ? impl->autograd.get() : nullptr;
}

Tape::Tape() : counters_(std::make_shared<TapeCounters>()) {}

Tape& current_tape() {
  TapeStack& s = tape_stack();
  return s.stack.empty() ? s.base : *s.stack.back();
}

TapeGuard::TapeGuard() { tape_stack().stack.push_back(&tape_); }
TapeGuard::~TapeGuard() { tape_stack().stack.pop_back(); }

SavedTensor::SavedTensor(const Tensor& t, const char* op) : op_(op) {
  if (!t.defined()) return;
  data_ = Tensor::make_view(t.storage(), t.shape(), t.strides(), t.offset(), t.dtype());
  version_ = t.storage()->version();
}

const Tensor& SavedTensor::get() const {
  LOOM_CHECK(!data_.defined() || data_.storage()->version() == version_, op_,
             " backward: a tensor saved for the gradient (", describe(data_),
             ") was modified by an in-place operation after it was saved (storage version ",
             data_.storage()->version(), ", saved at version ", version_,
             "); use an out-of-place op, or clone it before modifying");
  return data_;
}

Tensor SavedTensor::take() {
  get();  // the version check
  return std::move(data_);
}

bool any_requires_grad(std::initializer_list<const Tensor*> tensors) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor* t : tensors) {
    AutogradMeta* m = meta_if(*t);
    if (m && m->requires_grad) return true;
  }
  return false;
}

bool any_requires_grad(const std::vector<Tensor>& tensors) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor& t : tensors) {
    AutogradMeta* m = meta_if(t);
    if (m && m->requires_grad) return true;
  }
  return false;
}

void record_entry(const std::string& name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
                  BackwardFn backward) {
  auto node = std::make_shared<Node>();
  node->name = name;
  node->sequence_nr = next_sequence_nr.fetch_add(1, std::memory_order_relaxed);
  node->backward = std::move(backward);
  node->tape = current_tape().counters();
  ++node->tape->live;
  ++node->tape->recorded;
  node->next.reserve(inputs.size());
  node->inputs.reserve(inputs.size());
  for (const Tensor& in : inputs) {
    Edge e;
    if (in.defined()) {
      node->inputs.push_back({in.shape(), in.dtype(), in.device()});
      AutogradMeta* m = meta_if(in);
      if (m && m->requires_grad) {
        if (m->grad_fn) {
          e.node = m->grad_fn;
          e.output_nr = m->output_nr;
        } else {
          e.leaf = in.unsafe_impl()->autograd;
        }
      }
    } else {
      node->inputs.push_back({Shape(), DType::Float32, Device()});
    }
    node->next.push_back(std::move(e));
  }
  node->outputs.reserve(outputs.size());
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& out = outputs[i];
    LOOM_CHECK(out.defined(), name, ": output ", i, " is undefined");
    node->outputs.push_back({out.shape(), out.dtype(), out.device()});
    if (!is_floating(out.dtype())) continue;  // integer outputs (argmax, indices) carry no gradient
    AutogradMeta& m = meta(out);
    m.requires_grad = true;
    m.grad_fn = node;
    m.output_nr = static_cast<int>(i);
  }
}

OpScope::OpScope(const char* op, std::initializer_list<Tensor> inputs) : OpScope(op, std::vector<Tensor>(inputs)) {}

OpScope::OpScope(const char* op, std::vector<Tensor> inputs)
    : profile_(op), op_(op), previous_mode_(GradMode::is_enabled()) {
  recording_ = any_requires_grad(inputs);
  if (recording_) inputs_ = std::move(inputs);
  GradMode::set_enabled(false);
}

bool OpScope::needs_grad(size_t i) const {
  if (!recording_ || i >= inputs_.size() || !inputs_[i].defined()) return false;
  AutogradMeta* m = meta_if(inputs_[i]);
  return m && m->requires_grad;
}

void check_inplace(const char* op, const Tensor& t) {
  if (!GradMode::is_enabled() || !t.defined()) return;
  AutogradMeta* m = meta_if(t);
  LOOM_CHECK(!(m && m->requires_grad), op, ": in-place write into ", describe(t),
             ", which requires grad; use the out-of-place op, or wrap the update in NoGradGuard (as optimizers do)");
}

OpScope::~OpScope() { GradMode::set_enabled(previous_mode_); }

void OpScope::record(std::initializer_list<Tensor> outputs, BackwardFn backward) {
  record(std::vector<Tensor>(outputs), std::move(backward));
}

void OpScope::record(const std::vector<Tensor>& outputs, BackwardFn backward) {
  LOOM_CHECK(recording_, op_, ": internal error: record() called on a scope that does not record");
  record_entry(op_, inputs_, outputs, std::move(backward));
}

}  // namespace loom::autograd
