#pragma once
// Tensor: a cheap, reference-counted handle to (storage, shape, strides, offset, dtype). Views share storage;
// copying a Tensor copies the handle, not the data (as in PyTorch).
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "loom/core/device.h"
#include "loom/core/dtype.h"
#include "loom/core/error.h"
#include "loom/core/shape.h"
#include "loom/core/storage.h"

namespace loom {

namespace autograd {
struct AutogradMeta;
}

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;  // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::Float32;
  // Created on first use by autograd (requires_grad, grad, the tape entry that produced the tensor).
  std::shared_ptr<autograd::AutogradMeta> autograd;
};

struct TensorOptions {
  DType dtype = DType::Float32;
  Device device = Device();
  TensorOptions() = default;
  TensorOptions(DType d) : dtype(d) {}                  // NOLINT: implicit, so `zeros({2}, kInt64)` reads well
  TensorOptions(Device dev) : device(dev) {}            // NOLINT
  TensorOptions(DType d, Device dev) : dtype(d), device(dev) {}
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // A fresh, uninitialised, contiguous tensor.
  static Tensor empty(const Shape& shape, TensorOptions options = {});
  // A view of `storage` with the given geometry (no copy).
  static Tensor make_view(std::shared_ptr<Storage> storage, const Shape& shape, const Shape& strides, int64_t offset,
                          DType dtype);

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& sizes() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t size(int64_t dim) const;
  int64_t stride(int64_t dim) const;
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t numel() const { return shape_numel(impl().shape); }
  int64_t offset() const { return impl().offset; }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  TensorOptions options() const { return {dtype(), device()}; }
  size_t element_size() const { return loom::element_size(dtype()); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * element_size(); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  TensorImpl* unsafe_impl() const { return impl_.get(); }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }
  // How many handles share this tensor's impl (autograd uses it to tell whether a gradient may be reused).
  long use_count() const { return impl_.use_count(); }

  // Host pointer to the first element of a CPU tensor; checks that T matches the dtype. (A GPU tensor's
  // memory cannot be read from the host: copy it with to(kCPU) first, or use data_ptr() in device code.)
  template <typename T>
  T* data() const {
    LOOM_CHECK(dtype_of_v<T> == dtype(), "Tensor::data<T>: tensor has dtype ", dtype_name(dtype()),
               " but data was requested as ", dtype_name(dtype_of_v<T>));
    LOOM_CHECK(device().is_cpu(), "Tensor::data<T>: tensor of shape ", shape(), " is on ", device(),
               ", not the host; copy it with .to(kCPU) first");
    return static_cast<T*>(data_ptr());
  }
  void* data_ptr() const;
  // The single value of a one-element tensor (copied to the host if needed).
  template <typename T>
  T item() const;
  // The elements in row-major order, copied to the host.
  template <typename T>
  std::vector<T> to_vector() const;

  // Conversions and copies.
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;
  Tensor cpu() const { return to(Device()); }
  Tensor cuda() const { return to(Device(DeviceType::CUDA, 0)); }
  // A copy of this CPU tensor in pinned host memory (itself if already pinned), for fast copies to a GPU, as
  // torch.Tensor.pin_memory; differentiable like clone(). Throws without a GPU (see pinned_host_allocator).
  Tensor pin_memory() const;
  bool is_pinned() const;
  // Copies src into this tensor (broadcasting src, converting dtype, across devices). In-place.
  Tensor& copy_(const Tensor& src);
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }

  // Views sharing storage.
  Tensor view(const Shape& shape) const;  // requires compatible strides; -1 infers one dim
  Tensor reshape(const Shape& shape) const;  // a view when possible, else a copy
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t dim0, int64_t dim1) const;
  Tensor t() const;  // transpose of a 2-d tensor
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor operator[](int64_t index) const { return select(0, index); }
  Tensor expand(const Shape& shape) const;  // -1 keeps a dim
  Tensor expand_as(const Tensor& other) const { return expand(other.shape()); }
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor as_strided(const Shape& shape, const Shape& strides, int64_t offset) const;

  // Method forms of the free functions in ops/ (same semantics).
  Tensor sum() const;
  Tensor sum(const std::vector<int64_t>& dims, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(const std::vector<int64_t>& dims, bool keepdim = false) const;
  Tensor max() const;
  Tensor max(int64_t dim, bool keepdim = false) const;
  Tensor min() const;
  Tensor min(int64_t dim, bool keepdim = false) const;
  Tensor argmax(int64_t dim, bool keepdim = false) const;
  Tensor exp() const;
  Tensor log() const;
  Tensor sqrt() const;
  Tensor tanh() const;
  Tensor relu() const;
  Tensor sigmoid() const;
  Tensor abs() const;
  Tensor neg() const;
  Tensor pow(double exponent) const;
  Tensor matmul(const Tensor& other) const;
  Tensor softmax(int64_t dim) const;
  Tensor log_softmax(int64_t dim) const;
  Tensor masked_fill(const Tensor& mask, double value) const;

  // Autograd (autograd/tensor_autograd.cpp).
  bool requires_grad() const;
  // Marks a leaf as requiring grad: ops on it record onto the tape. Only floating dtypes can require grad.
  const Tensor& requires_grad_(bool requires_grad = true) const;
  // The accumulated gradient of a leaf (undefined until a backward() reaches it).
  Tensor grad() const;
  void set_grad(const Tensor& grad) const;
  // True for tensors no recorded op produced (user-created tensors and parameters).
  bool is_leaf() const;
  // The name of the op that produced this tensor on the tape ("" for leaves).
  std::string grad_fn_name() const;
  // The same data, cut from the tape (requires_grad false).
  Tensor detach() const;
  // Backpropagates from this tensor; `gradient` defaults to 1 for one-element tensors.
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;

  std::string to_string() const;

 private:
  TensorImpl& impl() const {
    LOOM_CHECK(impl_ != nullptr, "Tensor: operation on an undefined tensor");
    return *impl_;
  }
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Human-readable "float32[2, 3] on cpu" for error messages.
std::string describe(const Tensor& t);

}  // namespace loom
