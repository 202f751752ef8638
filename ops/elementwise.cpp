// Elementwise ops: dtype promotion, broadcasting and argument checks, then one backend kernel call.
#include "loom/ops/elementwise.h"

#include <cmath>

#include "loom/autograd/grad_mode.h"
#include "loom/autograd/tape.h"
#include "loom/ops/backend.h"
#include "loom/ops/factory.h"
#include "loom/ops/grad_helpers.h"
#include "loom/ops/reduce.h"

namespace loom {
namespace {

using Grads = std::vector<Tensor>;

void check_defined(const char* op, const Tensor& t) {
  LOOM_CHECK(t.defined(), op, ": undefined tensor argument");
}

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  LOOM_CHECK(a.device() == b.device(), op, ": tensors on ", a.device(), " and ", b.device());
}

// bool < integral < floating.
int category(DType d) { return d == DType::Bool ? 0 : is_integral(d) ? 1 : 2; }

// PyTorch's result type: a 0-d tensor only decides the dtype when it belongs to a higher category than the
// dimensioned operand (float32 [n] + float64 0-d stays float32; int64 [n] + float64 0-d is float64).
DType result_type(const Tensor& a, const Tensor& b) {
  bool a0 = a.dim() == 0, b0 = b.dim() == 0;
  if (a0 == b0) return promote_types(a.dtype(), b.dtype());
  const Tensor& dimmed = a0 ? b : a;
  const Tensor& zero_d = a0 ? a : b;
  return category(zero_d.dtype()) > category(dimmed.dtype()) ? zero_d.dtype() : dimmed.dtype();
}

// The dtype a Python-like scalar takes next to a tensor of dtype t: the tensor's, except that a fractional
// (or non-finite) scalar makes integral and bool tensors float32, and an integral scalar makes bool tensors
// int64.
DType scalar_result_type(DType t, double s) {
  if (is_floating(t)) return t;
  if (!std::isfinite(s) || s != std::trunc(s)) return DType::Float32;
  return t == DType::Bool ? DType::Int64 : t;
}

// The computation dtype of a binary op on operands of dtype `common` (their result type).
DType compute_dtype(BinaryOp op, DType common) {
  if (op == BinaryOp::Div && !is_floating(common)) return DType::Float32;
  if (common == DType::Bool) {
    LOOM_CHECK(op != BinaryOp::Sub, "sub: subtraction of bool tensors is not supported (use logical ops)");
    LOOM_CHECK(op != BinaryOp::Pow, "pow: bool tensors are not supported");
  }
  return common;
}

Tensor binary_with_dtype(BinaryOp op, const Tensor& a, const Tensor& b, DType common) {
  // The conversions and broadcast views below are plumbing, never tape entries (comparisons have no OpScope
  // to pause recording for them).
  NoGradGuard no_grad;
  const char* name = binary_op_name(op);
  DType compute = compute_dtype(op, common);
  Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  DType out_dtype = is_comparison(op) ? DType::Bool : compute;
  Tensor out = Tensor::empty(shape, {out_dtype, a.device()});
  // Convert before expanding, so a broadcast operand is converted once rather than once per output element.
  backend_for(a.device()).binary(op, a.to(compute).expand(shape), b.to(compute).expand(shape), out);
  return out;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_op_name(op);
  check_defined(name, a);
  check_defined(name, b);
  check_same_device(name, a, b);
  if (op == BinaryOp::LogicalAnd || op == BinaryOp::LogicalOr) {
    LOOM_CHECK(a.dtype() == DType::Bool && b.dtype() == DType::Bool, name, ": expected bool tensors, got ",
               describe(a), " and ", describe(b));
  }
  return binary_with_dtype(op, a, b, result_type(a, b));
}

// A 0-d zero of t's dtype and device: where(cond, zero_of(g), g) zeroes a gradient where cond holds.
Tensor zero_of(const Tensor& t) { return scalar_tensor(0.0, t.options()); }

// A 0-d tensor holding s in the dtype s takes next to `t`.
Tensor scalar_like(const Tensor& t, double s) {
  return scalar_tensor(s, {scalar_result_type(t.dtype(), s), t.device()});
}

Tensor binary_scalar(BinaryOp op, const Tensor& a, double b) {
  check_defined(binary_op_name(op), a);
  Tensor bt = scalar_like(a, b);
  return binary_with_dtype(op, a, bt, bt.dtype());
}

Tensor scalar_binary(BinaryOp op, double a, const Tensor& b) {
  check_defined(binary_op_name(op), b);
  Tensor at = scalar_like(b, a);
  return binary_with_dtype(op, at, b, at.dtype());
}

Tensor unary(UnaryOp op, const Tensor& x, DType dtype, UnaryParams params = {}) {
  check_defined(unary_op_name(op), x);
  Tensor out = Tensor::empty(x.shape(), {dtype, x.device()});
  backend_for(x.device()).unary(op, params, x.to(dtype), out);
  return out;
}

// Math defined on real numbers: integral and bool inputs compute in float32, as PyTorch.
Tensor floating_unary(UnaryOp op, const Tensor& x, UnaryParams params = {}) {
  check_defined(unary_op_name(op), x);
  return unary(op, x, is_floating(x.dtype()) ? x.dtype() : DType::Float32, params);
}

// Ops that keep integers integral but are not defined on bool.
Tensor numeric_unary(UnaryOp op, const Tensor& x, const char* bool_hint = "") {
  check_defined(unary_op_name(op), x);
  LOOM_CHECK(x.dtype() != DType::Bool, unary_op_name(op), ": bool tensors are not supported", bool_hint);
  return unary(op, x, x.dtype());
}

// In place: a op= b. b broadcasts to a's shape and the result type must convert back to a's dtype.
Tensor& binary_(BinaryOp op, Tensor& a, const Tensor& b, DType common) {
  const char* name = binary_op_name(op);
  autograd::check_inplace((std::string(name) + "_").c_str(), a);
  DType compute = compute_dtype(op, common);
  LOOM_CHECK(!(is_floating(compute) && !is_floating(a.dtype())) &&
                 !(compute != DType::Bool && a.dtype() == DType::Bool),
             name, "_: result type ", dtype_name(compute), " cannot be cast to ", describe(a), " in place");
  LOOM_CHECK(broadcasts_to(b.shape(), a.shape()), name, "_: shape ", b.shape(),
             " cannot be broadcast to the in-place shape ", a.shape());
  const Shape& shape = a.shape();
  for (int64_t d = 0; d < a.dim(); ++d) {
    LOOM_CHECK(a.stride(d) != 0 || a.size(d) <= 1, name,
               "_: cannot write in place into an expanded tensor (several elements share memory), ",
               describe(a));
  }
  Tensor src = b.to(a.dtype());
  // A different view of a's own memory would be overwritten while it is read.
  if (src.storage() == a.storage() && (src.offset() != a.offset() || src.strides() != a.strides()))
    src = src.clone();
  a.storage()->bump_version();
  backend_for(a.device()).binary(op, a, src.expand(shape), a);
  return a;
}

Tensor& binary_(BinaryOp op, Tensor& a, const Tensor& b) {
  const char* name = binary_op_name(op);
  check_defined(name, a);
  check_defined(name, b);
  check_same_device(name, a, b);
  return binary_(op, a, b, promote_types(a.dtype(), b.dtype()));
}

Tensor& binary_scalar_(BinaryOp op, Tensor& a, double b) {
  check_defined(binary_op_name(op), a);
  Tensor bt = scalar_like(a, b);
  return binary_(op, a, bt, bt.dtype());
}

}  // namespace

