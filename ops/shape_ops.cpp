// Ops that assemble, split, index and reorder tensors: argument checks and output shapes, then the backend
// kernel.
#include "loom/ops/shape_ops.h"

#include <algorithm>
#include <string>
#include <utility>

#include "loom/autograd/grad_mode.h"
#include "loom/autograd/tape.h"
#include "loom/ops/backend.h"
#include "loom/ops/factory.h"
#include "loom/ops/grad_helpers.h"

namespace loom {
namespace {

using Grads = std::vector<Tensor>;

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  LOOM_CHECK(a.device() == b.device(), op, ": tensors on ", a.device(), " and ", b.device());
}

void check_index_dtype(const char* op, const Tensor& index) {
  LOOM_CHECK(index.dtype() == DType::Int64, op, ": expected an int64 index, got ", dtype_name(index.dtype()));
}

// Smallest and largest value of a non-empty int64 tensor. CPU tensors are scanned in place; other devices
// reduce on the device so that only two scalars cross to the host.
std::pair<int64_t, int64_t> min_max(const Tensor& t) {
  if (!t.device().is_cpu()) return {amin(t).item<int64_t>(), amax(t).item<int64_t>()};
  Tensor c = t.contiguous();
  const int64_t* p = c.data<int64_t>();
  const int64_t n = c.numel();
  int64_t lo = p[0], hi = p[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = std::min(lo, p[i]);
    hi = std::max(hi, p[i]);
  }
  return {lo, hi};
}

// Every value of `index` must address dim `dim` of x, whose size is x.size(dim).
void check_index_range(const char* op, const Tensor& index, const Tensor& x, int64_t dim) {
  if (index.numel() == 0) return;
  auto [lo, hi] = min_max(index);
  const int64_t size = x.size(dim);
  LOOM_CHECK(lo >= 0 && hi < size, op, ": index ", lo < 0 ? lo : hi, " is out of range [0, ", size,
             ") for dim ", dim, " of ", describe(x));
}

// PyTorch's legacy rule: cat skips 1-d empty tensors whatever the other shapes are.
bool skipped_by_cat(const Tensor& t) { return t.dim() == 1 && t.numel() == 0; }

Tensor scatter_impl(const char* op, const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src,
                    bool accumulate) {
  check_same_device(op, x, index);
  check_same_device(op, x, src);
  check_index_dtype(op, index);
  LOOM_CHECK(src.dtype() == x.dtype(), op, ": src dtype ", dtype_name(src.dtype()),
             " does not match x dtype ", dtype_name(x.dtype()));
  LOOM_CHECK(index.dim() == x.dim() && src.dim() == x.dim(), op, ": x ", x.shape(), ", index ", index.shape(),
             " and src ", src.shape(), " must have the same number of dims");
  const int64_t d = wrap_dim(dim, x.dim(), op);
  if (x.dim() == 0) {
    return scatter_impl(op, x.unsqueeze(0), 0, index.unsqueeze(0), src.unsqueeze(0), accumulate).squeeze(0);
  }
  for (int64_t k = 0; k < x.dim(); ++k) {
    LOOM_CHECK(index.size(k) <= src.size(k), op, ": index shape ", index.shape(), " exceeds src shape ",
               src.shape(), " in dim ", k);
    LOOM_CHECK(k == d || index.size(k) <= x.size(k), op, ": index shape ", index.shape(), " exceeds x shape ",
               x.shape(), " in dim ", k, " (only dim ", d, " may be larger)");
  }
  check_index_range(op, index, x, d);
  Tensor out = x.clone();
  if (index.numel() > 0) backend_for(x.device()).scatter(out, d, index, src, accumulate);
  return out;
}

Tensor triangle(const char* op, const Tensor& x, int64_t diagonal, bool upper) {
  LOOM_CHECK(x.dim() >= 2, op, ": expected a tensor with at least 2 dims, got shape ", x.shape());
  autograd::OpScope scope(op, {x});
  Tensor out = Tensor::empty(x.shape(), x.options());
  if (x.numel() > 0) backend_for(x.device()).triangle(x, diagonal, upper, out);
  if (scope.recording()) {
    scope.record({out}, [diagonal, upper](const Grads& g) {
      return Grads{upper ? triu(g[0], diagonal) : tril(g[0], diagonal)};
    });
  }
  return out;
}

// t (of `inner` shape, elementwise <= `shape`) placed at the front corner of zeros of `shape`: the gradient
// of a src that is larger than the index reading it, whose extra elements are never used.
Tensor pad_to(const Tensor& t, const Shape& shape) {
  if (t.shape() == shape) return t;
  Tensor z = zeros(shape, t.options());
  Tensor corner = z;
  for (int64_t k = 0; k < t.dim(); ++k) corner = corner.narrow(k, 0, t.size(k));
  corner.copy_(t);
  return z;
}

// The gradient of gather-like reads of src through `index` (scatter's and scatter_add's src): g read back at
// the same positions, in src's shape.
Tensor src_grad(const Tensor& g, int64_t d, const Tensor& index, const Shape& src_shape) {
  return pad_to(gather(g, d, index), src_shape);
}

// The pieces of split / chunk: views of x along d, recorded as one entry whose backward concatenates the
// pieces' gradients. A dim of size 0 returns x itself, which carries its own tape state.
std::vector<Tensor> record_pieces(autograd::OpScope& scope, const Tensor& x, int64_t d, std::vector<Tensor> pieces) {
  if (!scope.recording() || (pieces.size() == 1 && pieces[0].is_same(x))) return pieces;
  scope.record(pieces, [d](const Grads& g) { return Grads{cat(g, d)}; });
  return pieces;
}

std::vector<Tensor> split_sizes(const Tensor& x, int64_t d, int64_t split_size) {
  const int64_t n = x.size(d);
  if (n == 0) return {x};
  std::vector<Tensor> pieces;
  for (int64_t start = 0; start < n; start += split_size) {
    pieces.push_back(x.narrow(d, start, std::min(split_size, n - start)));
  }
  return pieces;
}

ValuesIndices sort_impl(const Tensor& x, int64_t d, bool descending) {
  if (x.dim() == 0) return {x.clone(), zeros({}, {DType::Int64, x.device()})};
  ValuesIndices r{Tensor::empty(x.shape(), x.options()),
                  Tensor::empty(x.shape(), {DType::Int64, x.device()})};
  if (x.numel() > 0) backend_for(x.device()).sort(x, d, descending, r.values, r.indices);
  return r;
}

// The gradient of values picked from x by sort / topk: g lands where each value came from (the indices are
// distinct along d).
void record_picked(autograd::OpScope& scope, const Tensor& x, int64_t d, const ValuesIndices& r) {
  if (!scope.recording()) return;
  scope.record({r.values, r.indices}, [si = scope.save(r.indices), shape = x.shape(), d](const Grads& g) {
    // A 0-d x gave a 0-d value (its own, index 0) or nothing at all (topk with k = 0).
    if (shape.empty()) return Grads{g[0].dim() == 0 ? g[0] : zeros(shape, g[0].options())};
    return Grads{scatter(zeros(shape, g[0].options()), d, si.get(), g[0])};
  });
}

}  // namespace

