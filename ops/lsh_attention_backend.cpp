// The Backend defaults of LSH attention's per-chunk core (backend.h), composed of ops over every chunk at
// once: the look-adjacent windows are materialised with index_select ([B, H, n_ch, W, d]) and the logits as
// one [B, H, n_ch, C, W] tensor. This is the reference the fused CPU kernel is tested against, and what a
// backend without its own kernel runs.
#include <cmath>

#include "loom/autograd/grad_mode.h"
#include "loom/ops/backend.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/factory.h"
#include "loom/ops/linalg.h"
#include "loom/ops/nn_ops.h"
#include "loom/ops/reduce.h"
#include "loom/ops/shape_ops.h"

namespace loom {
namespace {

void copy_into(Tensor dst, const Tensor& src) { dst.copy_(src); }

// What both passes rebuild from the sorted rows.
struct Windows {
  int64_t b, h, n, d, dv, c, n_ch, span, w;
  Tensor chunk_index;  // [n_ch * span]: chunk (c + i) mod n_ch for i = -n_before..n_after, chunk-major
  Tensor q, rho,
      khat;       // q [B, H, n_ch, C, d]; rho [B, H, N, 1] = (mean(q^2) + eps)^(-1/2); khat [B, H, N, d]
  Tensor k, v;    // windows [B, H, n_ch, W, d] and [B, H, n_ch, W, dv]
  Tensor logits;  // [B, H, n_ch, C, W], masks applied
  Tensor masked;  // bool, broadcast to the logits: entries replaced by -1e9 (undefined: none)

  Windows(const Tensor& sqk, const Tensor& sv, const Tensor& spos, const Tensor& padding, const Tensor& bias,
          const Backend::LshChunks& ch)
      : b(sqk.size(0)),
        h(sqk.size(1)),
        n(sqk.size(2)),
        d(sqk.size(3)),
        dv(sv.size(3)),
        c(ch.chunk_len),
        n_ch(n / c),
        span(ch.n_before + 1 + ch.n_after),
        w(span * c) {
    std::vector<int64_t> idx;
    for (int64_t ci = 0; ci < n_ch; ++ci)
      for (int64_t i = -ch.n_before; i <= ch.n_after; ++i) idx.push_back(((ci + i) % n_ch + n_ch) % n_ch);
    chunk_index = tensor(idx).to(sqk.device());
    q = sqk.view({b, h, n_ch, c, d});
    rho = rsqrt(add(mean(mul(sqk, sqk), {-1}, /*keepdim=*/true), 1e-6));
    khat = mul(sqk, mul(rho, 1.0 / std::sqrt(static_cast<double>(d))));
    k = window(khat, d);
    v = window(sv, dv);
    Tensor kpos = window(spos.unsqueeze(-1), 1).view({b, h, n_ch, 1, w});
    Tensor qpos = spos.view({b, h, n_ch, c, 1});
    logits = matmul(q, k.transpose(-2, -1));
    logits = where(eq(qpos, kpos), sub(logits, 1e5), logits);
    if (bias.defined()) logits = sub(logits, bias.view({b, h, n_ch, c, w}));
    if (ch.causal) masked = lt(qpos, kpos).expand(logits.shape());
    if (padding.defined()) {
      const int64_t l = padding.size(1);
      Tensor kpad = gather(padding.view({b, 1, l}).expand({b, h, l}), 2, kpos.reshape({b, h, n_ch * w}))
                        .view({b, h, n_ch, 1, w});
      masked = masked.defined() ? logical_or(masked, kpad) : kpad;
    }
    if (masked.defined()) logits = masked_fill(logits, masked, -1e9);
  }

  // rows [B, H, N, e] -> windows [B, H, n_ch, W, e].
  Tensor window(const Tensor& rows, int64_t e) const {
    return index_select(rows.reshape({b, h, n_ch, c, e}), 2, chunk_index).view({b, h, n_ch, w, e});
  }
  // The inverse: each window slice added back into the chunk it came from, [B, H, n_ch, W, e] -> [B, H, N,
  // e].
  Tensor unwindow(const Tensor& win, int64_t e) const {
    Tensor acc = zeros({b, h, n_ch, c, e}, win.options());
    return index_add(acc, 2, chunk_index, win.reshape({b, h, n_ch * span, c, e})).view({b, h, n, e});
  }
};

}  // namespace

void Backend::lsh_attention_forward(const Tensor& sqk, const Tensor& sv, const Tensor& spos,
                                    const Tensor& padding, const Tensor& bias, const LshChunks& chunks,
                                    const Tensor& out, const Tensor& lse) {
  NoGradGuard no_grad;
  Windows win(sqk, sv, spos, padding, bias, chunks);
  copy_into(lse, logsumexp(win.logits, {-1}).view(lse.shape()));
  // softmax rather than exp(logits - lse): exact for a fully masked row too (see backend.h).
  copy_into(out, matmul(loom::softmax(win.logits, -1), win.v).view(out.shape()));
}

void Backend::lsh_attention_backward(const Tensor& grad_out, const Tensor& grad_lse, const Tensor& sqk,
                                     const Tensor& sv, const Tensor& spos, const Tensor& padding,
                                     const Tensor& bias, const LshChunks& chunks, const Tensor& out,
                                     const Tensor& grad_qk, const Tensor& grad_v) {
  NoGradGuard no_grad;
  Windows win(sqk, sv, spos, padding, bias, chunks);
  const int64_t b = win.b, h = win.h, n_ch = win.n_ch, c = win.c;
  Tensor p = loom::softmax(win.logits, -1);
  Tensor go = grad_out.view({b, h, n_ch, c, win.dv});
  copy_into(grad_v, win.unwindow(matmul(p.transpose(-2, -1), go), win.dv));
  // dS = P (dP - rowsum(dP P)) + P dlse, with rowsum(dP P) = rowsum(dO O) because O = P V.
  Tensor dp = matmul(go, win.v.transpose(-2, -1));
  Tensor row = sum(mul(go, out.view(go.shape())), {-1}, /*keepdim=*/true);
  if (grad_lse.defined()) row = sub(row, grad_lse.view({b, h, n_ch, c, 1}));
  Tensor ds = mul(p, sub(dp, row));
  if (win.masked.defined()) ds = masked_fill(ds, win.masked, 0.0);  // replaced logits are constants
  Tensor dq = matmul(ds, win.k).view(sqk.shape());
  Tensor dk = win.unwindow(matmul(ds.transpose(-2, -1), win.q), win.d);
  // k = q rho / sqrt(d), rho = (mean(q^2) + eps)^(-1/2):  dq += rho / sqrt(d) (dk - q rho^2 (dk . q) / d).
  const double dd = static_cast<double>(win.d);
  Tensor dot = sum(mul(dk, sqk), {-1}, /*keepdim=*/true);
  Tensor through_norm =
      mul(mul(win.rho, 1.0 / std::sqrt(dd)), sub(dk, mul(sqk, mul(mul(win.rho, win.rho), div(dot, dd)))));
  copy_into(grad_qk, add(dq, through_norm));
}

}  // namespace loom
