// multi_dim_attention: argument checks, the [N, L, d] operand layout and one tape entry around the backend's
// multi_dim_attention_forward / _backward kernels; the kernels' default implementations, composed of ops (they
// live here, next to their only caller, rather than in backend.cpp); and source2token, composed of ops.
#include "loom/ops/multidim_attention.h"

#include <cmath>

#include "loom/autograd/grad_mode.h"
#include "loom/autograd/tape.h"
#include "loom/ops/attention_checks.h"
#include "loom/ops/backend.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/factory.h"
#include "loom/ops/nn_ops.h"
#include "loom/ops/reduce.h"

namespace loom {

const char* attention_direction_name(AttentionDirection direction) {
  switch (direction) {
    case AttentionDirection::Forward: return "forward";
    case AttentionDirection::Backward: return "backward";
    case AttentionDirection::NoDiagonal: return "no_diagonal";
    case AttentionDirection::All: return "all";
  }
  return "unknown";
}

namespace {

// t [..., L, d] as [N, L, d] with a unit last stride: a view when the leading dims flatten (a column slice of a
// packed projection does), else a copy.
Tensor rows_operand(const Tensor& t, const Shape& flat) {
  Tensor r = t.reshape(flat);
  return r.size(2) <= 1 || r.stride(2) == 1 ? r : r.contiguous();
}

// The kernels write through const handles; the data they point to is what changes.
void copy_into(Tensor dst, const Tensor& src) { dst.copy_(src); }

// ---- the default kernels, composed of ops over the whole [N, L(i), L(j), d] score tensor ---------------------

// score[n, i, j, f] = c * tanh((q[n, i, f] + k[n, j, f] + bias[f]) / c); also returns tanh(...) in `t`.
Tensor composed_scores(const Tensor& q, const Tensor& k, const Tensor& bias, double c, Tensor& t) {
  t = tanh(div(add(add(q.unsqueeze(2), k.unsqueeze(1)), bias), c));
  return mul(t, c);
}

// bool [N | 1, L, L, 1]: whether query i may attend to key j.
Tensor composed_allowed(const Tensor& padding, AttentionDirection direction, bool mask_queries, int64_t l,
                        Device device) {
  Tensor j = arange(static_cast<double>(l), {DType::Int64, device}).view({1, l});
  Tensor i = arange(static_cast<double>(l), {DType::Int64, device}).view({l, 1});
  Tensor allowed;
  switch (direction) {
    case AttentionDirection::Forward: allowed = lt(j, i); break;
    case AttentionDirection::Backward: allowed = gt(j, i); break;
    case AttentionDirection::NoDiagonal: allowed = ne(j, i); break;
    case AttentionDirection::All: allowed = ones({l, l}, {DType::Bool, device}); break;
  }
  allowed = allowed.unsqueeze(0);  // [1, L, L]
  if (padding.defined()) {
    Tensor valid = logical_not(padding);  // [N, L]
    allowed = logical_and(allowed, valid.unsqueeze(1));
    if (mask_queries) allowed = logical_and(allowed, valid.unsqueeze(2));
  }
  return allowed.unsqueeze(-1);
}

}  // namespace

void Backend::multi_dim_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                                          const Tensor& padding, AttentionDirection direction, double c,
                                          bool mask_queries, const Tensor& out, const Tensor& inv_sum) {
  NoGradGuard no_grad;
  if (out.numel() == 0) return;
  Tensor t;
  Tensor s = composed_scores(q, k, bias, c, t);
  Tensor allowed = composed_allowed(padding, direction, mask_queries, q.size(1), q.device());
  // Scores lie in (-c, c), so exp needs no shift; excluded entries weigh exactly 0.
  Tensor e = loom::where(allowed, exp(s), 0.0);
  Tensor z = sum(e, {2});
  Tensor inv = loom::where(gt(z, 0.0), reciprocal(z), 0.0);
  copy_into(inv_sum, inv);
  copy_into(out, mul(sum(mul(e, v.unsqueeze(1)), {2}), inv));
}