namespace {

Tensor cat_impl(const std::vector<Tensor>& tensors, int64_t dim) {
  LOOM_CHECK(!tensors.empty(), "cat: expected a non-empty list of tensors");
  int64_t ref = -1;  // the first tensor that is not skipped: it fixes the rank and the other extents
  DType dtype = DType::Bool;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    LOOM_CHECK(t.defined(), "cat: tensor ", i, " is undefined");
    LOOM_CHECK(t.dim() > 0, "cat: tensor ", i, " is 0-d and cannot be concatenated");
    check_same_device("cat", tensors[0], t);
    dtype = i == 0 ? t.dtype() : promote_types(dtype, t.dtype());
    if (ref < 0 && !skipped_by_cat(t)) ref = static_cast<int64_t>(i);
  }
  const Device device = tensors[0].device();
  if (ref < 0) return Tensor::empty({0}, {dtype, device});
  const Shape& ref_shape = tensors[ref].shape();
  const int64_t d = wrap_dim(dim, tensors[ref].dim(), "cat");
  Shape out_shape = ref_shape;
  out_shape[d] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    if (skipped_by_cat(t)) continue;
    bool match = t.dim() == tensors[ref].dim();
    for (int64_t k = 0; match && k < t.dim(); ++k) match = k == d || t.size(k) == ref_shape[k];
    LOOM_CHECK(match, "cat: shapes must match except in dim ", d, ", but tensor ", ref, " has shape ",
               ref_shape, " and tensor ", i, " has shape ", t.shape());
    out_shape[d] += t.size(d);
  }
  Tensor out = Tensor::empty(out_shape, {dtype, device});
  Backend& backend = backend_for(device);
  int64_t offset = 0;
  for (const Tensor& t : tensors) {
    if (skipped_by_cat(t)) continue;
    if (t.numel() > 0) backend.copy(t, out.narrow(d, offset, t.size(d)));
    offset += t.size(d);
  }
  return out;
}

}  // namespace

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  autograd::OpScope scope("cat", tensors);
  Tensor out = cat_impl(tensors, dim);
  if (scope.recording()) {
    // Each input's gradient is its slab of g (a view), in its own dtype; inputs cat skipped get empty ones.
    std::vector<Shape> shapes;
    std::vector<DType> dtypes;
    for (const Tensor& t : tensors) {
      shapes.push_back(t.shape());
      dtypes.push_back(t.dtype());
    }
    int64_t d = out.dim() == 1 ? 0 : wrap_dim(dim, out.dim(), "cat");
    scope.record({out}, [shapes = std::move(shapes), dtypes = std::move(dtypes), d](const Grads& g) {
      Grads grads;
      int64_t offset = 0;
      for (size_t i = 0; i < shapes.size(); ++i) {
        const Shape& s = shapes[i];
        if (s.size() == 1 && s[0] == 0) {
          grads.push_back(is_floating(dtypes[i]) ? zeros(s, {dtypes[i], g[0].device()}) : Tensor());
          continue;
        }
        grads.push_back(detail::reduce_grad(g[0].narrow(d, offset, s[d]), s, dtypes[i]));
        offset += s[d];
      }
      return grads;
    });
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  LOOM_CHECK(!tensors.empty(), "stack: expected a non-empty list of tensors");
  for (size_t i = 0; i < tensors.size(); ++i)
    LOOM_CHECK(tensors[i].defined(), "stack: tensor ", i, " is undefined");
  const int64_t d = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  for (size_t i = 0; i < tensors.size(); ++i) {
    LOOM_CHECK(tensors[i].shape() == tensors[0].shape(),
               "stack: expected tensors of equal shape, but tensor 0 has ", tensors[0].shape(),
               " and tensor ", i, " has ", tensors[i].shape());
  }
  autograd::OpScope scope("stack", tensors);
  std::vector<Tensor> expanded;
  expanded.reserve(tensors.size());
  for (const Tensor& t : tensors) expanded.push_back(t.unsqueeze(d));
  Tensor out = cat_impl(expanded, d);
  if (scope.recording()) {
    std::vector<DType> dtypes;
    for (const Tensor& t : tensors) dtypes.push_back(t.dtype());
    scope.record({out}, [dtypes = std::move(dtypes), d](const Grads& g) {
      Grads grads;
      for (size_t i = 0; i < dtypes.size(); ++i) {
        Tensor slab = g[0].select(d, static_cast<int64_t>(i));
        grads.push_back(detail::reduce_grad(slab, slab.shape(), dtypes[i]));
      }
      return grads;
    });
  }
  return out;
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  LOOM_CHECK(x.dim() > 0, "split: cannot split a 0-d tensor");
  const int64_t d = wrap_dim(dim, x.dim(), "split");
  const int64_t n = x.size(d);
  LOOM_CHECK(split_size > 0 || (split_size == 0 && n == 0),
             "split: split_size must be positive (0 only when the "
             "dim is empty), got ",
             split_size, " for dim ", d, " of shape ", x.shape());
  autograd::OpScope scope("split", {x});
  return record_pieces(scope, x, d, split_sizes(x, d, split_size));
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  LOOM_CHECK(x.dim() > 0, "split: cannot split a 0-d tensor");
  const int64_t d = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    LOOM_CHECK(s >= 0, "split: sizes must be non-negative, got ", list_str(sizes));
    total += s;
  }
  LOOM_CHECK(total == x.size(d), "split: sizes ", list_str(sizes), " sum to ", total, " but dim ", d,
             " of shape ", x.shape(), " has size ", x.size(d));
  autograd::OpScope scope("split", {x});
  std::vector<Tensor> pieces;
  int64_t start = 0;
  for (int64_t s : sizes) {
    pieces.push_back(x.narrow(d, start, s));
    start += s;
  }
  return record_pieces(scope, x, d, std::move(pieces));
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  LOOM_CHECK(chunks > 0, "chunk: chunks must be positive, got ", chunks);
  LOOM_CHECK(x.dim() > 0, "chunk: cannot chunk a 0-d tensor");
  const int64_t d = wrap_dim(dim, x.dim(), "chunk");
  const int64_t n = x.size(d);
  // An empty dim gives `chunks` empty pieces, as torch.chunk does.
  if (n == 0) return std::vector<Tensor>(static_cast<size_t>(chunks), x);
  autograd::OpScope scope("chunk", {x});
  return record_pieces(scope, x, d, split_sizes(x, d, (n + chunks - 1) / chunks));
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  check_same_device("gather", x, index);
  check_index_dtype("gather", index);
  LOOM_CHECK(index.dim() == x.dim(), "gather: index ", index.shape(), " and x ", x.shape(),
             " must have the same number of dims");
  const int64_t d = wrap_dim(dim, x.dim(), "gather");
  autograd::OpScope scope("gather", {x});
  if (scope.recording()) {
    Tensor out = gather(x, d, index);  // grad mode is off inside the scope: this call does not record
    // Repeated indices read one element several times, so their gradients add up.
    scope.record({out}, [si = scope.save(index), shape = x.shape(), d](const Grads& g) {
      return Grads{scatter_add(zeros(shape, g[0].options()), d, si.get(), g[0])};
    });
    return out;
  }
  if (x.dim() == 0) return gather(x.unsqueeze(0), 0, index.unsqueeze(0)).squeeze(0);
  for (int64_t k = 0; k < x.dim(); ++k) {
    LOOM_CHECK(k == d || index.size(k) <= x.size(k), "gather: index shape ", index.shape(),
               " exceeds x shape ", x.shape(), " in dim ", k, " (only dim ", d, " may be larger)");
  }
  check_index_range("gather", index, x, d);
  Tensor out = Tensor::empty(index.shape(), x.options());
  if (out.numel() > 0) backend_for(x.device()).gather(x, d, index, out);
  return out;
}

