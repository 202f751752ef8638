// The autograd methods of Tensor.
#include "loom/autograd/engine.h"
#include "loom/autograd/grad_mode.h"
#include "loom/autograd/node.h"

namespace loom {

bool Tensor::requires_grad() const {
  autograd::AutogradMeta* m = autograd::meta_if(*this);
  return m && m->requires_grad;
}

const Tensor& Tensor::requires_grad_(bool requires_grad) const {
  autograd::AutogradMeta* m = autograd::meta_if(*this);
  LOOM_CHECK(!(m && m->grad_fn), "requires_grad_: ", describe(*this), " was computed by '", m->grad_fn->name,
             "' and is not a leaf; only leaves' requires_grad can be changed (use detach() for a new leaf)");
  LOOM_CHECK(!requires_grad || is_floating(dtype()), "requires_grad_: only floating-point tensors can require "
             "gradients, got ", describe(*this));
  if (requires_grad || m) autograd::meta(*this).requires_grad = requires_grad;
  return *this;
}

Tensor Tensor::grad() const {
  autograd::AutogradMeta* m = autograd::meta_if(*this);
  return m ? m->grad : Tensor();
}

void Tensor::set_grad(const Tensor& grad) const {
  LOOM_CHECK(!grad.defined() || (grad.shape() == shape() && grad.dtype() == dtype() && grad.device() == device()),
             "set_grad: gradient ", describe(grad), " does not match tensor ", describe(*this));
  autograd::meta(*this).grad = grad;
}

bool Tensor::is_leaf() const {
  autograd::AutogradMeta* m = autograd::meta_if(*this);
  return !(m && m->grad_fn);
}

std::string Tensor::grad_fn_name() const {
  autograd::AutogradMeta* m = autograd::meta_if(*this);
  return m && m->grad_fn ? m->grad_fn->name : std::string();
}

Tensor Tensor::detach() const { return make_view(storage(), shape(), strides(), offset(), dtype()); }

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  autograd::backward({*this}, {gradient}, retain_graph);
}

}  // namespace loom
