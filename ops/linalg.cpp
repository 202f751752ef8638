// matmul, bmm and linear: shape rules (torch.matmul's promotions and batch broadcasting) and the operand
// layouts the backend's batched GEMM accepts; every product is one backend bmm call.
#include "loom/ops/linalg.h"

#include <algorithm>

#include "loom/autograd/tape.h"
#include "loom/ops/backend.h"
#include "loom/ops/grad_helpers.h"
#include "loom/ops/reduce.h"

namespace loom {
namespace {

using Grads = std::vector<Tensor>;

void check_operands(const Tensor& a, const Tensor& b, const char* op) {
  LOOM_CHECK(a.defined() && b.defined(), op, ": input tensor is undefined");
  LOOM_CHECK(a.device() == b.device(), op, ": tensors on ", a.device(), " and ", b.device());
  LOOM_CHECK(is_floating(a.dtype()) && is_floating(b.dtype()), op,
             ": expected float32 or float64 tensors, got ", dtype_name(a.dtype()), " and ",
             dtype_name(b.dtype()));
  LOOM_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch (", dtype_name(a.dtype()), " and ",
             dtype_name(b.dtype()), ")");
}

// True when BLAS can read t's last two dims in place: one of them has unit stride and the other is a legal
// leading dimension (size-1 dims may have any stride).
bool blas_readable(const Tensor& t) {
  int64_t rows = t.size(-2), cols = t.size(-1), sr = t.stride(-2), sc = t.stride(-1);
  bool row_major = (cols == 1 || sc == 1) && (rows == 1 || sr >= std::max<int64_t>(cols, 1));
  bool col_major = (rows == 1 || sr == 1) && (cols == 1 || sc >= std::max<int64_t>(rows, 1));
  return row_major || col_major;
}

// t (at least 2-d) broadcast to batch + its last two dims, as a 3-d [B, rows, cols] tensor with one batch
// stride. Views when the batch dims flatten to one stride (stride 0 for a broadcast operand), else a copy.
Tensor as_batched(const Tensor& t, const Shape& batch) {
  Tensor m = blas_readable(t) ? t : t.contiguous();
  Shape shape = batch;
  shape.push_back(m.size(-2));
  shape.push_back(m.size(-1));
  Tensor e = m.expand(shape);
  int64_t n = shape_numel(batch), stride = 0, prev = -1;
  bool flat = true;
  for (int64_t d = static_cast<int64_t>(batch.size()) - 1; d >= 0; --d) {
    if (batch[d] == 1) continue;
    if (prev < 0) {
      stride = e.stride(d);
    } else {
      flat = flat && e.stride(d) == e.stride(prev) * batch[prev];
    }
    prev = d;
  }
  if (!flat) {
    e = e.contiguous();
    stride = e.size(-2) * e.size(-1);
  }
  return e.as_strided({n, e.size(-2), e.size(-1)}, {stride, e.stride(-2), e.stride(-1)}, e.offset());
}

// The row stride of a ([..., M, K]) read as one row-major [B * M, K] matrix without a copy, or -1 when its
// batch and row dims do not merge into one stride.
int64_t folded_row_stride(const Tensor& a) {
  int64_t k = a.size(-1);
  if (k != 1 && a.stride(-1) != 1) return -1;
  int64_t innermost = -1, inner = -1;  // non-1 dims among batch and rows: the innermost, the last one visited
  for (int64_t d = a.dim() - 2; d >= 0; --d) {
    if (a.size(d) == 1) continue;
    if (inner >= 0 && a.stride(d) != a.stride(inner) * a.size(inner)) return -1;
    if (innermost < 0) innermost = d;
    inner = d;
  }
  int64_t ld = innermost < 0 ? std::max<int64_t>(k, 1) : a.stride(innermost);
  return ld >= std::max<int64_t>(k, 1) ? ld : -1;
}

Tensor run_bmm(const Tensor& a3, const Tensor& b3) {
  Tensor out = Tensor::empty({a3.size(0), a3.size(1), b3.size(2)}, a3.options());
  backend_for(a3.device()).bmm(a3, b3, out, 1.0, 0.0);
  return out;
}

// The batch dims of a matmul operand promoted to at least 2-d.
Shape batch_of(const Shape& s) {
  return s.size() <= 2 ? Shape{} : Shape(s.begin(), s.end() - 2);
}

// matmul's operands promoted as torch.matmul promotes them: a 1-d a is a row, a 1-d b a column.
Tensor promote_a(const Tensor& a) { return a.dim() == 1 ? a.unsqueeze(0) : a; }   // [K] -> [1, K]
Tensor promote_b(const Tensor& b) { return b.dim() == 1 ? b.unsqueeze(-1) : b; }  // [K] -> [K, 1]

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_operands(a, b, "matmul");
  LOOM_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: both arguments need to be at least 1-d, got shapes ",
             a.shape(), " and ", b.shape());
  autograd::OpScope scope("matmul", {a, b});
  Tensor a2 = promote_a(a);
  Tensor b2 = promote_b(b);
  int64_t m = a2.size(-2), k = a2.size(-1), n = b2.size(-1);
  LOOM_CHECK(b2.size(-2) == k, "matmul: shapes ", a.shape(), " and ", b.shape(), " cannot be multiplied (", k,
             " != ", b2.size(-2), ")");
  Shape batch_a = batch_of(a2.shape()), batch_b = batch_of(b2.shape());
  Shape batch;
  try {
    batch = broadcast_shapes(batch_a, batch_b, "matmul");
  } catch (const Error&) {
    LOOM_FAIL("matmul: the batch dims of shapes ", a.shape(), " and ", b.shape(),
              " cannot be broadcast together");
  }