Tensor scatter(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  autograd::OpScope scope("scatter", {x, src});
  Tensor out = scatter_impl("scatter", x, dim, index, src, false);
  if (scope.recording()) {
    // x keeps its gradient where src did not overwrite it; src gets g where it was written. With repeated
    // indices one write wins and the gradient is not well defined (PyTorch gives every src element g too).
    bool need_x = scope.needs_grad(0), need_src = scope.needs_grad(1);
    scope.record({out}, [si = scope.save(index), d = wrap_dim(dim, x.dim(), "scatter"), src_shape = src.shape(),
                         need_x, need_src](const Grads& g) {
      const Tensor& index = si.get();
      return Grads{need_x ? scatter(g[0], d, index, zeros(index.shape(), g[0].options())) : Tensor(),
                   need_src ? src_grad(g[0], d, index, src_shape) : Tensor()};
    });
  }
  return out;
}

Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  autograd::OpScope scope("scatter_add", {x, src});
  Tensor out = scatter_impl("scatter_add", x, dim, index, src, true);
  if (scope.recording()) {
    bool need_src = scope.needs_grad(1);
    scope.record({out}, [si = scope.save(index), d = wrap_dim(dim, x.dim(), "scatter_add"), src_shape = src.shape(),
                         need_src](const Grads& g) {
      return Grads{g[0], need_src ? src_grad(g[0], d, si.get(), src_shape) : Tensor()};
    });
  }
  return out;
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  check_same_device("index_select", x, index);
  check_index_dtype("index_select", index);
  LOOM_CHECK(index.dim() <= 1, "index_select: index must be 0-d or 1-d, got shape ", index.shape());
  const int64_t d = wrap_dim(dim, x.dim(), "index_select");
  autograd::OpScope scope("index_select", {x});
  if (scope.recording()) {
    Tensor out = index_select(x, d, index);  // does not record: grad mode is off inside the scope
    // Repeated indices accumulate (index_add), as embedding's backward needs.
    scope.record({out}, [si = scope.save(index), shape = x.shape(), d](const Grads& g) {
      if (shape.empty()) return Grads{sum(g[0])};  // every index of a 0-d x reads its one element
      return Grads{index_add(zeros(shape, g[0].options()), d, si.get(), g[0])};
    });
    return out;
  }
  if (x.dim() == 0) {
    Tensor out = index_select(x.unsqueeze(0), 0, index);
    return out.numel() == 1 ? out.squeeze(0) : out;
  }
  Tensor idx = index.dim() == 0 ? index.unsqueeze(0) : index;
  check_index_range("index_select", idx, x, d);
  Shape shape = x.shape();
  shape[d] = idx.numel();
  Tensor out = Tensor::empty(shape, x.options());
  if (out.numel() > 0) backend_for(x.device()).index_select(x, d, idx, out);
  return out;
}

Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  check_same_device("index_add", x, index);
  check_same_device("index_add", x, src);
  check_index_dtype("index_add", index);
  LOOM_CHECK(src.dtype() == x.dtype(), "index_add: src dtype ", dtype_name(src.dtype()),
             " does not match x dtype ", dtype_name(x.dtype()));
  LOOM_CHECK(index.dim() <= 1, "index_add: index must be 0-d or 1-d, got shape ", index.shape());
  LOOM_CHECK(src.dim() == x.dim(), "index_add: src ", src.shape(), " and x ", x.shape(),
             " must have the same number of dims");
  const int64_t d = wrap_dim(dim, x.dim(), "index_add");
  autograd::OpScope scope("index_add", {x, src});
  if (scope.recording()) {
    Tensor out = index_add(x, d, index, src);  // does not record: grad mode is off inside the scope
    bool need_src = scope.needs_grad(1);
    scope.record({out}, [si = scope.save(index), d, need_src](const Grads& g) {
      return Grads{g[0], need_src ? index_select(g[0], d, si.get()) : Tensor()};
    });
    return out;
  }
  if (x.dim() == 0) return index_add(x.unsqueeze(0), 0, index, src.unsqueeze(0)).squeeze(0);
  Tensor idx = index.dim() == 0 ? index.unsqueeze(0) : index;
  Shape expected = x.shape();
  expected[d] = idx.numel();
  LOOM_CHECK(src.shape() == expected, "index_add: src shape ", src.shape(), " does not match ", expected,
             " (x shape ", x.shape(), " with dim ", d, " set to the ", idx.numel(), " indices)");
  check_index_range("index_add", idx, x, d);
  Tensor out = x.clone();
  if (src.numel() > 0) backend_for(x.device()).index_add(out, d, idx, src);
  return out;
}

