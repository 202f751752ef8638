// LSH attention's per-chunk core on the CPU (backend.h, lsh_attention_forward / _backward), one chunk at a
// time.
//
// A task owns one chunk of C sorted rows of one (batch, head): it builds the chunk's [C, W] logits with one
// [C, C] GEMM per window chunk (the window is n_before + 1 + n_after chunks, found circularly, so a wrapped
// window costs no copy), applies the masks, takes the softmax and the logsumexp and multiplies by the
// window's values. Only the task's [C, W] tile exists at a time, so memory is O(N) per head. The keys
// (normalised rows) are computed once per call for all rows.
//
// The backward pass recomputes the tile's softmax (not exp(s - lse), which float32 cannot resolve for a fully
// masked row, whose lse is near -1e9), then
//   dP = dO V_w^T,  dS = P (dP - rowsum(dO O) + dlse) (0 at masked entries: their logit is a constant),
//   dQ = dS K_w,  dK_w = dS^T Q,  dV_w = P^T dO.
// dQ goes to the task's own rows. dK_w and dV_w belong to other chunks (every chunk sits in W / C windows),
// so each task writes them to its own slots of a [chunks, W, d] buffer and a second pass over chunks adds
// each chunk's slots up, then applies the key normalisation's derivative. No two tasks write the same memory,
// and the result does not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "loom/core/parallel.h"
#include "loom/ops/cpu/blas.h"
#include "loom/ops/cpu/cpu_backend.h"
#include "loom/ops/cpu/vec_math.h"

namespace loom {
namespace {

constexpr double kSelfPenalty = 1e5;
constexpr double kMasked = -1e9;
constexpr double kNormEps = 1e-6;

template <typename T>
struct Chunks {
  int64_t heads, bh, n, d, dv, c, n_ch, before, after, span, w, l;
  bool causal;
  const T *qk, *v, *bias;
  const int64_t* pos;
  const bool* pad;
  Tensor khat_t,
      rho_t;  // [B H N d] keys, [B H N] (mean(q^2) + eps)^(-1/2); allocated through Loom (memory_stats)
  T *khat, *rho;

  Chunks(const Tensor& sqk, const Tensor& sv, const Tensor& spos, const Tensor& padding, const Tensor& bias_,
         const Backend::LshChunks& ch)
      : heads(sqk.size(1)),
        bh(sqk.size(0) * sqk.size(1)),
        n(sqk.size(2)),
        d(sqk.size(3)),
        dv(sv.size(3)),
        c(ch.chunk_len),
        n_ch(n / c),
        before(ch.n_before),
        after(ch.n_after),
        span(before + 1 + after),
        w(span * c),
        l(padding.defined() ? padding.size(1) : 0),
        causal(ch.causal),
        qk(sqk.data<T>()),
        v(sv.data<T>()),
        bias(bias_.defined() ? bias_.data<T>() : nullptr),
        pos(spos.data<int64_t>()),
        pad(padding.defined() ? padding.data<bool>() : nullptr) {
    khat_t = Tensor::empty({bh * n, d}, sqk.options());
    rho_t = Tensor::empty({bh * n}, sqk.options());
    khat = khat_t.data<T>();
    rho = rho_t.data<T>();
    const T inv_sqrt_d = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d)));
    parallel_for(0, bh * n, 256, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* q = qk + r * d;
        T ss = 0;
        for (int64_t k = 0; k < d; ++k) ss += q[k] * q[k];
        const T rr = T(1) / std::sqrt(ss / static_cast<T>(d) + static_cast<T>(kNormEps));
        rho[r] = rr;
        for (int64_t k = 0; k < d; ++k) khat[r * d + k] = q[k] * (rr * inv_sqrt_d);
      }
    });
  }

  // Window slot s of chunk ci (s = 0 .. span - 1 for offsets -before .. after).
  int64_t window_chunk(int64_t ci, int64_t s) const { return ((ci + s - before) % n_ch + n_ch) % n_ch; }
  int64_t row(int64_t g, int64_t chunk) const {
    return g * n + chunk * c;
  }  // first row of a chunk of (b, h) g

  // The [C, W] logits of chunk ci of (b, h) g, masked (row stride W); replaced entries flagged in `replaced`
  // when given.
  void logits(int64_t g, int64_t ci, T* s_tile, int64_t* kpos, bool* kmask, bool* replaced = nullptr) const {
    const int64_t q0 = row(g, ci);
    for (int64_t s = 0; s < span; ++s) {
      const int64_t k0 = row(g, window_chunk(ci, s));
      cpu::gemm(CblasNoTrans, CblasTrans, c, c, d, 1.0, qk + q0 * d, d, khat + k0 * d, d, 0.0, s_tile + s * c,
                w);
      for (int64_t e = 0; e < c; ++e) {
        kpos[s * c + e] = pos[k0 + e];
        kmask[s * c + e] = pad && pad[(g / heads) * l + pos[k0 + e]];
      }
    }
    for (int64_t r = 0; r < c; ++r) {
      const int64_t qpos = pos[q0 + r];
      T* sr = s_tile + r * w;
      const T* br = bias ? bias + (q0 + r) * w : nullptr;
      for (int64_t e = 0; e < w; ++e) {
        T x = sr[e];
        if (kpos[e] == qpos) x -= static_cast<T>(kSelfPenalty);
        if (br) x -= br[e];
        const bool out = kmask[e] || (causal && kpos[e] > qpos);
        if (out) x = static_cast<T>(kMasked);
        if (replaced) replaced[r * w + e] = out;
        sr[e] = x;
      }
    }
  }
};