// ---- arithmetic, with derivatives -----------------------------------------------------------------------
// Each gradient is summed back over the dims broadcasting stretched and converted to its input's dtype
// (detail::reduce_grad); integer inputs get none.

Tensor add(const Tensor& a, const Tensor& b) {
  autograd::OpScope scope("add", {a, b});
  Tensor out = binary(BinaryOp::Add, a, b);
  if (scope.recording()) {
    scope.record({out}, [sa = a.shape(), da = a.dtype(), sb = b.shape(), db = b.dtype()](const Grads& g) {
      return Grads{detail::reduce_grad(g[0], sa, da), detail::reduce_grad(g[0], sb, db)};
    });
  }
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  autograd::OpScope scope("sub", {a, b});
  Tensor out = binary(BinaryOp::Sub, a, b);
  if (scope.recording()) {
    scope.record({out}, [sa = a.shape(), da = a.dtype(), sb = b.shape(), db = b.dtype(),
                         need_b = scope.needs_grad(1)](const Grads& g) {
      return Grads{detail::reduce_grad(g[0], sa, da), need_b ? detail::reduce_grad(neg(g[0]), sb, db) : Tensor()};
    });
  }
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  autograd::OpScope scope("mul", {a, b});
  Tensor out = binary(BinaryOp::Mul, a, b);
  if (scope.recording()) {
    bool need_a = scope.needs_grad(0), need_b = scope.needs_grad(1);
    scope.record({out}, [sa = scope.save(need_b ? a : Tensor()), sb = scope.save(need_a ? b : Tensor()), need_a,
                         need_b, shape_a = a.shape(), da = a.dtype(), shape_b = b.shape(),
                         db = b.dtype()](const Grads& g) {
      return Grads{need_a ? detail::reduce_grad(mul(g[0], sb.get()), shape_a, da) : Tensor(),
                   need_b ? detail::reduce_grad(mul(g[0], sa.get()), shape_b, db) : Tensor()};
    });
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  autograd::OpScope scope("div", {a, b});
  Tensor out = binary(BinaryOp::Div, a, b);
  if (scope.recording()) {
    bool need_a = scope.needs_grad(0), need_b = scope.needs_grad(1);
    // d(a/b)/da = 1/b, d(a/b)/db = -out/b.
    scope.record({out}, [sb = scope.save(b), so = scope.save(need_b ? out : Tensor()), need_a, need_b,
                         shape_a = a.shape(), da = a.dtype(), shape_b = b.shape(), db = b.dtype()](const Grads& g) {
      Tensor gb = need_a || need_b ? div(g[0], sb.get()) : Tensor();
      return Grads{need_a ? detail::reduce_grad(gb, shape_a, da) : Tensor(),
                   need_b ? detail::reduce_grad(neg(mul(gb, so.get())), shape_b, db) : Tensor()};
    });
  }
  return out;
}

// As PyTorch: where the exponent is 0, a gets no gradient (b a^(b-1) would be 0 * inf at a = 0); where a is 0
// and b >= 0, b gets none (out log a would be 0 * -inf).
Tensor pow(const Tensor& a, const Tensor& b) {
  autograd::OpScope scope("pow", {a, b});
  Tensor out = binary(BinaryOp::Pow, a, b);
  if (scope.recording()) {
    bool need_a = scope.needs_grad(0), need_b = scope.needs_grad(1);
    scope.record({out}, [sa = scope.save(a), sb = scope.save(b), so = scope.save(need_b ? out : Tensor()),
                         need_a, need_b, shape_a = a.shape(), da = a.dtype(), shape_b = b.shape(),
                         db = b.dtype()](const Grads& g) {
      const Tensor &av = sa.get(), &bv = sb.get();
      Tensor ga, gb;
      if (need_a) {
        Tensor d = mul(bv, pow(av, sub(bv, 1.0)));
        d = where(eq(bv, 0.0), zero_of(d), d);
        ga = detail::reduce_grad(mul(g[0], d), shape_a, da);
      }
      if (need_b) {
        Tensor d = mul(so.get(), log(av));
        d = where(logical_and(eq(av, 0.0), ge(bv, 0.0)), zero_of(d), d);
        gb = detail::reduce_grad(mul(g[0], d), shape_b, db);
      }
      return Grads{ga, gb};
    });
  }
  return out;
}

namespace {

// maximum / minimum: the gradient goes to the operand that was picked, half to each on a tie (PyTorch's
// convention, which keeps the sum of the two gradients equal to the incoming one).
Tensor extremum(BinaryOp op, const Tensor& a, const Tensor& b) {
  autograd::OpScope scope(binary_op_name(op), {a, b});
  Tensor out = binary(op, a, b);
  if (scope.recording()) {
    scope.record({out}, [op, sa = scope.save(a), sb = scope.save(b), need_a = scope.needs_grad(0),
                         need_b = scope.needs_grad(1), shape_a = a.shape(), da = a.dtype(),
                         shape_b = b.shape(), db = b.dtype()](const Grads& g) {
      const Tensor &av = sa.get(), &bv = sb.get();
      Tensor tie = eq(av, bv);
      Tensor half = mul(g[0], 0.5);
      // a loses where it is smaller (maximum) or larger (minimum); NaNs pass the gradient to both, as
      // PyTorch.
      bool is_max = op == BinaryOp::Maximum;
      Tensor zero = zero_of(g[0]);
      Tensor ga = need_a ? where(tie, half, where(is_max ? lt(av, bv) : gt(av, bv), zero, g[0])) : Tensor();
      Tensor gb = need_b ? where(tie, half, where(is_max ? gt(av, bv) : lt(av, bv), zero, g[0])) : Tensor();
      return Grads{need_a ? detail::reduce_grad(ga, shape_a, da) : Tensor(),
                   need_b ? detail::reduce_grad(gb, shape_b, db) : Tensor()};
    });
  }
  return out;
}

// Scalar on the left (2.0 - x, 2.0 / x, ...): the scalar is a constant, so only b gets a gradient.
Tensor scalar_binary_op(BinaryOp op, double a, const Tensor& b) {
  autograd::OpScope scope(binary_op_name(op), {b});
  Tensor out = scalar_binary(op, a, b);
  if (scope.recording()) {
    bool is_div = op == BinaryOp::Div;
    // d(a / b)/db = -a / b^2 = -out / b.
    scope.record({out}, [op, a, sb = scope.save(is_div ? b : Tensor()),
                         so = scope.save(is_div ? out : Tensor()), db = b.dtype()](const Grads& g) {
      Tensor gb;
      switch (op) {
        case BinaryOp::Add:
          gb = g[0];
          break;
        case BinaryOp::Sub:
          gb = neg(g[0]);
          break;
        case BinaryOp::Mul:
          gb = mul(g[0], a);
          break;
        case BinaryOp::Div:
          gb = neg(div(mul(g[0], so.get()), sb.get()));
          break;
        default:
          LOOM_FAIL(binary_op_name(op), " backward: no derivative for a scalar on the left");
      }
      return Grads{gb.to(db)};
    });
  }
  return out;
}

}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) { return extremum(BinaryOp::Maximum, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return extremum(BinaryOp::Minimum, a, b); }

// Tensor-scalar forms: the scalar is a constant, so only a gets a gradient.
Tensor add(const Tensor& a, double b) {
  autograd::OpScope scope("add", {a});
  Tensor out = binary_scalar(BinaryOp::Add, a, b);
  if (scope.recording())
    scope.record({out}, [da = a.dtype()](const Grads& g) { return Grads{g[0].to(da)}; });
  return out;
}

Tensor sub(const Tensor& a, double b) {
  autograd::OpScope scope("sub", {a});
  Tensor out = binary_scalar(BinaryOp::Sub, a, b);
  if (scope.recording())
    scope.record({out}, [da = a.dtype()](const Grads& g) { return Grads{g[0].to(da)}; });
  return out;
}

Tensor mul(const Tensor& a, double b) {
  autograd::OpScope scope("mul", {a});
  Tensor out = binary_scalar(BinaryOp::Mul, a, b);
  if (scope.recording())
    scope.record({out}, [b, da = a.dtype()](const Grads& g) { return Grads{mul(g[0], b).to(da)}; });
  return out;
}

Tensor div(const Tensor& a, double b) {
  autograd::OpScope scope("div", {a});
  Tensor out = binary_scalar(BinaryOp::Div, a, b);
  if (scope.recording())
    scope.record({out}, [b, da = a.dtype()](const Grads& g) { return Grads{div(g[0], b).to(da)}; });
  return out;
}

Tensor pow(const Tensor& a, double exponent) {
  check_defined("pow", a);
  DType dtype = scalar_result_type(a.dtype(), exponent);
  LOOM_CHECK(is_floating(dtype) || exponent >= 0,
             "pow: integers to negative integer powers are not allowed (", describe(a), " ** ", exponent,
             ")");
  autograd::OpScope scope("pow", {a});
  Tensor out = unary(UnaryOp::PowScalar, a, dtype, {exponent, 0});
  if (scope.recording()) {
    scope.record({out}, [sa = scope.save(exponent == 0 ? Tensor() : a), exponent, shape = a.shape(),
                         da = a.dtype()](const Grads& g) {
      if (exponent == 0) return Grads{zeros(shape, {da, g[0].device()})};
      const Tensor& av = sa.get();
      Tensor d = exponent == 2 ? mul(av, 2.0) : mul(pow(av, exponent - 1), exponent);
      return Grads{mul(g[0], d).to(da)};
    });
  }
  return out;
}

Tensor pow(double base, const Tensor& exponent) {
  autograd::OpScope scope("pow", {exponent});
  Tensor out = scalar_binary(BinaryOp::Pow, base, exponent);
  if (scope.recording()) {
    // d(base^e)/de = out * log(base); at base 0 that is 0 * -inf, which PyTorch (and so Loom) takes as 0 for
    // e >= 0.
    scope.record({out}, [so = scope.save(out), se = scope.save(base == 0 ? exponent : Tensor()), base,
                         de = exponent.dtype()](const Grads& g) {
      Tensor grad = mul(g[0], mul(so.get(), std::log(base)));
      if (base == 0) grad = where(ge(se.get(), 0.0), zero_of(grad), grad);
      return Grads{grad.to(de)};
    });
  }
  return out;
}

Tensor eq(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Eq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Ne, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Lt, a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Le, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Gt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Ge, a, b); }
Tensor eq(const Tensor& a, double b) { return binary_scalar(BinaryOp::Eq, a, b); }
Tensor ne(const Tensor& a, double b) { return binary_scalar(BinaryOp::Ne, a, b); }
Tensor lt(const Tensor& a, double b) { return binary_scalar(BinaryOp::Lt, a, b); }
Tensor le(const Tensor& a, double b) { return binary_scalar(BinaryOp::Le, a, b); }
Tensor gt(const Tensor& a, double b) { return binary_scalar(BinaryOp::Gt, a, b); }
Tensor ge(const Tensor& a, double b) { return binary_scalar(BinaryOp::Ge, a, b); }
Tensor logical_and(const Tensor& a, const Tensor& b) { return binary(BinaryOp::LogicalAnd, a, b); }
Tensor logical_or(const Tensor& a, const Tensor& b) { return binary(BinaryOp::LogicalOr, a, b); }