ValuesIndices sort(const Tensor& x, int64_t dim, bool descending) {
  const int64_t d = wrap_dim(dim, x.dim(), "sort");
  autograd::OpScope scope("sort", {x});
  ValuesIndices r = sort_impl(x, d, descending);
  record_picked(scope, x, d, r);
  return r;
}

Tensor argsort(const Tensor& x, int64_t dim, bool descending) {
  NoGradGuard no_grad;  // only the indices are returned: nothing to differentiate
  return sort_impl(x, wrap_dim(dim, x.dim(), "argsort"), descending).indices;
}

ValuesIndices topk(const Tensor& x, int64_t k, int64_t dim, bool largest) {
  const int64_t d = wrap_dim(dim, x.dim(), "topk");
  const int64_t n = x.dim() == 0 ? 1 : x.size(d);
  LOOM_CHECK(k >= 0 && k <= n, "topk: k ", k, " is out of range [0, ", n, "] for dim ", d, " of ",
             describe(x));
  autograd::OpScope scope("topk", {x});
  ValuesIndices r;
  if (x.dim() == 0) {
    r = k == 1 ? ValuesIndices{x.clone(), zeros({}, {DType::Int64, x.device()})}
               : ValuesIndices{Tensor::empty({0}, x.options()), Tensor::empty({0}, {DType::Int64, x.device()})};
  } else {
    Shape shape = x.shape();
    shape[d] = k;
    r = ValuesIndices{Tensor::empty(shape, x.options()), Tensor::empty(shape, {DType::Int64, x.device()})};
    if (r.values.numel() > 0) backend_for(x.device()).topk(x, k, d, largest, r.values, r.indices);
  }
  record_picked(scope, x, d, r);
  return r;
}

