// scaled_dot_product_attention: argument checks, operand layout, and one tape entry around the backend's
// attention_forward / attention_backward kernels.
#include "loom/ops/attention.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "loom/autograd/tape.h"
#include "loom/ops/attention_checks.h"
#include "loom/ops/backend.h"
#include "loom/ops/nn_ops.h"

namespace loom {
namespace {

// The kernels read each [rows, cols] matrix with BLAS: unit stride along a row, rows not overlapping. Views
// like that (head splits of a packed projection, transposes of the batch dims) pass as they are; others are
// copied.
Tensor kernel_operand(const Tensor& t) {
  const int64_t rows = t.size(-2), cols = t.size(-1);
  bool ok = (cols <= 1 || t.stride(-1) == 1) && (rows <= 1 || t.stride(-2) >= std::max<int64_t>(cols, 1));
  return ok ? t : t.contiguous();
}

// An uninitialised tensor of `shape` laid out in memory like `like` (same rank): the leading dims in the order
// of like's strides, largest first, and the last dim innermost. A q viewed as [B, H, L, D] out of a
// [B, L, H, D] buffer thus gets an output (and a gradient) that is again a [B, L, H, D] buffer underneath.
Tensor empty_like_layout(const Shape& shape, const Tensor& like) {
  const int64_t n = static_cast<int64_t>(shape.size());
  std::vector<int64_t> order(static_cast<size_t>(n - 1));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return like.stride(x) > like.stride(y); });
  Shape physical;
  for (int64_t i : order) physical.push_back(shape[static_cast<size_t>(i)]);
  physical.push_back(shape[static_cast<size_t>(n - 1)]);
  std::vector<int64_t> to_logical(static_cast<size_t>(n));
  for (int64_t i = 0; i < n - 1; ++i) to_logical[static_cast<size_t>(order[static_cast<size_t>(i)])] = i;
  to_logical[static_cast<size_t>(n - 1)] = n - 1;
  return Tensor::empty(physical, like.options()).permute(to_logical);
}

// attn_mask checked and expanded to the scores' shape [..., L, S] (undefined stays undefined).
Tensor expand_mask(const char* op, const Tensor& attn_mask, const Shape& scores, const Tensor& q) {
  if (!attn_mask.defined()) return attn_mask;
  LOOM_CHECK(attn_mask.dtype() == DType::Bool, op, ": attn_mask must be bool (true = excluded), got ",
             describe(attn_mask));
  LOOM_CHECK(attn_mask.device() == q.device(), op, ": attn_mask is on ", attn_mask.device(), " but the inputs are on ",
             q.device());
  LOOM_CHECK(broadcasts_to(attn_mask.shape(), scores), op, ": attn_mask of shape ", attn_mask.shape(),
             " cannot be broadcast to the scores' shape ", scores);
  return attn_mask.expand(scores);
}

// 1 / sqrt(D) when scale is 0, as PyTorch; with D = 0 every score is 0 whatever the scale.
double resolve_scale(const char* op, double scale, int64_t d) {
  LOOM_CHECK(std::isfinite(scale), op, ": scale must be finite, got ", scale);
  return scale != 0 ? scale : d > 0 ? 1.0 / std::sqrt(static_cast<double>(d)) : 1.0;
}

// The forward kernel on operands that kernel_operand() accepted: the output [..., L, Dv], laid out like q,
// and the row logsumexp [..., L] that the backward kernel needs.
struct Forward {
  Tensor out, lse;
};

Forward run_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool causal,
                    double scale, const AttentionDropout& dropout) {
  Shape out_shape = q.shape();
  out_shape[out_shape.size() - 1] = v.size(-1);
  Shape lse_shape = q.shape();
  lse_shape.erase(lse_shape.size() - 1);
  Forward f{empty_like_layout(out_shape, q), Tensor::empty(lse_shape, q.options())};
  backend_for(q.device()).attention_forward(q, k, v, mask, causal, scale, dropout, f.out, f.lse);
  return f;
}

