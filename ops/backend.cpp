#include "loom/ops/backend.h"

#include <cmath>

#include "loom/autograd/grad_mode.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/factory.h"
#include "loom/ops/linalg.h"
#include "loom/ops/reduce.h"
#include "loom/ops/shape_ops.h"

#ifdef LOOM_WITH_CUDA
#include "loom/cuda/cuda_backend.h"
#endif

namespace loom {

void Backend::missing(const char* kernel) const {
  LOOM_FAIL(kernel, ": the ", name(), " backend has no kernel for this op yet");
}

void Backend::copy(const Tensor&, const Tensor&) { missing("copy"); }
void Backend::copy_across_devices(const Tensor&, const Tensor&) { missing("copy_across_devices"); }
void Backend::fill(const Tensor&, double) { missing("fill"); }
void Backend::unary(UnaryOp op, const UnaryParams&, const Tensor&, const Tensor&) { missing(unary_op_name(op)); }
void Backend::binary(BinaryOp op, const Tensor&, const Tensor&, const Tensor&) { missing(binary_op_name(op)); }
void Backend::where(const Tensor&, const Tensor&, const Tensor&, const Tensor&) { missing("where"); }
void Backend::reduce(ReduceOp op, const Tensor&, const Shape&, const Tensor&, double) { missing(reduce_op_name(op)); }
void Backend::arg_reduce(ArgReduceOp op, const Tensor&, int64_t, const Tensor&, const Tensor&) {
  missing(op == ArgReduceOp::Max ? "argmax" : "argmin");
}
void Backend::scan(ScanOp op, const Tensor&, int64_t, const Tensor&) {
  missing(op == ScanOp::Cumsum ? "cumsum" : "cumprod");
}
void Backend::bmm(const Tensor&, const Tensor&, const Tensor&, double, double) { missing("matmul"); }
void Backend::gather(const Tensor&, int64_t, const Tensor&, const Tensor&) { missing("gather"); }
void Backend::scatter(const Tensor&, int64_t, const Tensor&, const Tensor&, bool) { missing("scatter"); }
void Backend::index_select(const Tensor&, int64_t, const Tensor&, const Tensor&) { missing("index_select"); }
void Backend::index_add(const Tensor&, int64_t, const Tensor&, const Tensor&) { missing("index_add"); }
void Backend::sort(const Tensor&, int64_t, bool, const Tensor&, const Tensor&) { missing("sort"); }
void Backend::topk(const Tensor&, int64_t, int64_t, bool, const Tensor&, const Tensor&) { missing("topk"); }
void Backend::arange(double, double, const Tensor&) { missing("arange"); }
void Backend::triangle(const Tensor&, int64_t, bool, const Tensor&) { missing("tril/triu"); }
void Backend::uniform(const Tensor&, double, double, PhiloxState) { missing("uniform"); }
void Backend::normal(const Tensor&, double, double, PhiloxState) { missing("normal"); }
void Backend::dropout(const Tensor&, double, PhiloxState, const Tensor&) { missing("dropout"); }
void Backend::softmax(const Tensor&, const Tensor&, bool log, const Tensor&) { missing(log ? "log_softmax" : "softmax"); }
void Backend::layer_norm(const Tensor&, const Tensor&, const Tensor&, double, const Tensor&, const Tensor&,
                         const Tensor&) {
  missing("layer_norm");
}

// ---- default backward kernels, composed of ops ----------------------------------------------------------
// A caller with grad mode on (a test comparing against these) must not record the steps.

namespace {
// The kernels take their outputs as const handles; the data they point to is what gets written.
void copy_into(Tensor dst, const Tensor& src) { dst.copy_(src); }
}  // namespace

void Backend::softmax_backward(const Tensor& grad, const Tensor& out, const Tensor& grad_in) {
  NoGradGuard no_grad;
  if (grad_in.numel() == 0) return;
  copy_into(grad_in, mul(out, sub(grad, sum(mul(grad, out), {-1}, /*keepdim=*/true))));
}

void Backend::log_softmax_backward(const Tensor& grad, const Tensor& out, const Tensor& mask,
                                   const Tensor& grad_in) {
  NoGradGuard no_grad;
  if (grad_in.numel() == 0) return;
  Tensor zero = scalar_tensor(0.0, grad.options());
  // Excluded outputs are the constant -inf: their incoming gradient must not leak into the row's sum.
  Tensor g = mask.defined() ? loom::where(mask, zero, grad) : grad;
  Tensor gi = sub(g, mul(exp(out), sum(g, {-1}, /*keepdim=*/true)));
  copy_into(grad_in, mask.defined() ? loom::where(mask, zero, gi) : gi);
}

void Backend::layer_norm_backward(const Tensor& grad, const Tensor& in, const Tensor& mean_,
                                  const Tensor& rstd, const Tensor& weight, const Tensor& grad_in,
                                  const Tensor& grad_weight, const Tensor& grad_bias) {
  NoGradGuard no_grad;
  const int64_t rows = in.size(0);
  Tensor rs = rstd.view({rows, 1});
  Tensor xhat = mul(sub(in, mean_.view({rows, 1})), rs);
  if (grad_bias.defined()) copy_into(grad_bias, sum(grad, {0}));
  if (grad_weight.defined()) copy_into(grad_weight, sum(mul(grad, xhat), {0}));
  if (grad_in.defined() && grad_in.numel() > 0) {
    Tensor gxhat = weight.defined() ? mul(grad, weight) : grad;
    // d/dx of (x - mean) * rstd: the row means of gxhat and gxhat * xhat carry the mean's and rstd's share.
    Tensor c1 = loom::mean(gxhat, {1}, /*keepdim=*/true);
    Tensor c2 = loom::mean(mul(gxhat, xhat), {1}, /*keepdim=*/true);
    copy_into(grad_in, mul(sub(sub(gxhat, c1), mul(xhat, c2)), rs));
  }
}

void Backend::relu_backward(const Tensor& grad, const Tensor& out, const Tensor& grad_in) {
  NoGradGuard no_grad;
  if (grad_in.numel() == 0) return;
  Tensor g = grad_in;  // a handle to the same storage, to write through
  g.copy_(loom::where(gt(out, 0.0), grad, 0.0));
}

void Backend::gelu_backward(const Tensor& grad, const Tensor& in, bool tanh_approx, const Tensor& grad_in) {
  NoGradGuard no_grad;
  if (grad_in.numel() == 0) return;
  Tensor d;
  if (tanh_approx) {
    // gelu = x * s with s = sigmoid(2u), u = k0 (x + k1 x^3): gelu' = s + x s (1 - s) 2 k0 (1 + 3 k1 x^2).
    constexpr double k0 = 0.7978845608028654, k1 = 0.044715;
    Tensor x2 = mul(in, in);
    Tensor s = sigmoid(mul(mul(in, add(mul(x2, k1), 1.0)), 2 * k0));
    Tensor du = mul(add(mul(x2, 3 * k1), 1.0), 2 * k0);
    d = add(s, mul(mul(in, mul(s, 1.0 - s)), du));
  } else {
    // gelu' = Phi(x) + x phi(x). There is no erf op, but the forward kernel computes gelu as the product
    // x * Phi(x), so gelu(x) / x gives Phi back to a few ulp; below 1e-30 Phi is 0.5 to far beyond any
    // precision.
    Tensor phi_cdf = loom::where(ge(abs(in), 1e-30), div(gelu(in), in), 0.5);
    Tensor pdf = mul(exp(mul(mul(in, in), -0.5)), 0.3989422804014327);
    d = add(phi_cdf, mul(in, pdf));
  }
  copy_into(grad_in, mul(grad, d));
}

// ---- attention, composed of ops: the whole [..., L, S] score matrix at once --------------------------------

namespace {
// The entries a query may not attend to, as one bool tensor broadcastable to [..., L, S] (undefined if none).
Tensor attention_exclusions(const Tensor& mask, bool causal, int64_t l, int64_t s, Device device) {
  if (!causal) return mask;
  Tensor key_pos = arange(static_cast<double>(s), {DType::Int64, device}).view({1, s});
  Tensor query_pos = arange(static_cast<double>(l), {DType::Int64, device}).view({l, 1});
  Tensor above = gt(key_pos, query_pos);
  return mask.defined() ? logical_or(mask, above) : above;
}

// scale * q @ k^T with excluded entries at -inf.
Tensor attention_scores(const Tensor& q, const Tensor& k, const Tensor& excluded, double scale) {
  Tensor scores = mul(matmul(q, k.transpose(-2, -1)), scale);
  return excluded.defined() ? masked_fill(scores, excluded, -INFINITY) : scores;
}
}  // namespace

void Backend::attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                                bool causal, double scale, const AttentionDropout& drop, const Tensor& out,
                                const Tensor& logsumexp) {
  NoGradGuard no_grad;
  Tensor excluded = attention_exclusions(mask, causal, q.size(-2), k.size(-2), q.device());
  Tensor scores = attention_scores(q, k, excluded, scale);
  // +inf for rows with no allowed key (see backend.h); then exp(scores - lse) is the softmax everywhere, 0 in
  // such rows, where exp(-inf - -inf) would be NaN. (No softmax kernel needed: CUDA has none yet.)
  Tensor lse = loom::logsumexp(scores, {-1});
  lse = masked_fill(lse, eq(lse, -INFINITY), INFINITY);
  copy_into(logsumexp, lse);
  Tensor p = exp(sub(scores, lse.unsqueeze(-1)));  // contiguous [..., L, S]: element (b * L + i) * S + j
  if (drop.active()) this->dropout(p, drop.p, drop.state, p);
  copy_into(out, matmul(p, v));
}