Tensor one_hot(const Tensor& index, int64_t num_classes) {
  LOOM_CHECK(index.dtype() == DType::Int64, "one_hot: expected an int64 tensor, got ",
             dtype_name(index.dtype()));
  LOOM_CHECK(num_classes >= -1, "one_hot: num_classes must be non-negative or -1, got ", num_classes);
  LOOM_CHECK(num_classes >= 0 || index.numel() > 0,
             "one_hot: cannot infer num_classes from an empty tensor; pass num_classes");
  if (index.numel() > 0) {
    auto [lo, hi] = min_max(index);
    LOOM_CHECK(lo >= 0, "one_hot: class values must be non-negative, got ", lo);
    if (num_classes < 0) num_classes = hi + 1;
    LOOM_CHECK(hi < num_classes, "one_hot: class value ", hi, " is out of range for num_classes ",
               num_classes);
  }
  Shape shape = index.shape();
  shape.push_back(num_classes);
  const TensorOptions options{DType::Int64, index.device()};
  Tensor out = zeros(shape, options);
  if (index.numel() == 0) return out;
  Tensor idx = index.unsqueeze(-1);
  backend_for(index.device())
      .scatter(out, out.dim() - 1, idx, scalar_tensor(1, options).expand(idx.shape()), false);
  return out;
}

Tensor tril(const Tensor& x, int64_t diagonal) { return triangle("tril", x, diagonal, false); }
Tensor triu(const Tensor& x, int64_t diagonal) { return triangle("triu", x, diagonal, true); }

}  // namespace loom