// What the backward pass keeps of a forward.
struct Saved {
  autograd::SavedTensor q, k, v, out, lse, mask;
  bool causal;
  double scale;
  AttentionDropout dropout;
  Saved(const autograd::OpScope& scope, const Tensor& q_, const Tensor& k_, const Tensor& v_,
        const Forward& f, const Tensor& mask_, bool causal_, double scale_, const AttentionDropout& dropout_)
      : q(scope.save(q_)),
        k(scope.save(k_)),
        v(scope.save(v_)),
        out(scope.save(f.out)),
        lse(scope.save(f.lse)),
        mask(scope.save(mask_)),
        causal(causal_),
        scale(scale_),
        dropout(dropout_) {}
  void backward(const Tensor& grad, const Tensor& gq, const Tensor& gk, const Tensor& gv) const {
    backend_for(grad.device())
        .attention_backward(kernel_operand(grad), q.get(), k.get(), v.get(), out.get(), lse.get(), mask.get(),
                            causal, scale, dropout, gq, gk, gv);
  }
};

// The dropout of an attention over scores of shape `scores`: none for p = 0, else the state loom::dropout
// would draw for weights of that shape (so that the fused path and dropout on explicit weights see the same
// mask).
AttentionDropout draw_dropout(const char* op, double p, const Shape& scores) {
  LOOM_CHECK(p >= 0 && p <= 1, op, ": dropout_p has to be between 0 and 1, got ", p);
  AttentionDropout d;
  if (p == 0) return d;
  int64_t n = 1;
  for (int64_t size : scores) n *= size;
  d.p = p;
  d.state = draw_dropout_state(n);
  return d;
}

// Part 0, 1 or 2 (q, k or v) of a packed projection [..., L, 3, H, D], as a [..., H, L, D] view.
Tensor packed_part(const Tensor& qkv, int64_t part) { return qkv.select(-3, part).transpose(-3, -2); }

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& attn_mask, bool is_causal, double scale, double dropout_p) {
  const char* op = "scaled_dot_product_attention";
  detail::check_attention_operand(op, "q", q, q);
  detail::check_attention_operand(op, "k", k, q);
  detail::check_attention_operand(op, "v", v, q);
  LOOM_CHECK(q.dim() >= 2 && k.dim() == q.dim() && v.dim() == q.dim(), op,
             ": expected q [..., L, D], k [..., S, D] and v [..., S, Dv] of one rank (at least 2), got shapes ",
             q.shape(), ", ", k.shape(), " and ", v.shape());
  bool same_lead = true;
  for (int64_t i = 0; i < q.dim() - 2; ++i) same_lead = same_lead && k.size(i) == q.size(i) && v.size(i) == q.size(i);
  LOOM_CHECK(same_lead && k.size(-1) == q.size(-1) && v.size(-2) == k.size(-2), op,
             ": q [..., L, D], k [..., S, D] and v [..., S, Dv] must share their leading dims, D and S; got shapes ",
             q.shape(), ", ", k.shape(), " and ", v.shape());
  Shape scores = q.shape();
  scores[scores.size() - 1] = k.size(-2);
  Tensor mask = expand_mask(op, attn_mask, scores, q);
  const double sc = resolve_scale(op, scale, q.size(-1));
  const AttentionDropout dropout = draw_dropout(op, dropout_p, scores);

  autograd::OpScope scope(op, {q, k, v});
  Tensor qk = kernel_operand(q), kk = kernel_operand(k), vk = kernel_operand(v);
  Forward f = run_forward(qk, kk, vk, mask, is_causal, sc, dropout);
  if (scope.recording()) {
    scope.record({f.out}, [saved = Saved(scope, qk, kk, vk, f, mask, is_causal, sc, dropout),
                           need_q = scope.needs_grad(0), need_k = scope.needs_grad(1),
                           need_v = scope.needs_grad(2)](const std::vector<Tensor>& g) {
      // Gradients laid out like their inputs, so that a view's backward copies them in memory order.
      const Tensor &q_ = saved.q.get(), &k_ = saved.k.get(), &v_ = saved.v.get();
      Tensor gq = need_q ? empty_like_layout(q_.shape(), q_) : Tensor();
      Tensor gk = need_k ? empty_like_layout(k_.shape(), k_) : Tensor();
      Tensor gv = need_v ? empty_like_layout(v_.shape(), v_) : Tensor();
      saved.backward(g[0], gq, gk, gv);
      return std::vector<Tensor>{gq, gk, gv};
    });
  }
  return f.out;
}

