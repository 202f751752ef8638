// Reductions and scans: dim lists, keepdim and PyTorch's dtype rules; the backend does the arithmetic into a
// keepdim-shaped output, which is then viewed without the reduced dims.
#include "loom/ops/reduce.h"

#include <algorithm>

#include "loom/autograd/tape.h"
#include "loom/ops/backend.h"
#include "loom/ops/elementwise.h"

namespace loom {
namespace {

// Sorted, unique reduced dims of x for a user's dim list (an empty list means every dim). A 0-d tensor
// accepts dim 0 or -1 and is reduced as a 1-element vector, so the kernels always see at least one dim.
Shape reduced_dims(const Tensor& x, const std::vector<int64_t>& dims, const char* op) {
  std::vector<bool> seen(static_cast<size_t>(std::max<int64_t>(x.dim(), 1)), dims.empty());
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, x.dim(), op);
    LOOM_CHECK(!seen[w], op, ": dim ", w, " appears multiple times in the list of dims");
    seen[w] = true;
  }
  Shape out;
  for (size_t d = 0; d < seen.size(); ++d)
    if (seen[d]) out.push_back(static_cast<int64_t>(d));
  return out;
}

// x as the kernels see it: at least 1-d.
Tensor at_least_1d(const Tensor& x) { return x.dim() == 0 ? x.as_strided({1}, {1}, x.offset()) : x; }

// The result shape: x's shape with the reduced dims dropped (or kept as 1).
Shape result_shape(const Tensor& x, const Shape& dims, bool keepdim) {
  if (x.dim() == 0) return {};
  Shape out;
  size_t k = 0;
  for (int64_t d = 0; d < x.dim(); ++d) {
    bool reduced = k < dims.size() && dims[k] == d;
    if (reduced) ++k;
    if (!reduced)
      out.push_back(x.size(d));
    else if (keepdim)
      out.push_back(1);
  }
  return out;
}

Tensor reduce_op(ReduceOp op, const char* name, const Tensor& x, const std::vector<int64_t>& dims,
                 bool keepdim, DType out_dtype, double param = 0) {
  LOOM_CHECK(x.defined(), name, ": input tensor is undefined");
  Tensor in = at_least_1d(x);
  Shape rd = reduced_dims(x, dims, name);
  Shape keep = in.shape();
  for (int64_t d : rd) {
    LOOM_CHECK(in.size(d) > 0 || (op != ReduceOp::Max && op != ReduceOp::Min), name,
               ": expected reduction dim ", d, " to have non-zero size (shape ", x.shape(),
               "); max and min of nothing are undefined");
    keep[d] = 1;
  }
  Tensor out = Tensor::empty(keep, {out_dtype, x.device()});
  backend_for(x.device()).reduce(op, in, rd, out, param);
  return out.view(result_shape(x, rd, keepdim));
}

// Sums and products of bool and integers accumulate in int64, as in PyTorch.
DType widened(DType dtype) { return is_floating(dtype) ? dtype : kInt64; }

void check_floating(const Tensor& x, const char* op) {
  LOOM_CHECK(x.defined(), op, ": input tensor is undefined");
  LOOM_CHECK(is_floating(x.dtype()), op, ": expected a floating dtype (float32 or float64), got ",
             dtype_name(x.dtype()));
}

ValuesIndices arg_reduce_op(ArgReduceOp op, const char* name, const Tensor& x, int64_t dim, bool keepdim) {
  LOOM_CHECK(x.defined(), name, ": input tensor is undefined");
  Tensor in = at_least_1d(x);
  int64_t d = wrap_dim(dim, x.dim(), name);
  LOOM_CHECK(in.size(d) > 0, name, ": expected reduction dim ", d, " to have non-zero size (shape ",
             x.shape(), ")");
  Shape keep = in.shape();
  keep[d] = 1;
  Tensor values = Tensor::empty(keep, x.options());
  Tensor indices = Tensor::empty(keep, {kInt64, x.device()});
  backend_for(x.device()).arg_reduce(op, in, d, values, indices);
  Shape shape = result_shape(x, Shape{d}, keepdim);
  return {values.view(shape), indices.view(shape)};
}

Tensor scan_op(ScanOp op, const char* name, const Tensor& x, int64_t dim) {
  LOOM_CHECK(x.defined(), name, ": input tensor is undefined");
  Tensor in = at_least_1d(x);
  int64_t d = wrap_dim(dim, x.dim(), name);
  Tensor out = Tensor::empty(in.shape(), {widened(x.dtype()), x.device()});
  backend_for(x.device()).scan(op, in, d, out);
  return out.view(x.shape());
}