Tensor logical_not(const Tensor& a) {
  check_defined("logical_not", a);
  LOOM_CHECK(a.dtype() == DType::Bool, "logical_not: expected a bool tensor, got ", describe(a));
  return unary(UnaryOp::LogicalNot, a, DType::Bool);
}

Tensor neg(const Tensor& x) {
  autograd::OpScope scope("neg", {x});
  Tensor out = numeric_unary(UnaryOp::Neg, x, " (use logical_not to invert a mask)");
  if (scope.recording()) scope.record({out}, [](const Grads& g) { return Grads{neg(g[0])}; });
  return out;
}

Tensor exp(const Tensor& x) {
  autograd::OpScope scope("exp", {x});
  Tensor out = floating_unary(UnaryOp::Exp, x);
  if (scope.recording())
    scope.record({out}, [y = scope.save(out)](const Grads& g) { return Grads{mul(g[0], y.get())}; });
  return out;
}

// Unary derivatives. Recording implies x is floating (only floating tensors require grad), and these ops keep
// a floating dtype, so g already has x's dtype. Each rule saves whichever of x and out is cheaper to use.

Tensor log(const Tensor& x) {
  autograd::OpScope scope("log", {x});
  Tensor out = floating_unary(UnaryOp::Log, x);
  if (scope.recording())
    scope.record({out}, [sx = scope.save(x)](const Grads& g) { return Grads{div(g[0], sx.get())}; });
  return out;
}