  Tensor out;
  int64_t ld = b2.dim() == 2 && a2.dim() > 2 ? folded_row_stride(a2) : -1;
  if (ld > 0) {
    // [..., M, K] @ [K, N]: one GEMM over all rows.
    Tensor rows = a2.as_strided({1, shape_numel(batch) * m, k}, {0, ld, a2.stride(-1)}, a2.offset());
    out = run_bmm(rows, as_batched(b2, Shape{1}));
  } else {
    out = run_bmm(as_batched(a2, batch), as_batched(b2, batch));
  }
  Shape shape = batch;
  if (a.dim() > 1) shape.push_back(m);
  if (b.dim() > 1) shape.push_back(n);
  out = out.view(shape);
  if (!scope.recording()) return out;

  // With g2 = g promoted like the output ([..., M, N]): grad a2 = g2 @ b2^T and grad b2 = a2^T @ g2, taken
  // through transposed views (the GEMM reads them in place), summed over the batch dims broadcasting stretched.
  // When b2 has no batch of its own (x @ W), its gradient is one GEMM over all rows, [K, B*M] @ [B*M, N],
  // instead of B products and a reduction.
  bool need_a = scope.needs_grad(0), need_b = scope.needs_grad(1);
  scope.record({out}, [sa = scope.save(need_b ? a : Tensor()), sb = scope.save(need_a ? b : Tensor()), need_a,
                       need_b, shape_a = a.shape(), shape_b = b.shape(), a2_shape = a2.shape(),
                       b2_shape = b2.shape(), batch, dtype = a.dtype()](const Grads& g) {
    Tensor g2 = g[0];
    if (shape_a.size() == 1) g2 = g2.unsqueeze(static_cast<int64_t>(batch.size()));
    if (shape_b.size() == 1) g2 = g2.unsqueeze(-1);
    Tensor ga, gb;
    if (need_a) {
      Tensor b2 = promote_b(sb.get());
      ga = detail::reduce_grad(matmul(g2, b2.transpose(-1, -2)), a2_shape, dtype).reshape(shape_a);
    }
    if (need_b) {
      Tensor a2 = promote_a(sa.get());
      if (shape_numel(batch_of(b2_shape)) == 1 && shape_numel(batch) > 1) {
        int64_t rows = shape_numel(batch) * a2.size(-2), k = a2.size(-1), n = g2.size(-1);
        gb = matmul(a2.reshape({rows, k}).t(), g2.reshape({rows, n})).view(b2_shape);
      } else {
        gb = detail::reduce_grad(matmul(a2.transpose(-1, -2), g2), b2_shape, dtype);
      }
      gb = gb.reshape(shape_b);
    }
    return Grads{ga, gb};
  });
  return out;
}

