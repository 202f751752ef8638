// Reductions and scans: dim lists, keepdim and PyTorch's dtype rules; the backend does the arithmetic into a
// keepdim-shaped output, which is then viewed without the reduced dims.
#include "loom/ops/reduce.h"

#include <algorithm>

#include "loom/autograd/tape.h"
#include "loom/ops/backend.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/factory.h"
#include "loom/ops/shape_ops.h"

namespace loom {
namespace {

using Grads = std::vector<Tensor>;

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

// A reduction's output (or its gradient) with the reduced dims re-inserted as size 1 unless keepdim kept
// them, so that it broadcasts against x.
Tensor keepdim_shaped(const Tensor& t, const Shape& x_shape, const Shape& reduced, bool keepdim) {
  Tensor r = t;
  if (!keepdim && !x_shape.empty())
    for (int64_t d : reduced) r = r.unsqueeze(d);
  return r;
}

// The gradient of a reduction's output, broadcast back over x's shape.
Tensor expand_reduced(const Tensor& g, const Shape& x_shape, const Shape& reduced, bool keepdim) {
  return keepdim_shaped(g, x_shape, reduced, keepdim).expand(x_shape);
}

std::vector<int64_t> dim_list(const Shape& dims) { return std::vector<int64_t>(dims.begin(), dims.end()); }

// Number of elements each output of a reduction over `reduced` combines.
int64_t reduced_count(const Shape& x_shape, const Shape& reduced) {
  int64_t n = 1;
  for (int64_t d : reduced) n *= x_shape.empty() ? 1 : x_shape[d];
  return n;
}

// t reversed along dim d. Strides are never negative in Loom, so this gathers (used by the scans' backward,
// which accumulates from the end).
Tensor flip(const Tensor& t, int64_t d) {
  int64_t n = t.size(d);
  return index_select(t, d, arange(static_cast<double>(n - 1), -1.0, -1.0, {kInt64, t.device()}));
}

// out[i] = sum_{j >= i} t[j] along d. Flipping rather than total - cumsum + t: the subtraction would lose the
// small tail sums of a long float32 scan to cancellation.
Tensor reverse_cumsum(const Tensor& t, int64_t d) { return flip(cumsum(flip(t, d), d), d); }

// The gradient of max/min with dim, of sort and of topk: g lands at the positions `indices` took the values
// from (distinct positions along d, so a scatter suffices).
Tensor scatter_to_positions(const Shape& x_shape, int64_t d, const Tensor& indices, const Tensor& g) {
  return scatter(zeros(x_shape, g.options()), d, indices, g);
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
  autograd::OpScope scope("prod", {x});
  Tensor out = reduce_op(ReduceOp::Prod, "prod", x, dims, keepdim, widened(x.dtype()));
  if (scope.recording()) {
    // d prod / d x_i is the product of the other elements. Dividing the product by x_i would give 0/0 at a
    // zero, so count the zeros of each reduced slice instead (as PyTorch): with none, the gradient is
    // prod / x_i; with exactly one, only the zero gets the product of the nonzeros; with more, every partial
    // product contains a zero.
    scope.record({out}, [sx = scope.save(x), rd = reduced_dims(x, dims, "prod"), keepdim](const Grads& g) {
      const Tensor& xv = sx.get();
      std::vector<int64_t> rdl = dim_list(rd);
      Tensor is_zero = eq(xv, 0.0);
      Tensor zero_count = sum(is_zero, rdl, /*keepdim=*/true);
      Tensor nonzero = masked_fill(xv, is_zero, 1.0);
      Tensor gp = mul(keepdim_shaped(g[0], xv.shape(), rd, keepdim), prod(nonzero, rdl, /*keepdim=*/true));
      return Grads{where(is_zero, mul(gp, eq(zero_count, 1.0)), mul(div(gp, nonzero), eq(zero_count, 0.0)))};
    });
  }
  return out;
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
  autograd::OpScope scope("var", {x});
  Tensor out = reduce_op(ReduceOp::Var, "var", x, dims, keepdim, x.dtype(), correction);
  if (scope.recording()) {
    // d var / d x_i = 2 (x_i - mean) / (N - correction); the mean's own dependence on x_i cancels because the
    // deviations sum to zero. The divisor is clamped at 0 as in the forward, so N <= correction gives inf/nan.
    Shape rd = reduced_dims(x, dims, "var");
    double scale = 2.0 / std::max(0.0, static_cast<double>(reduced_count(x.shape(), rd)) - correction);
    scope.record({out}, [sx = scope.save(x), rd, keepdim, scale](const Grads& g) {
      const Tensor& xv = sx.get();
      Tensor centered = sub(xv, mean(xv, dim_list(rd), /*keepdim=*/true));
      return Grads{mul(centered, mul(keepdim_shaped(g[0], xv.shape(), rd, keepdim), scale))};
    });
  }
  return out;
}

Tensor logsumexp(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  LOOM_CHECK(x.defined(), "logsumexp: input tensor is undefined");
  autograd::OpScope scope("logsumexp", {x});
  // As in PyTorch, bool and integer inputs are reduced as float32 (and never require grad).
  Tensor in = is_floating(x.dtype()) ? x : x.to(kFloat32);
  Tensor out = reduce_op(ReduceOp::LogSumExp, "logsumexp", in, dims, keepdim, in.dtype());
  if (scope.recording()) {
    // The gradient is softmax over the reduced dims: exp(x - logsumexp).
    scope.record({out}, [sx = scope.save(x), so = scope.save(out), rd = reduced_dims(x, dims, "logsumexp"),
                         keepdim](const Grads& g) {
      const Tensor& xv = sx.get();
      Tensor soft = exp(sub(xv, keepdim_shaped(so.get(), xv.shape(), rd, keepdim)));
      return Grads{mul(keepdim_shaped(g[0], xv.shape(), rd, keepdim), soft)};
    });
  }
  return out;
}

namespace {

// amax / amin: the gradient goes to every element equal to the extremum, split evenly among ties (as PyTorch
// does, so that the gradient of amax over [1, 1] is [0.5, 0.5] and sums to the output's).
Tensor extremum(ReduceOp op, const char* name, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  LOOM_CHECK(x.defined(), name, ": input tensor is undefined");
  autograd::OpScope scope(name, {x});
  Tensor out = reduce_op(op, name, x, dims, keepdim, x.dtype());
  if (scope.recording()) {
    scope.record({out}, [sx = scope.save(x), so = scope.save(out), rd = reduced_dims(x, dims, name),
                         keepdim](const Grads& g) {
      const Tensor& xv = sx.get();
      Tensor hit = eq(xv, keepdim_shaped(so.get(), xv.shape(), rd, keepdim));
      Tensor ties = sum(hit, dim_list(rd), /*keepdim=*/true);
      return Grads{mul(div(keepdim_shaped(g[0], xv.shape(), rd, keepdim), ties), hit)};
    });
  }
  return out;
}

// max / min with dim: values get the gradient at the position their index names; indices get none.
ValuesIndices extremum_with_index(ArgReduceOp op, const char* name, const Tensor& x, int64_t dim, bool keepdim) {
  LOOM_CHECK(x.defined(), name, ": input tensor is undefined");
  autograd::OpScope scope(name, {x});
  ValuesIndices r = arg_reduce_op(op, name, x, dim, keepdim);
  if (scope.recording()) {
    int64_t d = wrap_dim(dim, x.dim(), name);
    scope.record({r.values, r.indices}, [si = scope.save(r.indices), shape = x.shape(), d, keepdim](const Grads& g) {
      return Grads{scatter_to_positions(shape, d, keepdim_shaped(si.get(), shape, Shape{d}, keepdim),
                                        keepdim_shaped(g[0], shape, Shape{d}, keepdim))};
    });
  }
  return r;
}

}  // namespace

Tensor amax(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return extremum(ReduceOp::Max, "amax", x, dims, keepdim);
}

Tensor amin(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return extremum(ReduceOp::Min, "amin", x, dims, keepdim);
}

Tensor any(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce_op(ReduceOp::Any, "any", x, dims, keepdim, kBool);
}

Tensor all(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce_op(ReduceOp::All, "all", x, dims, keepdim, kBool);
}

ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim) {
  return extremum_with_index(ArgReduceOp::Max, "max", x, dim, keepdim);
}

ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim) {
  return extremum_with_index(ArgReduceOp::Min, "min", x, dim, keepdim);
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  return arg_reduce_op(ArgReduceOp::Max, "argmax", x, dim, keepdim).indices;
}

Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) {
  return arg_reduce_op(ArgReduceOp::Min, "argmin", x, dim, keepdim).indices;
}