void Backend::attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& out, const Tensor& logsumexp, const Tensor& mask, bool causal,
                                 double scale, const AttentionDropout& drop, const Tensor& grad_q,
                                 const Tensor& grad_k, const Tensor& grad_v) {
  NoGradGuard no_grad;
  Tensor excluded = attention_exclusions(mask, causal, q.size(-2), k.size(-2), q.device());
  // The probabilities again, from the saved row normalisers: exp(-inf) = 0 at excluded entries and, with
  // logsumexp = +inf, across rows with no allowed key.
  Tensor p = exp(sub(attention_scores(q, k, excluded, scale), logsumexp.unsqueeze(-1)));
  // With dropout, out = (P * M) V for the regenerated multipliers M, so dV = (P * M)^T dO and the gradient
  // reaching P is M * (dO V^T).
  Tensor p_used = p;
  if (drop.active()) {
    p_used = Tensor::empty(p.shape(), p.options());
    this->dropout(p, drop.p, drop.state, p_used);
  }
  if (grad_v.defined()) copy_into(grad_v, matmul(p_used.transpose(-2, -1), grad_out));
  if (!grad_q.defined() && !grad_k.defined()) return;
  // Softmax's backward, dS = P * (dP - rowsum(dP * P)), with rowsum(dP * P) = rowsum(dO * O) since
  // dP * P = (M * dO V^T) * P and O = (P * M) V; the factor scale carries it through scores = scale * q k^T.
  Tensor dp = matmul(grad_out, v.transpose(-2, -1));
  if (drop.active()) this->dropout(dp, drop.p, drop.state, dp);
  Tensor row = sum(mul(grad_out, out), {-1}, /*keepdim=*/true);
  Tensor ds = mul(mul(p, sub(dp, row)), scale);
  if (grad_q.defined()) copy_into(grad_q, matmul(ds, k));
  if (grad_k.defined()) copy_into(grad_k, matmul(ds.transpose(-2, -1), q));
}