void Backend::multi_dim_attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k,
                                           const Tensor& v, const Tensor& bias, const Tensor& padding,
                                           AttentionDirection direction, double c, bool mask_queries,
                                           const Tensor& out, const Tensor& inv_sum, const Tensor& grad_q,
                                           const Tensor& grad_k, const Tensor& grad_v) {
  NoGradGuard no_grad;
  Tensor t;
  Tensor s = composed_scores(q, k, bias, c, t);
  Tensor allowed = composed_allowed(padding, direction, mask_queries, q.size(1), q.device());
  // P * dO, with P = exp(score) * inv_sum: 0 at excluded entries and across rows with no allowed key.
  Tensor pg = mul(loom::where(allowed, exp(s), 0.0), mul(inv_sum, grad_out).unsqueeze(2));
  if (grad_v.defined()) copy_into(grad_v, sum(pg, {1}));
  if (!grad_q.defined() && !grad_k.defined()) return;
  // Softmax's backward per feature: dscore = P * (g - sum_j P g) with g[i, j] = dO[i] v[j], and
  // sum_j P[i, j] v[j] = out[i]; then through c * tanh(x / c), whose derivative is 1 - tanh^2.
  Tensor dscore = mul(pg, sub(v.unsqueeze(1), out.unsqueeze(2)));
  Tensor dx = mul(dscore, 1.0 - mul(t, t));
  if (grad_q.defined()) copy_into(grad_q, sum(dx, {2}));
  if (grad_k.defined()) copy_into(grad_k, sum(dx, {1}));
}

// ---- the ops ------------------------------------------------------------------------------------------------

Tensor multi_dim_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                           AttentionDirection direction, const Tensor& padding_mask, double c, bool mask_queries) {
  const char* op = "multi_dim_attention";
  detail::check_attention_operand(op, "q", q, q);
  detail::check_attention_operand(op, "k", k, q);
  detail::check_attention_operand(op, "v", v, q);
  detail::check_attention_operand(op, "bias", bias, q);
  LOOM_CHECK(q.dim() >= 2 && k.shape() == q.shape() && v.shape() == q.shape(), op,
             ": expected q, k and v of one shape [..., L, d], got ", q.shape(), ", ", k.shape(), " and ", v.shape());
  const int64_t l = q.size(-2), d = q.size(-1);
  LOOM_CHECK(bias.dim() == 1 && bias.size(0) == d, op, ": bias must have shape [", d, "] (the feature dim of q ",
             q.shape(), "), got ", bias.shape());
  LOOM_CHECK(direction == AttentionDirection::Forward || direction == AttentionDirection::Backward ||
                 direction == AttentionDirection::NoDiagonal || direction == AttentionDirection::All,
             op, ": invalid direction ", static_cast<int>(direction));
  LOOM_CHECK(std::isfinite(c) && c > 0 && c <= 40, op,
             ": c must lie in (0, 40] (scores c * tanh(x / c) are exponentiated unshifted), got ", c);
  Shape lead = q.shape();
  lead.pop_back();  // [..., L]
  int64_t batch = 1;  // N: the flattened leading dims
  for (int64_t i = 0; i < q.dim() - 2; ++i) batch *= q.size(i);
  Tensor padding;
  if (padding_mask.defined()) {
    LOOM_CHECK(padding_mask.dtype() == DType::Bool, op, ": padding_mask must be bool (true = padding), got ",
               describe(padding_mask));
    LOOM_CHECK(padding_mask.device() == q.device(), op, ": padding_mask is on ", padding_mask.device(),
               " but q is on ", q.device());
    LOOM_CHECK(broadcasts_to(padding_mask.shape(), lead), op, ": padding_mask of shape ", padding_mask.shape(),
               " cannot be broadcast to [..., L] = ", lead, " (q is ", q.shape(), ")");
    padding = padding_mask.expand(lead).reshape({batch, l}).contiguous();
  }
  const Shape flat{batch, l, d};

  autograd::OpScope scope(op, {q, k, v, bias});
  Tensor qr = rows_operand(q, flat), kr = rows_operand(k, flat), vr = rows_operand(v, flat);
  Tensor b = bias.contiguous();
  Tensor out = Tensor::empty(flat, q.options()), inv_sum = Tensor::empty(flat, q.options());
  if (out.numel() > 0)
    backend_for(q.device())
        .multi_dim_attention_forward(qr, kr, vr, b, padding, direction, c, mask_queries, out, inv_sum);
  Tensor result = out.view(q.shape());
  if (scope.recording()) {
    scope.record({result}, [sq = scope.save(qr), sk = scope.save(kr), sv = scope.save(vr), sb = scope.save(b),
                            sp = scope.save(padding), so = scope.save(out), si = scope.save(inv_sum), direction, c,
                            mask_queries, shape = q.shape(), flat, need_q = scope.needs_grad(0),
                            need_k = scope.needs_grad(1), need_v = scope.needs_grad(2),
                            need_bias = scope.needs_grad(3)](const std::vector<Tensor>& g) {
      const TensorOptions opts = g[0].options();
      // The bias enters every score exactly as q[i] does: its gradient is grad_q summed over N and L.
      Tensor gq = need_q || need_bias ? Tensor::empty(flat, opts) : Tensor();
      Tensor gk = need_k ? Tensor::empty(flat, opts) : Tensor();
      Tensor gv = need_v ? Tensor::empty(flat, opts) : Tensor();
      if (shape_numel(flat) > 0) {
        backend_for(opts.device)
            .multi_dim_attention_backward(g[0].reshape(flat).contiguous(), sq.get(), sk.get(), sv.get(), sb.get(),
                                          sp.get(), direction, c, mask_queries, so.get(), si.get(), gq, gk, gv);
      } else {
        for (Tensor* t : {&gq, &gk, &gv})
          if (t->defined()) t->fill_(0.0);
      }
      Tensor gb = need_bias ? sum(gq, {0, 1}) : Tensor();
      auto shaped = [&](const Tensor& t, bool need) { return need ? t.view(shape) : Tensor(); };
      return std::vector<Tensor>{shaped(gq, need_q), shaped(gk, need_k), shaped(gv, need_v), gb};
    });
  }
  return result;
}