Tensor cumsum(const Tensor& x, int64_t dim) {
  LOOM_CHECK(x.defined(), "cumsum: input tensor is undefined");
  autograd::OpScope scope("cumsum", {x});
  Tensor out = scan_op(ScanOp::Cumsum, "cumsum", x, dim);
  if (scope.recording()) {
    scope.record({out}, [d = wrap_dim(dim, x.dim(), "cumsum"), zero_d = x.dim() == 0](const Grads& g) {
      return Grads{zero_d ? g[0] : reverse_cumsum(g[0], d)};
    });
  }
  return out;
}

Tensor cumprod(const Tensor& x, int64_t dim) {
  LOOM_CHECK(x.defined(), "cumprod: input tensor is undefined");
  autograd::OpScope scope("cumprod", {x});
  Tensor out = scan_op(ScanOp::Cumprod, "cumprod", x, dim);
  if (scope.recording()) {
    // grad_i = sum_{k >= i} g_k prod_{j <= k, j != i} x_j. Before the first zero of a slice x_i != 0, so that
    // is reverse_cumsum(g * out)_i / x_i (terms with k past the zero vanish with out_k, as they should). At
    // the first zero z it is reverse_cumsum(g * cumprod(x with x_z := 1))_z. After z every partial product
    // contains x_z = 0. Exact with any number of zeros, and no division by zero.
    scope.record({out}, [sx = scope.save(x), so = scope.save(out), d = wrap_dim(dim, x.dim(), "cumprod"),
                         zero_d = x.dim() == 0](const Grads& g) {
      if (zero_d) return Grads{g[0]};
      const Tensor& xv = sx.get();
      Tensor is_zero = eq(xv, 0.0);
      Tensor zeros_so_far = cumsum(is_zero, d);  // int64
      Tensor before_zero = eq(zeros_so_far, 0.0);
      Tensor first_zero = logical_and(is_zero, eq(zeros_so_far, 1.0));
      Tensor safe_x = masked_fill(xv, is_zero, 1.0);
      Tensor before = div(reverse_cumsum(mul(g[0], so.get()), d), safe_x);
      Tensor at_zero = reverse_cumsum(mul(g[0], cumprod(masked_fill(xv, first_zero, 1.0), d)), d);
      return Grads{where(before_zero, before, mul(at_zero, first_zero))};
    });
  }
  return out;
}

}  // namespace loom
