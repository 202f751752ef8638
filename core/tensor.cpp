// Tensor metadata and views: everything here is O(ndim) and never touches element data.
#include "loom/core/tensor.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "loom/autograd/grad_mode.h"
#include "loom/autograd/tape.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/factory.h"
#include "loom/ops/reduce.h"
#include "loom/ops/shape_ops.h"

namespace loom {
namespace {

using Grads = std::vector<Tensor>;

// Records `out`, a view of `in`, on the tape when in requires grad; `back` maps out's gradient to in's.
// A method that returned its input unchanged records nothing (the input keeps its own tape state).
template <typename Back>
Tensor view_entry(const char* op, const Tensor& in, Tensor out, Back back) {
  if (out.is_same(in) || !autograd::any_requires_grad({&in})) return out;
  autograd::OpScope scope(op, {in});
  scope.record({out}, [back = std::move(back)](const Grads& g) { return Grads{back(g[0])}; });
  return out;
}

// False only when no two elements of a (shape, strides) geometry share a position: with the dims sorted by
// stride, each stride must exceed the furthest position the smaller dims reach.
bool may_overlap(const Shape& shape, const Shape& strides) {
  std::vector<std::pair<int64_t, int64_t>> dims;  // (stride, size) of the dims that have extent
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 0) return false;
    if (shape[i] > 1) dims.emplace_back(strides[i], shape[i]);
  }
  std::sort(dims.begin(), dims.end());
  int64_t reach = 0;
  for (const auto& [stride, size] : dims) {
    if (stride <= reach) return true;
    reach += (size - 1) * stride;
  }
  return false;
}

// The furthest storage position a (shape, strides, offset) geometry reaches (offset itself when it is empty).
int64_t last_position(const Shape& shape, const Shape& strides, int64_t offset) {
  int64_t last = offset;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 0) return offset;
    last += (shape[i] - 1) * strides[i];
  }
  return last;
}

// The gradient of a view that picks some of in's elements: zeros, with g written where the view looked.
template <typename Pick>
Tensor scatter_into_zeros(const Shape& shape, const Tensor& g, Pick pick) {
  Tensor z = zeros(shape, g.options());
  pick(z).copy_(g);
  return z;
}

}  // namespace

Tensor Tensor::empty(const Shape& shape, TensorOptions options) {
  for (int64_t d : shape) LOOM_CHECK(d >= 0, "empty: negative dimension in shape ", shape);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(shape_numel(shape)) * loom::element_size(options.dtype),
                                            options.device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = options.dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::make_view(std::shared_ptr<Storage> storage, const Shape& shape, const Shape& strides, int64_t offset,
                         DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim(d, dim(), "stride")]; }

void* Tensor::data_ptr() const {
  return static_cast<char*>(impl().storage->data()) + offset() * static_cast<int64_t>(element_size());
}

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;  // nothing to lay out (PyTorch agrees)
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    int64_t n = shape()[i];
    if (n == 1) continue;
    if (strides()[i] != expected) return false;
    expected *= n;
  }
  return true;
}