// Row softmax of a [rows, w] tile in place; writes each row's logsumexp to lse when given. The masks are
// finite, so every row has a finite maximum and a sum >= 1.
template <typename T>
void softmax_rows(T* tile, int64_t rows, int64_t w, T* lse) {
  for (int64_t r = 0; r < rows; ++r) {
    T* sr = tile + r * w;
    const T mx = *std::max_element(sr, sr + w);
    const T sum = cpu::vec::exp_shift_sum(sr, w, mx);
    const T inv = T(1) / sum;
    for (int64_t e = 0; e < w; ++e) sr[e] *= inv;
    if (lse) lse[r] = mx + std::log(sum);
  }
}

template <typename T>
void forward(const Tensor& sqk, const Tensor& sv, const Tensor& spos, const Tensor& padding,
             const Tensor& bias, const Backend::LshChunks& ch, const Tensor& out_t, const Tensor& lse_t) {
  cpu::single_threaded_blas();
  Chunks<T> a(sqk, sv, spos, padding, bias, ch);
  T* out = out_t.data<T>();
  T* lse = lse_t.data<T>();
  parallel_for(0, a.bh * a.n_ch, 1, [&](int64_t t0, int64_t t1) {
    std::vector<T> tile(static_cast<size_t>(a.c * a.w));
    std::vector<int64_t> kpos(static_cast<size_t>(a.w));
    std::vector<char> kmask_store(static_cast<size_t>(a.w));
    bool* kmask = reinterpret_cast<bool*>(kmask_store.data());
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t g = t / a.n_ch, ci = t % a.n_ch, q0 = a.row(g, ci);
      a.logits(g, ci, tile.data(), kpos.data(), kmask);
      softmax_rows(tile.data(), a.c, a.w, lse + q0);
      for (int64_t s = 0; s < a.span; ++s) {
        const int64_t k0 = a.row(g, a.window_chunk(ci, s));
        cpu::gemm(CblasNoTrans, CblasNoTrans, a.c, a.dv, a.c, 1.0, tile.data() + s * a.c, a.w,
                  a.v + k0 * a.dv, a.dv, s == 0 ? 0.0 : 1.0, out + q0 * a.dv, a.dv);
      }
    }
  });
}