Tensor bmm(const Tensor& a, const Tensor& b) {
  check_operands(a, b, "bmm");
  LOOM_CHECK(a.dim() == 3 && b.dim() == 3, "bmm: expected 3-d tensors, got shapes ", a.shape(), " and ",
             b.shape());
  LOOM_CHECK(a.size(0) == b.size(0), "bmm: batch sizes differ: shapes ", a.shape(), " and ", b.shape());
  LOOM_CHECK(a.size(2) == b.size(1), "bmm: shapes ", a.shape(), " and ", b.shape(), " cannot be multiplied (",
             a.size(2), " != ", b.size(1), ")");
  autograd::OpScope scope("bmm", {a, b});
  Shape batch{a.size(0)};
  Tensor out = run_bmm(as_batched(a, batch), as_batched(b, batch));
  if (scope.recording()) {
    bool need_a = scope.needs_grad(0), need_b = scope.needs_grad(1);
    scope.record({out}, [sa = scope.save(need_b ? a : Tensor()), sb = scope.save(need_a ? b : Tensor()), need_a,
                         need_b](const Grads& g) {
      return Grads{need_a ? bmm(g[0], sb.get().transpose(1, 2)) : Tensor(),
                   need_b ? bmm(sa.get().transpose(1, 2), g[0]) : Tensor()};
    });
  }
  return out;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_operands(x, weight, "linear");
  LOOM_CHECK(weight.dim() == 2, "linear: weight must be 2-d [out_features, in_features], got shape ",
             weight.shape());
  LOOM_CHECK(x.dim() >= 1, "linear: input must be at least 1-d, got shape ", x.shape());
  int64_t in = weight.size(1), out_features = weight.size(0);
  LOOM_CHECK(x.size(-1) == in, "linear: input shape ", x.shape(), " and weight shape ", weight.shape(),
             " cannot be multiplied (", x.size(-1), " != ", in, ")");
  autograd::OpScope scope("linear", {x, weight, bias});
  Shape shape(x.shape().begin(), x.shape().end() - 1);
  Tensor rows = x.reshape({shape_numel(shape), in});
  shape.push_back(out_features);
  if (!blas_readable(rows)) rows = rows.contiguous();
  Tensor wt = weight.t();  // [in, out] read as a transposed view: no copy
  if (!blas_readable(wt)) wt = weight.contiguous().t();
  Tensor out = Tensor::empty({1, rows.size(0), out_features}, x.options());
  double beta = 0.0;
  if (bias.defined()) {
    check_operands(x, bias, "linear");
    LOOM_CHECK(bias.dim() <= 1 && (bias.numel() == out_features || bias.numel() == 1),
               "linear: bias must have shape [", out_features, "], got ", bias.shape());
    // Pre-filling out with the broadcast bias and accumulating with beta = 1 adds it inside the GEMM's write
    // pass.
    out.copy_(bias.reshape({-1}).expand({1, rows.size(0), out_features}));
    beta = 1.0;
  }
  backend_for(x.device()).bmm(rows.unsqueeze(0), wt.unsqueeze(0), out, 1.0, beta);
  out = out.view(shape);
  if (!scope.recording()) return out;

  // With the leading dims flattened into R rows: grad x = g @ W ([R, out] @ [out, in]), grad W = g^T @ x
  // ([out, R] @ [R, in]: one GEMM whose inner dim runs over every row, rather than a batched product and a
  // sum), grad bias = g summed over the rows.
  bool need_x = scope.needs_grad(0), need_w = scope.needs_grad(1), need_bias = scope.needs_grad(2);
  scope.record({out}, [sx = scope.save(need_w ? x : Tensor()), sw = scope.save(need_x ? weight : Tensor()), need_x,
                       need_w, need_bias, x_shape = x.shape(), bias_shape = bias.defined() ? bias.shape() : Shape{},
                       dtype = x.dtype(), n_rows = rows.size(0), in, out_features](const Grads& g) {
    Tensor g_rows = g[0].reshape({n_rows, out_features});
    Tensor gx, gw, gb;
    if (need_x) gx = matmul(g_rows, sw.get()).view(x_shape);
    if (need_w) gw = matmul(g_rows.t(), sx.get().reshape({n_rows, in}));
    if (need_bias) gb = detail::reduce_grad(sum(g_rows, {0}), bias_shape, dtype);
    return Grads{gx, gw, gb};
  });
  return out;
}

}  // namespace loom