Tensor sqrt(const Tensor& x) {
  autograd::OpScope scope("sqrt", {x});
  Tensor out = floating_unary(UnaryOp::Sqrt, x);
  if (scope.recording())
    scope.record({out},
                 [y = scope.save(out)](const Grads& g) { return Grads{div(g[0], mul(y.get(), 2.0))}; });
  return out;
}

Tensor rsqrt(const Tensor& x) {
  autograd::OpScope scope("rsqrt", {x});
  Tensor out = floating_unary(UnaryOp::Rsqrt, x);
  if (scope.recording()) {
    // d(x^-1/2)/dx = -x^-3/2 / 2 = -out^3 / 2.
    scope.record({out}, [y = scope.save(out)](const Grads& g) {
      const Tensor& yv = y.get();
      return Grads{mul(g[0], mul(mul(yv, yv), mul(yv, -0.5)))};
    });
  }
  return out;
}

Tensor tanh(const Tensor& x) {
  autograd::OpScope scope("tanh", {x});
  Tensor out = floating_unary(UnaryOp::Tanh, x);
  if (scope.recording()) {
    scope.record({out}, [y = scope.save(out)](const Grads& g) {
      const Tensor& yv = y.get();
      return Grads{mul(g[0], 1.0 - mul(yv, yv))};
    });
  }
  return out;
}