Tensor Tensor::as_strided(const Shape& shape, const Shape& strides, int64_t offset) const {
  LOOM_CHECK(shape.size() == strides.size(), "as_strided: shape ", shape, " and strides ", strides,
             " have different lengths");
  LOOM_CHECK(offset >= 0, "as_strided: negative storage offset ", offset);
  if (shape_numel(shape) > 0) {
    int64_t last = offset;
    for (size_t i = 0; i < shape.size(); ++i) {
      LOOM_CHECK(shape[i] >= 0 && strides[i] >= 0, "as_strided: negative size or stride in shape ", shape,
                 " strides ", strides);
      last += (shape[i] - 1) * strides[i];
    }
    int64_t capacity = static_cast<int64_t>(storage()->nbytes() / element_size());
    LOOM_CHECK(last < capacity, "as_strided: shape ", shape, " with strides ", strides, " and offset ", offset,
               " reaches element ", last, " but the storage holds ", capacity, " elements");
  }
  Tensor out = make_view(storage(), shape, strides, offset, dtype());
  // The gradient lands on storage positions: add g into a buffer spanning the storage both geometries touch
  // (positions the view reads several times accumulate), then read it back through the input's own geometry.
  // When the input's elements alias each other (an expanded tensor, say), each aliasing element gets an equal
  // share of its position's gradient, as in PyTorch; otherwise the backward of whatever made the input (expand
  // sums over its copies) would count the position once per alias.
  return view_entry("as_strided", *this, out,
                    [in_shape = this->shape(), in_strides = this->strides(), in_offset = this->offset(), shape,
                     strides, offset](const Tensor& g) {
                      int64_t lo = std::min(in_offset, offset);
                      int64_t span = std::max(last_position(in_shape, in_strides, in_offset),
                                              last_position(shape, strides, offset)) - lo + 1;
                      Tensor positions = arange(static_cast<double>(span), {kInt64, g.device()});
                      Tensor flat = index_add(zeros({span}, g.options()), 0,
                                              positions.as_strided(shape, strides, offset - lo).reshape({-1}),
                                              g.reshape({-1}));
                      if (may_overlap(in_shape, in_strides)) {
                        Tensor in_positions = positions.as_strided(in_shape, in_strides, in_offset - lo).reshape({-1});
                        Tensor aliases = index_add(zeros({span}, g.options()), 0, in_positions,
                                                   ones(in_positions.shape(), g.options()));
                        flat = div(flat, clamp(aliases, 1, INFINITY));
                      }
                      return flat.as_strided(in_shape, in_strides, in_offset - lo).clone();
                    });
}

namespace {

// Resolves a single -1 in `shape` against numel; `op` names the caller.
Shape infer_shape(const Shape& shape, int64_t numel, const char* op, const Shape& from) {
  Shape out = shape;
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      LOOM_CHECK(infer < 0, op, ": only one dimension can be -1, got ", shape);
      infer = static_cast<int>(i);
    } else {
      LOOM_CHECK(out[i] >= 0, op, ": invalid dimension ", out[i], " in ", shape);
      known *= out[i];
    }
  }
  if (infer >= 0) {
    LOOM_CHECK(known != 0 && numel % known == 0, op, ": shape ", shape, " is invalid for a tensor of shape ", from,
               " (", numel, " elements)");
    out[infer] = numel / known;
  }
  LOOM_CHECK(shape_numel(out) == numel, op, ": shape ", shape, " is invalid for a tensor of shape ", from, " (", numel,
             " elements)");
  return out;
}