void Backend::act_frozen_projection(const Tensor& running, const ActFrozenProjection& a, const Tensor& out,
                                    const Tensor& inv_sigma_out) {
  NoGradGuard no_grad;
  Tensor inv_sigma = inv_sigma_out;  // a handle to the same storage, to write through
  const int64_t h = a.frozen_rows.numel(), d = a.centred.size(1), C = out.size(1);
  const Tensor& s = a.signal_centred;
  Tensor variance = (a.squared_norm + matmul(a.centred, s.view({d, 1})).view({h}) * 2.0 + sum(mul(s, s))) /
                    static_cast<double>(d);
  inv_sigma.copy_(rsqrt(variance + a.eps));
  Tensor frozen = (a.projected + a.signal_projected) * inv_sigma.view({h, 1}) + a.shift;
  auto put = [&](const Tensor& rows, const Tensor& src) {
    Tensor index = rows.view({rows.numel(), 1}).expand({rows.numel(), C}).contiguous();
    scatter(out, 0, index, src, /*accumulate=*/false);
  };
  put(a.running_rows, running);
  put(a.frozen_rows, frozen);
}

void Backend::act_frozen_projection_backward(const Tensor& grad, const ActFrozenProjection& a,
                                             const Tensor& inv_sigma, const ActFrozenProjectionGrads& grads) {
  NoGradGuard no_grad;
  ActFrozenProjectionGrads g = grads;  // handles to the same storage, to write through
  const int64_t h = a.frozen_rows.numel(), d = a.centred.size(1);
  const Tensor& s = a.signal_centred;
  if (g.running.defined()) g.running.copy_(loom::index_select(grad, 0, a.running_rows));
  Tensor g_frozen = loom::index_select(grad, 0, a.frozen_rows);
  Tensor inv = inv_sigma.view({h, 1});
  Tensor g_projected = g_frozen * inv;
  if (g.projected.defined()) g.projected.copy_(g_projected);
  if (g.signal_projected.defined()) g.signal_projected.copy_(sum(g_projected, {0}));
  if (g.shift.defined()) g.shift.copy_(sum(g_frozen, {0}));
  // d sigma^-1 / d var = -sigma^-3 / 2, and var = (|v~|^2 + 2 v~ . s~ + |s~|^2) / d.
  Tensor g_inv = sum(g_frozen * (a.projected + a.signal_projected), {1});
  Tensor g_var = g_inv * (inv_sigma * inv_sigma * inv_sigma) * -0.5;  // [h]
  if (g.squared_norm.defined()) g.squared_norm.copy_(g_var / static_cast<double>(d));
  Tensor g_dot = g_var * (2.0 / static_cast<double>(d));
  if (g.centred.defined()) g.centred.copy_(g_dot.view({h, 1}) * s.view({1, d}));
  if (g.signal_centred.defined())
    g.signal_centred.copy_(matmul(g_dot.view({1, h}), a.centred).view({d}) + s * sum(g_dot));
}