Tensor sigmoid(const Tensor& x) {
  autograd::OpScope scope("sigmoid", {x});
  Tensor out = floating_unary(UnaryOp::Sigmoid, x);
  if (scope.recording()) {
    scope.record({out}, [y = scope.save(out)](const Grads& g) {
      const Tensor& yv = y.get();
      return Grads{mul(g[0], mul(yv, 1.0 - yv))};
    });
  }
  return out;
}

Tensor relu(const Tensor& x) {
  autograd::OpScope scope("relu", {x});
  Tensor out = numeric_unary(UnaryOp::Relu, x);
  // Zero gradient at x = 0, as PyTorch (threshold_backward on the result): one fused pass where the backend
  // has it (a compare and a where would be two, with a bool tensor between them).
  if (scope.recording())
    scope.record({out}, [y = scope.save(out)](const Grads& g) {  // recording means x, so out, is floating
      const Tensor yv = y.get().contiguous();
      Tensor gi = Tensor::empty(yv.shape(), yv.options());
      backend_for(yv.device()).relu_backward(g[0].contiguous(), yv, gi);
      return Grads{gi};
    });
  return out;
}

// |x|' = sign(x), 0 at x = 0 as PyTorch.
Tensor abs(const Tensor& x) {
  autograd::OpScope scope("abs", {x});
  Tensor out = numeric_unary(UnaryOp::Abs, x);
  if (scope.recording())
    scope.record({out}, [sx = scope.save(x)](const Grads& g) { return Grads{mul(g[0], sign(sx.get()))}; });
  return out;
}