template <typename T>
void backward(const Tensor& grad_out, const Tensor& grad_lse, const Tensor& sqk, const Tensor& sv,
              const Tensor& spos, const Tensor& padding, const Tensor& bias, const Backend::LshChunks& ch,
              const Tensor& out_t, const Tensor& grad_qk, const Tensor& grad_v) {
  cpu::single_threaded_blas();
  Chunks<T> a(sqk, sv, spos, padding, bias, ch);
  const T* go = grad_out.data<T>();
  const T* gl = grad_lse.defined() ? grad_lse.data<T>() : nullptr;
  const T* out = out_t.data<T>();
  T* gq = grad_qk.data<T>();
  T* gv = grad_v.data<T>();
  // Per (chunk, window slot): that slot's [C, d] share of dK and [C, dv] share of dV.
  Tensor dkw_t = Tensor::empty({a.bh * a.n_ch * a.span * a.c, a.d}, sqk.options());
  Tensor dvw_t = Tensor::empty({a.bh * a.n_ch * a.span * a.c, a.dv}, sqk.options());
  T* dkw = dkw_t.data<T>();
  T* dvw = dvw_t.data<T>();
  parallel_for(0, a.bh * a.n_ch, 1, [&](int64_t t0, int64_t t1) {
    std::vector<T> p(static_cast<size_t>(a.c * a.w)), dp(static_cast<size_t>(a.c * a.w));
    std::vector<int64_t> kpos(static_cast<size_t>(a.w));
    std::vector<char> kmask_store(static_cast<size_t>(a.w)), replaced_store(static_cast<size_t>(a.c * a.w));
    bool* kmask = reinterpret_cast<bool*>(kmask_store.data());
    bool* replaced = reinterpret_cast<bool*>(replaced_store.data());
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t g = t / a.n_ch, ci = t % a.n_ch, q0 = a.row(g, ci);
      a.logits(g, ci, p.data(), kpos.data(), kmask, replaced);
      softmax_rows<T>(p.data(), a.c, a.w, nullptr);
      for (int64_t s = 0; s < a.span; ++s) {
        const int64_t k0 = a.row(g, a.window_chunk(ci, s));
        cpu::gemm(CblasNoTrans, CblasTrans, a.c, a.c, a.dv, 1.0, go + q0 * a.dv, a.dv, a.v + k0 * a.dv, a.dv,
                  0.0, dp.data() + s * a.c, a.w);
        T* dvs = dvw + (t * a.span + s) * a.c * a.dv;
        cpu::gemm(CblasTrans, CblasNoTrans, a.c, a.dv, a.c, 1.0, p.data() + s * a.c, a.w, go + q0 * a.dv,
                  a.dv, 0.0, dvs, a.dv);
      }
      for (int64_t r = 0; r < a.c; ++r) {
        const T* o = out + (q0 + r) * a.dv;
        const T* g_o = go + (q0 + r) * a.dv;
        T row = 0;
        for (int64_t k = 0; k < a.dv; ++k) row += g_o[k] * o[k];
        if (gl) row -= gl[q0 + r];
        T* pr = p.data() + r * a.w;
        const T* dpr = dp.data() + r * a.w;
        const bool* mr = replaced + r * a.w;
        for (int64_t e = 0; e < a.w; ++e) pr[e] = mr[e] ? T(0) : pr[e] * (dpr[e] - row);  // p now holds dS
      }
      for (int64_t s = 0; s < a.span; ++s) {
        const int64_t k0 = a.row(g, a.window_chunk(ci, s));
        cpu::gemm(CblasNoTrans, CblasNoTrans, a.c, a.d, a.c, 1.0, p.data() + s * a.c, a.w, a.khat + k0 * a.d,
                  a.d, s == 0 ? 0.0 : 1.0, gq + q0 * a.d, a.d);
        cpu::gemm(CblasTrans, CblasNoTrans, a.c, a.d, a.c, 1.0, p.data() + s * a.c, a.w, a.qk + q0 * a.d, a.d,
                  0.0, dkw + (t * a.span + s) * a.c * a.d, a.d);
      }
    }
  });
  // Gather each chunk's key/value gradient from the windows that held it, then the normalisation's
  // derivative: k = q rho / sqrt(d), rho = (mean(q^2) + eps)^(-1/2)  =>  dq += rho / sqrt(d) (dk - q rho^2
  // (dk . q) / d).
  const T inv_sqrt_d = static_cast<T>(1.0 / std::sqrt(static_cast<double>(a.d)));
  parallel_for(0, a.bh * a.n_ch, 1, [&](int64_t t0, int64_t t1) {
    std::vector<T> dk(static_cast<size_t>(a.c * a.d));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t g = t / a.n_ch, cj = t % a.n_ch, k0 = a.row(g, cj);
      std::fill(dk.begin(), dk.end(), T(0));
      T* gvc = gv + k0 * a.dv;
      std::fill(gvc, gvc + a.c * a.dv, T(0));
      for (int64_t s = 0; s < a.span; ++s) {
        // The chunk whose window slot s is cj.
        const int64_t ci = ((cj - (s - a.before)) % a.n_ch + a.n_ch) % a.n_ch;
        const int64_t src = (g * a.n_ch + ci) * a.span + s;
        const T* k_src = dkw + src * a.c * a.d;
        const T* v_src = dvw + src * a.c * a.dv;
        for (int64_t i = 0; i < a.c * a.d; ++i) dk[static_cast<size_t>(i)] += k_src[i];
        for (int64_t i = 0; i < a.c * a.dv; ++i) gvc[i] += v_src[i];
      }
      for (int64_t r = 0; r < a.c; ++r) {
        const T* q = a.qk + (k0 + r) * a.d;
        const T* dkr = dk.data() + r * a.d;
        T* gqr = gq + (k0 + r) * a.d;
        const T rho = a.rho[k0 + r];
        T dot = 0;
        for (int64_t k = 0; k < a.d; ++k) dot += dkr[k] * q[k];
        const T coef = rho * rho * dot / static_cast<T>(a.d), scale = rho * inv_sqrt_d;
        for (int64_t k = 0; k < a.d; ++k) gqr[k] += scale * (dkr[k] - q[k] * coef);
      }
    }
  });
}

}  // namespace

void CpuBackend::lsh_attention_forward(const Tensor& sqk, const Tensor& sv, const Tensor& spos,
                                       const Tensor& padding, const Tensor& bias, const LshChunks& chunks,
                                       const Tensor& out, const Tensor& lse) {
  if (sqk.dtype() == DType::Float64)
    forward<double>(sqk, sv, spos, padding, bias, chunks, out, lse);
  else
    forward<float>(sqk, sv, spos, padding, bias, chunks, out, lse);
}

void CpuBackend::lsh_attention_backward(const Tensor& grad_out, const Tensor& grad_lse, const Tensor& sqk,
                                        const Tensor& sv, const Tensor& spos, const Tensor& padding,
                                        const Tensor& bias, const LshChunks& chunks, const Tensor& out,
                                        const Tensor& grad_qk, const Tensor& grad_v) {
  if (sqk.dtype() == DType::Float64)
    backward<double>(grad_out, grad_lse, sqk, sv, spos, padding, bias, chunks, out, grad_qk, grad_v);
  else
    backward<float>(grad_out, grad_lse, sqk, sv, spos, padding, bias, chunks, out, grad_qk, grad_v);
}

}  // namespace loom