// Strides for viewing (old_shape, old_strides) as new_shape without a copy, or false when impossible
// (the algorithm of PyTorch's computeStride: match runs of dims that are contiguous among themselves).
bool view_strides(const Shape& old_shape, const Shape& old_strides, const Shape& new_shape, Shape& new_strides) {
  new_strides = Shape(new_shape.size(), 0);
  // Empty and 0-d tensors have no stride structure to preserve (a 0-d tensor becomes all size-1 dims).
  if (shape_numel(old_shape) == 0 || old_shape.empty()) {
    new_strides = contiguous_strides(new_shape);
    return true;
  }
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_base_stride = old_strides.empty() ? 1 : old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t tensor_d = static_cast<int64_t>(old_shape.size()) - 1; tensor_d >= 0; --tensor_d) {
    tensor_numel *= old_shape[tensor_d];
    if (tensor_d == 0 || (old_shape[tensor_d - 1] != 1 &&
                          old_strides[tensor_d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        new_strides[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (tensor_d > 0) {
        chunk_base_stride = old_strides[tensor_d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

}  // namespace

Tensor Tensor::view(const Shape& shape) const {
  Shape target = infer_shape(shape, numel(), "view", this->shape());
  Shape st;
  LOOM_CHECK(view_strides(this->shape(), strides(), target, st), "view: cannot view a tensor of shape ", this->shape(),
             " with strides ", strides(), " as ", target, " without a copy (use reshape)");
  return view_entry("view", *this, make_view(storage(), target, st, offset(), dtype()),
                    [in_shape = this->shape()](const Tensor& g) { return g.reshape(in_shape); });
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape target = infer_shape(shape, numel(), "reshape", this->shape());
  Shape st;
  Tensor out;
  {
    NoGradGuard internal;  // one entry for the whole reshape, whether it viewed or copied
    out = view_strides(this->shape(), strides(), target, st) ? make_view(storage(), target, st, offset(), dtype())
                                                              : contiguous().view(target);
  }
  return view_entry("reshape", *this, out,
                    [in_shape = this->shape()](const Tensor& g) { return g.reshape(in_shape); });
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  int64_t s = wrap_dim(start_dim, dim(), "flatten"), e = wrap_dim(end_dim, dim(), "flatten");
  LOOM_CHECK(s <= e, "flatten: start_dim ", start_dim, " comes after end_dim ", end_dim);
  Shape out;
  for (int64_t i = 0; i < s; ++i) out.push_back(shape()[i]);
  int64_t n = 1;
  for (int64_t i = s; i <= e; ++i) n *= shape()[i];
  out.push_back(n);
  for (int64_t i = e + 1; i < dim(); ++i) out.push_back(shape()[i]);
  return reshape(out);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  LOOM_CHECK(static_cast<int64_t>(dims.size()) == dim(), "permute: got ", dims.size(), " dims for a tensor of shape ",
             shape());
  Shape sh(dims.size()), st(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], dim(), "permute");
    LOOM_CHECK(!seen[d], "permute: dim ", d, " repeated in the permutation");
    seen[d] = true;
    sh[i] = shape()[d];
    st[i] = strides()[d];
  }
  std::vector<int64_t> inverse(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) inverse[static_cast<size_t>(wrap_dim(dims[i], dim(), "permute"))] =
      static_cast<int64_t>(i);
  return view_entry("permute", *this, make_view(storage(), sh, st, offset(), dtype()),
                    [inverse](const Tensor& g) { return g.permute(inverse); });
}

Tensor Tensor::transpose(int64_t dim0, int64_t dim1) const {
  if (dim() == 0) return *this;
  int64_t a = wrap_dim(dim0, dim(), "transpose"), b = wrap_dim(dim1, dim(), "transpose");
  Shape sh = shape(), st = strides();
  std::swap(sh[a], sh[b]);
  std::swap(st[a], st[b]);
  return view_entry("transpose", *this, make_view(storage(), sh, st, offset(), dtype()),
                    [a, b](const Tensor& g) { return g.transpose(a, b); });
}

Tensor Tensor::t() const {
  LOOM_CHECK(dim() <= 2, "t: expected a tensor of at most 2 dims, got shape ", shape());
  return dim() < 2 ? *this : transpose(0, 1);
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  LOOM_CHECK(dim() > 0, "narrow: cannot narrow a 0-d tensor");
  d = wrap_dim(d, dim(), "narrow");
  int64_t n = shape()[d];
  if (start < 0) start += n;
  LOOM_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow: start ", start, " and length ", length,
             " out of range for dim ", d, " of size ", n, " (shape ", shape(), ")");
  Shape sh = shape();
  sh[d] = length;
  return view_entry("narrow", *this, make_view(storage(), sh, strides(), offset() + start * strides()[d], dtype()),
                    [in_shape = shape(), d, start, length](const Tensor& g) {
                      return scatter_into_zeros(in_shape, g, [&](const Tensor& z) { return z.narrow(d, start, length); });
                    });
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  LOOM_CHECK(dim() > 0, "slice: cannot slice a 0-d tensor");
  LOOM_CHECK(step > 0, "slice: step must be positive, got ", step);
  d = wrap_dim(d, dim(), "slice");
  int64_t n = shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape sh = shape(), st = strides();
  sh[d] = (end - start + step - 1) / step;
  st[d] *= step;
  return view_entry("slice", *this, make_view(storage(), sh, st, offset() + start * strides()[d], dtype()),
                    [in_shape = shape(), d, start, end, step](const Tensor& g) {
                      return scatter_into_zeros(in_shape, g,
                                                [&](const Tensor& z) { return z.slice(d, start, end, step); });
                    });
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  LOOM_CHECK(dim() > 0, "select: cannot index a 0-d tensor");
  d = wrap_dim(d, dim(), "select");
  int64_t n = shape()[d];
  LOOM_CHECK(index >= -n && index < n, "select: index ", index, " out of range for dim ", d, " of size ", n,
             " (shape ", shape(), ")");
  if (index < 0) index += n;
  Shape sh = shape(), st = strides();
  sh.erase(d);
  st.erase(d);
  return view_entry("select", *this, make_view(storage(), sh, st, offset() + index * strides()[d], dtype()),
                    [in_shape = shape(), d, index](const Tensor& g) {
                      return scatter_into_zeros(in_shape, g, [&](const Tensor& z) { return z.select(d, index); });
                    });
}

Tensor Tensor::expand(const Shape& target) const {
  LOOM_CHECK(target.size() >= shape().size(), "expand: cannot expand shape ", shape(), " to fewer dims ", target);
  size_t lead = target.size() - shape().size();
  Shape sh(target.size()), st(target.size());
  for (size_t i = 0; i < target.size(); ++i) {
    if (i < lead) {
      LOOM_CHECK(target[i] >= 0, "expand: new leading dim ", i, " cannot be -1 in ", target);
      sh[i] = target[i];
      st[i] = 0;
      continue;
    }
    int64_t cur = shape()[i - lead];
    int64_t want = target[i] == -1 ? cur : target[i];
    LOOM_CHECK(cur == want || cur == 1, "expand: shape ", shape(), " cannot be expanded to ", target, " (dim ", i,
               ": ", cur, " vs ", want, ")");
    sh[i] = want;
    st[i] = cur == want ? strides()[i - lead] : 0;
  }
  return view_entry("expand", *this, make_view(storage(), sh, st, offset(), dtype()),
                    [in_shape = shape()](const Tensor& g) { return sum_to_size(g, in_shape); });
}

Tensor Tensor::squeeze() const {
  Shape sh, st;
  for (int64_t i = 0; i < dim(); ++i)
    if (shape()[i] != 1) {
      sh.push_back(shape()[i]);
      st.push_back(strides()[i]);
    }
  return view_entry("squeeze", *this, make_view(storage(), sh, st, offset(), dtype()),
                    [in_shape = shape()](const Tensor& g) { return g.reshape(in_shape); });
}

Tensor Tensor::squeeze(int64_t d) const {
  if (dim() == 0) return *this;
  d = wrap_dim(d, dim(), "squeeze");
  if (shape()[d] != 1) return *this;
  Shape sh = shape(), st = strides();
  sh.erase(d);
  st.erase(d);
  return view_entry("squeeze", *this, make_view(storage(), sh, st, offset(), dtype()),
                    [in_shape = shape()](const Tensor& g) { return g.reshape(in_shape); });
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape sh = shape(), st = strides();
  int64_t stride = d < dim() ? strides()[d] * shape()[d] : 1;
  sh.insert(d, 1);
  st.insert(d, stride);
  return view_entry("unsqueeze", *this, make_view(storage(), sh, st, offset(), dtype()),
                    [in_shape = shape()](const Tensor& g) { return g.reshape(in_shape); });
}

std::string describe(const Tensor& t) {
  if (!t.defined()) return "undefined tensor";
  return detail::concat(dtype_name(t.dtype()), shape_str(t.shape()), " on ", t.device().str());
}

}  // namespace loom