Tensor reciprocal(const Tensor& x) {
  autograd::OpScope scope("reciprocal", {x});
  Tensor out = floating_unary(UnaryOp::Reciprocal, x);
  if (scope.recording()) {
    scope.record({out}, [y = scope.save(out)](const Grads& g) {
      const Tensor& yv = y.get();
      return Grads{neg(mul(g[0], mul(yv, yv)))};
    });
  }
  return out;
}

Tensor gelu(const Tensor& x, const std::string& approximate) {
  LOOM_CHECK(approximate == "none" || approximate == "tanh",
             "gelu: approximate must be \"none\" or \"tanh\", got \"", approximate, "\"");
  check_defined("gelu", x);
  LOOM_CHECK(is_floating(x.dtype()), "gelu: expected a floating tensor, got ", describe(x));
  autograd::OpScope scope("gelu", {x});
  bool tanh_approx = approximate == "tanh";
  Tensor out = floating_unary(tanh_approx ? UnaryOp::GeluTanh : UnaryOp::Gelu, x);
  if (scope.recording()) {
    // One fused backend kernel: composed of ops the derivative takes about ten passes over the data.
    scope.record({out}, [sx = scope.save(x), tanh_approx](const Grads& g) {
      Tensor xv = sx.get().contiguous();
      Tensor gi = Tensor::empty(xv.shape(), xv.options());
      backend_for(xv.device()).gelu_backward(g[0].contiguous(), xv, tanh_approx, gi);
      return Grads{gi};
    });
  }
  return out;
}