void Backend::adam_step(const Tensor& param_in, const Tensor& grad, const Tensor& exp_avg_in,
                        const Tensor& exp_avg_sq_in, const AdamStep& s) {
  NoGradGuard no_grad;
  Tensor param = param_in, exp_avg = exp_avg_in, exp_avg_sq = exp_avg_sq_in;
  Tensor g = grad;
  if (s.weight_decay != 0) {
    if (s.decoupled) {
      mul_(param, 1 - s.lr * s.weight_decay);
    } else {
      g = add(grad, mul(param, s.weight_decay));
    }
  }
  mul_(exp_avg, s.beta1);
  add_(exp_avg, mul(g, 1 - s.beta1));
  mul_(exp_avg_sq, s.beta2);
  add_(exp_avg_sq, mul(mul(g, g), 1 - s.beta2));
  Tensor denom = add(div(sqrt(exp_avg_sq), s.bias_correction2_sqrt), s.eps);
  add_(param, mul(div(exp_avg, denom), -s.step_size));
}

const char* unary_op_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg: return "neg";
    case UnaryOp::Exp: return "exp";
    case UnaryOp::Log: return "log";
    case UnaryOp::Sqrt: return "sqrt";
    case UnaryOp::Rsqrt: return "rsqrt";
    case UnaryOp::Tanh: return "tanh";
    case UnaryOp::Sigmoid: return "sigmoid";
    case UnaryOp::Relu: return "relu";
    case UnaryOp::Gelu: return "gelu";
    case UnaryOp::GeluTanh: return "gelu(tanh)";
    case UnaryOp::Elu: return "elu";
    case UnaryOp::Abs: return "abs";
    case UnaryOp::PowScalar: return "pow";
    case UnaryOp::Clamp: return "clamp";
    case UnaryOp::LogicalNot: return "logical_not";
    case UnaryOp::Square: return "square";
    case UnaryOp::Reciprocal: return "reciprocal";
    case UnaryOp::Sign: return "sign";
  }
  return "unary";
}

const char* binary_op_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: return "add";
    case BinaryOp::Sub: return "sub";
    case BinaryOp::Mul: return "mul";
    case BinaryOp::Div: return "div";
    case BinaryOp::Pow: return "pow";
    case BinaryOp::Maximum: return "maximum";
    case BinaryOp::Minimum: return "minimum";
    case BinaryOp::Eq: return "eq";
    case BinaryOp::Ne: return "ne";
    case BinaryOp::Lt: return "lt";
    case BinaryOp::Le: return "le";
    case BinaryOp::Gt: return "gt";
    case BinaryOp::Ge: return "ge";
    case BinaryOp::LogicalAnd: return "logical_and";
    case BinaryOp::LogicalOr: return "logical_or";
  }
  return "binary";
}

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Mean: return "mean";
    case ReduceOp::Prod: return "prod";
    case ReduceOp::Max: return "max";
    case ReduceOp::Min: return "min";
    case ReduceOp::LogSumExp: return "logsumexp";
    case ReduceOp::Var: return "var";
    case ReduceOp::Any: return "any";
    case ReduceOp::All: return "all";
  }
  return "reduce";
}

Backend& backend_for(Device device) {
  if (device.is_cpu()) return cpu_backend();
#ifdef LOOM_WITH_CUDA
  return cuda::backend(device.index);
#else
  LOOM_FAIL("device ", device, ": this build of Loom has no CUDA backend (configure with -DLOOM_CUDA=ON)");
#endif
}

}  // namespace loom