// The gradient of a reduction's output, broadcast back over x's shape: the reduced dims are re-inserted as
// size 1 (unless keepdim kept them) and expanded.
Tensor expand_reduced(const Tensor& g, const Shape& x_shape, const Shape& reduced, bool keepdim) {
  Tensor r = g;
  if (!keepdim && !x_shape.empty())
    for (int64_t d : reduced) r = r.unsqueeze(d);
  return r.expand(x_shape);
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  LOOM_CHECK(x.defined(), "sum: input tensor is undefined");
  autograd::OpScope scope("sum", {x});
  Tensor out = reduce_op(ReduceOp::Sum, "sum", x, dims, keepdim, widened(x.dtype()));
  if (scope.recording()) {
    scope.record({out}, [shape = x.shape(), rd = reduced_dims(x, dims, "sum"), keepdim](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{expand_reduced(g[0], shape, rd, keepdim)};
    });
  }
  return out;
}

Tensor sum_to_size(const Tensor& x, const Shape& shape) {
  LOOM_CHECK(x.defined(), "sum_to_size: input tensor is undefined");
  LOOM_CHECK(shape.size() <= x.shape().size(), "sum_to_size: shape ", shape, " has more dims than ", describe(x));
  size_t lead = x.shape().size() - shape.size();
  std::vector<int64_t> dims;
  for (size_t i = 0; i < x.shape().size(); ++i) {
    if (i < lead) {
      dims.push_back(static_cast<int64_t>(i));
      continue;
    }
    int64_t want = shape[i - lead], have = x.shape()[i];
    LOOM_CHECK(want == have || want == 1, "sum_to_size: shape ", shape, " does not broadcast to ", describe(x));
    if (want == 1 && have != 1) dims.push_back(static_cast<int64_t>(i));
  }
  if (dims.empty()) return x.shape() == shape ? x : x.view(shape);
  return sum(x, dims, /*keepdim=*/true).view(shape);
}

Tensor prod(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  LOOM_CHECK(x.defined(), "prod: input tensor is undefined");
  return reduce_op(ReduceOp::Prod, "prod", x, dims, keepdim, widened(x.dtype()));
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_floating(x, "mean");
  autograd::OpScope scope("mean", {x});
  Tensor out = reduce_op(ReduceOp::Mean, "mean", x, dims, keepdim, x.dtype());
  if (scope.recording()) {
    Shape rd = reduced_dims(x, dims, "mean");
    int64_t count = 1;
    for (int64_t d : rd) count *= x.dim() == 0 ? 1 : x.size(d);
    scope.record({out}, [shape = x.shape(), rd, keepdim, count](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{expand_reduced(div(g[0], static_cast<double>(count)), shape, rd, keepdim)};
    });
  }
  return out;
}

Tensor var(const Tensor& x, const std::vector<int64_t>& dims, double correction, bool keepdim) {
  check_floating(x, "var");
  LOOM_CHECK(correction >= 0, "var: correction must be non-negative, got ", correction);
  return reduce_op(ReduceOp::Var, "var", x, dims, keepdim, x.dtype(), correction);
}

Tensor logsumexp(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  LOOM_CHECK(x.defined(), "logsumexp: input tensor is undefined");
  // As in PyTorch, bool and integer inputs are reduced as float32.
  Tensor in = is_floating(x.dtype()) ? x : x.to(kFloat32);
  return reduce_op(ReduceOp::LogSumExp, "logsumexp", in, dims, keepdim, in.dtype());
}

Tensor amax(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  LOOM_CHECK(x.defined(), "amax: input tensor is undefined");
  return reduce_op(ReduceOp::Max, "amax", x, dims, keepdim, x.dtype());
}

Tensor amin(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  LOOM_CHECK(x.defined(), "amin: input tensor is undefined");
  return reduce_op(ReduceOp::Min, "amin", x, dims, keepdim, x.dtype());
}

Tensor any(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce_op(ReduceOp::Any, "any", x, dims, keepdim, kBool);
}

Tensor all(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce_op(ReduceOp::All, "all", x, dims, keepdim, kBool);
}

ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim) {
  return arg_reduce_op(ArgReduceOp::Max, "max", x, dim, keepdim);
}

ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim) {
  return arg_reduce_op(ArgReduceOp::Min, "min", x, dim, keepdim);
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  return arg_reduce_op(ArgReduceOp::Max, "argmax", x, dim, keepdim).indices;
}

Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) {
  return arg_reduce_op(ArgReduceOp::Min, "argmin", x, dim, keepdim).indices;
}

Tensor cumsum(const Tensor& x, int64_t dim) { return scan_op(ScanOp::Cumsum, "cumsum", x, dim); }

Tensor cumprod(const Tensor& x, int64_t dim) { return scan_op(ScanOp::Cumprod, "cumprod", x, dim); }

}  // namespace loom