Tensor source2token(const Tensor& scores, const Tensor& values, const Tensor& padding_mask) {
  const char* op = "source2token";
  LOOM_CHECK(scores.defined() && values.defined(), op, ": scores or values is undefined");
  LOOM_CHECK(is_floating(scores.dtype()) && values.dtype() == scores.dtype(), op,
             ": expected floating scores and values of one dtype, got ", describe(scores), " and ", describe(values));
  LOOM_CHECK(values.device() == scores.device(), op, ": scores are on ", scores.device(), " but values are on ",
             values.device());
  LOOM_CHECK(scores.dim() >= 2 && values.shape() == scores.shape(), op,
             ": expected scores and values of one shape [..., n, d], got ", scores.shape(), " and ", values.shape());
  Tensor mask;
  if (padding_mask.defined()) {
    Shape lead = scores.shape();
    lead.pop_back();
    LOOM_CHECK(padding_mask.dtype() == DType::Bool, op, ": padding_mask must be bool (true = padding), got ",
               describe(padding_mask));
    LOOM_CHECK(padding_mask.device() == scores.device(), op, ": padding_mask is on ", padding_mask.device(),
               " but scores are on ", scores.device());
    LOOM_CHECK(broadcasts_to(padding_mask.shape(), lead), op, ": padding_mask of shape ", padding_mask.shape(),
               " cannot be broadcast to [..., n] = ", lead, " (scores are ", scores.shape(), ")");
    mask = padding_mask.unsqueeze(-1);  // [..., n, 1]: one mask for every feature
  }
  // The masked softmax is max-shifted (these scores are unbounded) and gives a fully padded row zeros.
  return sum(mul(softmax(scores, -2, mask), values), {-2});
}

}  // namespace loom