Tensor scaled_dot_product_attention_packed(const Tensor& qkv, const Tensor& attn_mask, bool is_causal,
                                           double scale, double dropout_p) {
  const char* op = "scaled_dot_product_attention_packed";
  detail::check_attention_operand(op, "qkv", qkv, qkv);
  LOOM_CHECK(qkv.dim() >= 4 && qkv.size(-3) == 3, op, ": expected a packed projection qkv [..., L, 3, H, D], got shape ",
             qkv.shape());
  Shape scores = packed_part(qkv, 0).shape();
  scores[scores.size() - 1] = qkv.size(-4);
  Tensor mask = expand_mask(op, attn_mask, scores, qkv);
  const double sc = resolve_scale(op, scale, qkv.size(-1));
  const AttentionDropout dropout = draw_dropout(op, dropout_p, scores);

  autograd::OpScope scope(op, {qkv});
  Tensor q = kernel_operand(packed_part(qkv, 0)), k = kernel_operand(packed_part(qkv, 1));
  Tensor v = kernel_operand(packed_part(qkv, 2));
  Forward f = run_forward(q, k, v, mask, is_causal, sc, dropout);
  if (scope.recording()) {
    scope.record({f.out}, [saved = Saved(scope, q, k, v, f, mask, is_causal, sc, dropout),
                           shape = qkv.shape()](const std::vector<Tensor>& g) {
      // One gradient for the one input; the kernel writes dq, dk and dv straight into its three parts.
      Tensor gqkv = Tensor::empty(shape, g[0].options());
      saved.backward(g[0], packed_part(gqkv, 0), packed_part(gqkv, 1), packed_part(gqkv, 2));
      return std::vector<Tensor>{gqkv};
    });
  }
  return f.out;
}

Tensor scaled_dot_product_attention_kv_packed(const Tensor& q, const Tensor& kv, const Tensor& attn_mask,
                                              bool is_causal, double scale, double dropout_p) {
  const char* op = "scaled_dot_product_attention_kv_packed";
  detail::check_attention_operand(op, "q", q, q);
  detail::check_attention_operand(op, "kv", kv, q);
  bool fits = q.dim() >= 2 && kv.dim() == q.dim() + 1 && kv.size(-3) == 2 && kv.size(-2) == q.size(-3) &&
              kv.size(-1) == q.size(-1);
  for (int64_t i = 0; fits && i < q.dim() - 3; ++i) fits = kv.size(i) == q.size(i);
  LOOM_CHECK(fits, op,
             ": expected q [..., H, L, D] and packed keys and values kv [..., S, 2, H, D] with the same "
             "leading dims, H and D, got shapes ",
             q.shape(), " and ", kv.shape());
  Shape scores = q.shape();
  scores[scores.size() - 1] = kv.size(-4);
  Tensor mask = expand_mask(op, attn_mask, scores, q);
  const double sc = resolve_scale(op, scale, q.size(-1));
  const AttentionDropout dropout = draw_dropout(op, dropout_p, scores);

  autograd::OpScope scope(op, {q, kv});
  Tensor qk = kernel_operand(q), k = kernel_operand(packed_part(kv, 0)),
         v = kernel_operand(packed_part(kv, 1));
  Forward f = run_forward(qk, k, v, mask, is_causal, sc, dropout);
  if (scope.recording()) {
    scope.record({f.out}, [saved = Saved(scope, qk, k, v, f, mask, is_causal, sc, dropout),
                           need_q = scope.needs_grad(0), need_kv = scope.needs_grad(1),
                           kv_shape = kv.shape()](const std::vector<Tensor>& g) {
      const Tensor& q_ = saved.q.get();
      Tensor gq = need_q ? empty_like_layout(q_.shape(), q_) : Tensor();
      Tensor gkv = need_kv ? Tensor::empty(kv_shape, g[0].options()) : Tensor();
      saved.backward(g[0], gq, need_kv ? packed_part(gkv, 0) : Tensor(),
                     need_kv ? packed_part(gkv, 1) : Tensor());
      return std::vector<Tensor>{gq, gkv};
    });
  }
  return f.out;
}

}  // namespace loom