Tensor elu(const Tensor& x, double alpha) {
  check_defined("elu", x);
  LOOM_CHECK(is_floating(x.dtype()), "elu: expected a floating tensor, got ", describe(x));
  autograd::OpScope scope("elu", {x});
  Tensor out = floating_unary(UnaryOp::Elu, x, {alpha, 0});
  if (scope.recording()) {
    // alpha (e^x - 1)' = alpha e^x for x <= 0.
    scope.record({out}, [sx = scope.save(x), alpha](const Grads& g) {
      const Tensor& xv = sx.get();
      return Grads{where(gt(xv, 0.0), g[0], mul(g[0], mul(exp(xv), alpha)))};
    });
  }
  return out;
}

// square and sign accept bool as PyTorch does: square gives int64, sign gives the mask back.
Tensor square(const Tensor& x) {
  check_defined("square", x);
  autograd::OpScope scope("square", {x});
  Tensor out = unary(UnaryOp::Square, x, x.dtype() == DType::Bool ? DType::Int64 : x.dtype());
  if (scope.recording())
    scope.record({out},
                 [sx = scope.save(x)](const Grads& g) { return Grads{mul(g[0], mul(sx.get(), 2.0))}; });
  return out;
}

// Piecewise constant: a zero gradient (recorded, so that sign(x) still requires grad as in PyTorch).
Tensor sign(const Tensor& x) {
  check_defined("sign", x);
  if (x.dtype() == DType::Bool) return x.clone();
  autograd::OpScope scope("sign", {x});
  Tensor out = unary(UnaryOp::Sign, x, x.dtype());
  if (scope.recording()) scope.record({out}, [](const Grads& g) { return Grads{zeros_like(g[0])}; });
  return out;
}

Tensor clamp(const Tensor& x, double min, double max) {
  check_defined("clamp", x);
  LOOM_CHECK(!std::isnan(min) && !std::isnan(max), "clamp: bounds must not be NaN, got [", min, ", ", max,
             "]");
  // Infinite bounds leave a side open, so only finite fractional bounds make an integral tensor float32.
  DType dtype = x.dtype() == DType::Bool ? DType::Int64 : x.dtype();
  for (double bound : {min, max}) {
    if (std::isfinite(bound)) dtype = promote_types(dtype, scalar_result_type(dtype, bound));
  }
  autograd::OpScope scope("clamp", {x});
  Tensor out = unary(UnaryOp::Clamp, x, dtype, {min, max});
  if (scope.recording()) {
    // The gradient passes where min <= x <= max, bounds included (PyTorch's choice); NaN gets none.
    scope.record({out}, [sx = scope.save(x), min, max, dx = x.dtype()](const Grads& g) {
      const Tensor& xv = sx.get();
      return Grads{where(logical_and(ge(xv, min), le(xv, max)), g[0], 0.0).to(dx)};
    });
  }
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_defined("where", cond);
  check_defined("where", a);
  check_defined("where", b);
  LOOM_CHECK(cond.dtype() == DType::Bool, "where: expected a bool condition, got ", describe(cond));
  check_same_device("where", cond, a);
  check_same_device("where", a, b);
  Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  DType dtype = result_type(a, b);
  autograd::OpScope scope("where", {a, b});
  Tensor out = Tensor::empty(shape, {dtype, a.device()});
  backend_for(a.device())
      .where(cond.expand(shape), a.to(dtype).expand(shape), b.to(dtype).expand(shape), out);
  if (scope.recording()) {
    // The condition is a selector, not a value: it gets no gradient.
    scope.record({out},
                 [sc = scope.save(cond), need_a = scope.needs_grad(0), need_b = scope.needs_grad(1),
                  shape_a = a.shape(), da = a.dtype(), shape_b = b.shape(), db = b.dtype()](const Grads& g) {
                   const Tensor& c = sc.get();
                   Tensor zero = zero_of(g[0]);
                   return Grads{need_a ? detail::reduce_grad(where(c, g[0], zero), shape_a, da) : Tensor(),
                                need_b ? detail::reduce_grad(where(c, zero, g[0]), shape_b, db) : Tensor()};
                 });
  }
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, double b) {
  check_defined("where", a);
  return where(cond, a, scalar_like(a, b));
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  check_defined("masked_fill", x);
  check_defined("masked_fill", mask);
  LOOM_CHECK(mask.dtype() == DType::Bool, "masked_fill: expected a bool mask, got ", describe(mask));
  check_same_device("masked_fill", x, mask);
  LOOM_CHECK(broadcasts_to(mask.shape(), x.shape()), "masked_fill: mask of shape ", mask.shape(),
             " cannot be broadcast to ", x.shape());
  const Shape& shape = x.shape();
  LOOM_CHECK(is_floating(x.dtype()) || std::isfinite(value), "masked_fill: value ", value,
             " cannot be stored in ", describe(x));
  autograd::OpScope scope("masked_fill", {x});
  Tensor out = Tensor::empty(shape, x.options());
  Tensor fill = scalar_tensor(value, x.options());
  backend_for(x.device()).where(mask.expand(shape), fill.expand(shape), x, out);
  if (scope.recording()) {
    scope.record({out}, [sm = scope.save(mask)](const Grads& g) {
      return Grads{where(sm.get(), zero_of(g[0]), g[0])};
    });
  }
  return out;
}

bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol) {
  check_defined("allclose", a);
  check_defined("allclose", b);
  check_same_device("allclose", a, b);
  if (a.shape() != b.shape()) return false;
  if (a.numel() == 0) return true;
  NoGradGuard no_grad;  // a boolean answer: nothing to differentiate
  // Equal values (infinities included) are close; otherwise |a - b| <= atol + rtol |b| with b finite (an
  // infinite b would make every a close). NaN is close to nothing.
  DType dtype = promote_types(promote_types(a.dtype(), b.dtype()), DType::Float32);
  Tensor af = a.to(dtype), bf = b.to(dtype);
  Tensor abs_b = abs(bf);
  Tensor within = logical_and(le(abs(sub(af, bf)), add(mul(abs_b, rtol), atol)), lt(abs_b, INFINITY));
  Tensor close = logical_or(eq(af, bf), within);
  return loom::all(close).item<bool>();
}

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& a) { return neg(a); }
Tensor operator+(const Tensor& a, double b) { return add(a, b); }
Tensor operator-(const Tensor& a, double b) { return sub(a, b); }
Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
Tensor operator/(const Tensor& a, double b) { return div(a, b); }
Tensor operator+(double a, const Tensor& b) { return scalar_binary_op(BinaryOp::Add, a, b); }
Tensor operator-(double a, const Tensor& b) { return scalar_binary_op(BinaryOp::Sub, a, b); }
Tensor operator*(double a, const Tensor& b) { return scalar_binary_op(BinaryOp::Mul, a, b); }
Tensor operator/(double a, const Tensor& b) { return scalar_binary_op(BinaryOp::Div, a, b); }

Tensor& add_(Tensor& a, const Tensor& b) { return binary_(BinaryOp::Add, a, b); }
Tensor& sub_(Tensor& a, const Tensor& b) { return binary_(BinaryOp::Sub, a, b); }
Tensor& mul_(Tensor& a, const Tensor& b) { return binary_(BinaryOp::Mul, a, b); }
Tensor& div_(Tensor& a, const Tensor& b) { return binary_(BinaryOp::Div, a, b); }
Tensor& add_(Tensor& a, double b) { return binary_scalar_(BinaryOp::Add, a, b); }
Tensor& mul_(Tensor& a, double b) { return binary_scalar_(BinaryOp::Mul, a, b); }

}  // namespace loom
