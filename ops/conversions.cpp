// Tensor conversions and copies: contiguous, clone, to(device/dtype), copy_, fill_, item, to_vector,
// printing.
#include <cmath>
#include <iomanip>
#include <sstream>

#include "loom/autograd/grad_mode.h"
#include "loom/autograd/tape.h"
#include "loom/ops/backend.h"
#include "loom/ops/factory.h"

namespace loom {

Tensor& Tensor::copy_(const Tensor& src) {
  LOOM_CHECK(src.defined(), "copy_: source tensor is undefined");
  autograd::check_inplace("copy_", *this);
  LOOM_CHECK(!autograd::any_requires_grad({&src}), "copy_: the source ", describe(src),
             " requires grad, and an in-place copy does not carry gradients; use the source itself (or cat, "
             "stack, ...) in the graph, or copy under NoGradGuard / from src.detach()");
  NoGradGuard no_grad;  // the views below are internal
  Tensor expanded = src.expand(shape());
  storage()->bump_version();
  if (src.device() == device()) {
    backend_for(device()).copy(expanded, *this);
    return *this;
  }
  // Across devices: make the source contiguous in the destination dtype on its own device (unless it already
  // is: a pinned host tensor must be read by the transfer itself), move the bytes, then copy into this
  // tensor's geometry.
  Tensor staged = expanded;
  if (!expanded.is_contiguous() || expanded.dtype() != dtype()) {
    staged = Tensor::empty(shape(), {dtype(), src.device()});
    backend_for(src.device()).copy(expanded, staged);
  }
  Tensor landed = is_contiguous() ? *this : Tensor::empty(shape(), options());
  Backend& mover = device().is_cpu() ? backend_for(src.device()) : backend_for(device());
  mover.copy_across_devices(staged, landed);
  if (!landed.is_same(*this)) backend_for(device()).copy(landed, *this);
  return *this;
}

Tensor& Tensor::fill_(double value) {
  autograd::check_inplace("fill_", *this);
  storage()->bump_version();
  backend_for(device()).fill(*this, value);
  return *this;
}

// Copies that keep the tape: the gradient of a copy is the incoming gradient, moved back to the source's
// dtype and device.
namespace {

// `src` copied, as op `op`, into make_out() (a fresh tensor of its shape, dtype and device, allocated inside
// the op's scope so that a profiler counts it); the gradient passes through unchanged.
template <typename MakeOut>
Tensor recorded_copy(const char* op, const Tensor& src, MakeOut make_out) {
  autograd::OpScope scope(op, {src});
  Tensor out = make_out();
  backend_for(src.device()).copy(src, out);
  if (scope.recording()) scope.record({out}, [](const std::vector<Tensor>& g) { return g; });
  return out;
}

}  // namespace

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return recorded_copy("contiguous", *this, [this] { return Tensor::empty(shape(), options()); });
}

Tensor Tensor::clone() const {
  return recorded_copy("clone", *this, [this] { return Tensor::empty(shape(), options()); });
}

Tensor Tensor::pin_memory() const {
  LOOM_CHECK(device().is_cpu(), "pin_memory: ", describe(*this), " is on ", device(),
             "; only CPU tensors can be pinned");
  if (is_pinned()) return *this;
  Allocator& pinned = pinned_host_allocator();
  return recorded_copy("pin_memory", *this, [this, &pinned] {
    auto storage = std::make_shared<Storage>(static_cast<size_t>(numel()) * element_size(), device(), pinned);
    return make_view(std::move(storage), shape(), contiguous_strides(shape()), 0, dtype());
  });
}

bool Tensor::is_pinned() const { return defined() && storage()->allocator().pinned(); }

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  autograd::OpScope scope("to", {*this});
  Tensor out = Tensor::empty(shape(), {dtype(), target});
  out.copy_(*this);
  if (scope.recording()) {
    scope.record({out}, [source = device()](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{g[0].to(source)};
    });
  }
  return out;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  autograd::OpScope scope("to", {*this});
  Tensor out = Tensor::empty(shape(), {target, device()});
  backend_for(device()).copy(*this, out);
  // A cast to an integer dtype ends the tape (record_entry gives integer outputs no grad_fn).
  if (scope.recording() && is_floating(target)) {
    scope.record({out}, [source = dtype()](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{g[0].to(source)};
    });
  }
  return out;
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor host = to(Device()).to(dtype_of_v<T>).contiguous();
  const T* p = host.data<T>();
  return std::vector<T>(p, p + host.numel());
}

template <typename T>
T Tensor::item() const {
  LOOM_CHECK(numel() == 1, "item: expected a tensor with one element, got shape ", shape());
  return to_vector<T>()[0];
}

#define LOOM_INSTANTIATE_HOST_READS(T)                  \
  template std::vector<T> Tensor::to_vector<T>() const; \
  template T Tensor::item<T>() const;
LOOM_INSTANTIATE_HOST_READS(float)
LOOM_INSTANTIATE_HOST_READS(double)
LOOM_INSTANTIATE_HOST_READS(int64_t)
LOOM_INSTANTIATE_HOST_READS(int32_t)
LOOM_INSTANTIATE_HOST_READS(bool)
#undef LOOM_INSTANTIATE_HOST_READS

namespace {

// PyTorch-like nested brackets, eliding the middle of long dims.
void print_values(std::ostream& os, const std::vector<double>& v, const Shape& shape, size_t dim,
                  int64_t offset, int64_t stride_elems, bool integral, int indent) {
  constexpr int64_t kEdge = 3;
  if (shape.empty()) {
    if (integral)
      os << static_cast<int64_t>(v[offset]);
    else
      os << std::setprecision(4) << std::fixed << v[offset];
    return;
  }
  int64_t n = shape[dim];
  int64_t inner = stride_elems / std::max<int64_t>(n, 1);
  os << '[';
  for (int64_t i = 0; i < n; ++i) {
    if (n > 2 * kEdge && i == kEdge) {
      os << "...";
      i = n - kEdge - 1;
      os << (dim + 1 == shape.size() ? ", " : ",\n" + std::string(indent + 1, ' '));
      continue;
    }
    if (dim + 1 == shape.size()) {
      double x = v[offset + i];
      if (integral)
        os << static_cast<int64_t>(x);
      else
        os << std::setprecision(4) << std::fixed << x;
    } else {
      print_values(os, v, shape, dim + 1, offset + i * inner, inner, integral, indent + 1);
    }
    if (i + 1 < n) os << (dim + 1 == shape.size() ? ", " : ",\n" + std::string(indent + 1, ' '));
  }
  os << ']';
}

}  // namespace

std::string Tensor::to_string() const {
  if (!defined()) return "tensor(undefined)";
  std::ostringstream os;
  os << "tensor(";
  std::vector<double> values = to_vector<double>();
  if (dim() == 0) {
    print_values(os, values, Shape{}, 0, 0, 1, !is_floating(dtype()), 7);
  } else {
    print_values(os, values, shape(), 0, 0, numel(), !is_floating(dtype()), 7);
  }
  os << ", shape=" << shape() << ", dtype=" << dtype_name(dtype());
  if (!device().is_cpu()) os << ", device=" << device();
  os << ')';
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.to_string(); }

}  // namespace loom
