// LSH attention's per-chunk core on the CPU (backend.h, lsh_attention_forward / _backward), one chunk at a
// time.
//
// A task owns one chunk of C sorted rows of one (batch, head): it normalises the keys of its window (the
// window is n_before + 1 + n_after chunks, found circularly) into one packed [W, d] block, builds the chunk's
// [C, W] logits with one GEMM against it, applies the masks, takes the softmax and the logsumexp and
// multiplies by the window's values (one GEMM when the window's chunks are consecutive rows, one per window
// chunk when it wraps around the N rows, so a wrapped window costs no copy). Only the task's [C, W] tile and [W, d] keys exist at a
// time, so the kernel adds no O(N) buffer of its own: every window recomputes its keys' normalisation
// (O(W d) per task, against the O(C W d) of its GEMMs) instead of holding an [N, d] key matrix.
//
// The backward pass recomputes the tile's softmax (not exp(s - lse), which float32 cannot resolve for a fully
// masked row, whose lse is near -1e9), then
//   dP = dO V_w^T,  dS = P (dP - rowsum(dO O) + dlse) (0 at masked entries: their logit is a constant),
//   dQ = dS K_w,  dK_w = dS^T Q,  dV_w = P^T dO.
// dK_w and dV_w belong to the window's chunks, not the task's own: the task adds them straight into those
// chunks' rows of grad_qk (through the key normalisation's derivative, which is linear in dK) and grad_v.
// Tasks run in `span` passes, pass p taking the chunks ci = p (mod span): two tasks of one pass have disjoint
// windows, so no two threads write the same row, every row receives its contributions in the same order
// whatever the thread count, and no per-window gradient buffer is needed (it took 4 x N x (d + dv) floats per
// head with one chunk of look-back). When the chunk count is not a multiple of the span, the windows of a
// pass could wrap onto each other, so every chunk of a (batch, head) gets its own pass instead.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
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
  // Positions as integers of T's width (int32 for float32): the masks compare them lane by lane with T's.
  using PosInt = typename cpu::vec::Traits<T>::I;
  int64_t heads, bh, n, d, dv, c, n_ch, before, after, span, w, l;
  bool causal;
  const T *qk, *v, *bias;
  const int64_t* pos;
  const bool* pad;

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
    LOOM_CHECK(n <= std::numeric_limits<PosInt>::max(), "lsh_attention: ", n,
               " sorted rows per (batch, head) exceed the CPU kernel's position range (",
               std::numeric_limits<PosInt>::max(), ")");
  }

  // Window slot s of chunk ci (s = 0 .. span - 1 for offsets -before .. after).
  int64_t window_chunk(int64_t ci, int64_t s) const { return ((ci + s - before) % n_ch + n_ch) % n_ch; }
  int64_t row(int64_t g, int64_t chunk) const {
    return g * n + chunk * c;
  }  // first row of a chunk of (b, h) g
  // Whether chunk ci's window lies in consecutive rows (it does unless it wraps around the N rows), so that
  // one GEMM over the window's W rows of v replaces one per window chunk.
  bool window_contiguous(int64_t ci) const {
    return window_chunk(ci, 0) + span - 1 == window_chunk(ci, span - 1);
  }

  // The keys of chunk ci's window: khat [W, d] = q rho / sqrt(d) row by row, rho [W] = (mean(q^2) + eps)^(-1/2).
  void window_keys(int64_t g, int64_t ci, T* khat, T* rho) const {
    const T inv_sqrt_d = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d)));
    for (int64_t s = 0; s < span; ++s) {
      const int64_t k0 = row(g, window_chunk(ci, s));
      for (int64_t e = 0; e < c; ++e) {
        const T* q = qk + (k0 + e) * d;
        const T ss = cpu::vec::dot(q, q, d);
        const T rr = T(1) / std::sqrt(ss / static_cast<T>(d) + static_cast<T>(kNormEps));
        rho[s * c + e] = rr;
        T* kr = khat + (s * c + e) * d;
        for (int64_t k = 0; k < d; ++k) kr[k] = q[k] * (rr * inv_sqrt_d);
      }
    }
  }

  // The [C, W] logits of chunk ci of (b, h) g against its window's keys khat [W, d], masked (row stride W);
  // replaced entries flagged in `replaced` when given. kpos / kmask: the window's key positions and padding
  // flags (0 or -1), as integers of T's width so that one vector compare masks a vector of logits.
  void logits(int64_t g, int64_t ci, const T* khat, T* s_tile, PosInt* kpos, PosInt* kmask,
              bool* replaced = nullptr) const {
    using V = cpu::vec::Vec<T>;
    using I = typename cpu::vec::Traits<V>::I;
    constexpr int64_t kL = cpu::vec::kLanes<T>;
    const int64_t q0 = row(g, ci);
    // khat holds the window's keys in consecutive rows, so one [C, W] GEMM.
    cpu::gemm(CblasNoTrans, CblasTrans, c, w, d, 1.0, qk + q0 * d, d, khat, d, 0.0, s_tile, w);
    for (int64_t s = 0; s < span; ++s) {
      const int64_t k0 = row(g, window_chunk(ci, s));
      for (int64_t e = 0; e < c; ++e) {
        kpos[s * c + e] = static_cast<PosInt>(pos[k0 + e]);
        kmask[s * c + e] = pad && pad[(g / heads) * l + pos[k0 + e]] ? PosInt(-1) : PosInt(0);
      }
    }
    // Per entry: minus the self penalty where the key is the query's own position, then minus the bias (this
    // order: in float32 at 1e5 it decides the rounding), then replaced where the key is padding or (causal)
    // after the query. Written on whole vectors: GCC leaves the scalar form of this loop unvectorised.
    const T penalty = static_cast<T>(kSelfPenalty), masked = static_cast<T>(kMasked);
    const V pen_v = cpu::vec::splat<V>(penalty), masked_v = cpu::vec::splat<V>(masked), zero_v{};
    for (int64_t r = 0; r < c; ++r) {
      const PosInt qpos = static_cast<PosInt>(pos[q0 + r]);
      // Keys after qlimit are out: the query's position when causal, none otherwise.
      const PosInt qlimit = causal ? qpos : std::numeric_limits<PosInt>::max();
      const I qpos_v = I{} + qpos, qlimit_v = I{} + qlimit;
      T* sr = s_tile + r * w;
      const T* br = bias ? bias + (q0 + r) * w : nullptr;
      bool* rr = replaced ? replaced + r * w : nullptr;
      int64_t e = 0;
      for (; e + kL <= w; e += kL) {
        V x, b;
        I kp, km;
        std::memcpy(&x, sr + e, sizeof(V));
        std::memcpy(&kp, kpos + e, sizeof(I));
        std::memcpy(&km, kmask + e, sizeof(I));
        x = x - (kp == qpos_v ? pen_v : zero_v);
        if (br) {
          std::memcpy(&b, br + e, sizeof(V));
          x = x - b;
        }
        const I out = km | (kp > qlimit_v);
        x = out != 0 ? masked_v : x;
        std::memcpy(sr + e, &x, sizeof(V));
        if (rr)
          for (int64_t k = 0; k < kL; ++k) rr[e + k] = out[k] != 0;
      }
      for (; e < w; ++e) {
        T x = sr[e] - (kpos[e] == qpos ? penalty : T(0));
        if (br) x -= br[e];
        const bool out = kmask[e] != 0 || kpos[e] > qlimit;
        sr[e] = out ? masked : x;
        if (rr) rr[e] = out;
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
    const T mx = cpu::vec::max_of(sr, w);
    const T sum = cpu::vec::exp_shift_sum(sr, w, mx);
    const T inv = T(1) / sum;
    for (int64_t e = 0; e < w; ++e) sr[e] *= inv;
    if (lse) lse[r] = mx + std::log(sum);
  }
}

// One task's scratch: the [C, W] tiles, the window's keys and their masks.
template <typename T>
struct TaskBuffers {
  std::vector<T> p, dp, khat, rho, dk;
  std::vector<typename Chunks<T>::PosInt> kpos, kmask;
  std::vector<char> replaced;
  TaskBuffers(const Chunks<T>& a, bool backward)
      : p(static_cast<size_t>(a.c * a.w)),
        dp(backward ? static_cast<size_t>(a.c * a.w) : 0),
        khat(static_cast<size_t>(a.w * a.d)),
        rho(static_cast<size_t>(a.w)),
        dk(backward ? static_cast<size_t>(a.w * a.d) : 0),
        kpos(static_cast<size_t>(a.w)),
        kmask(static_cast<size_t>(a.w)),
        replaced(backward ? static_cast<size_t>(a.c * a.w) : 0) {}
  bool* replaced_mask() { return replaced.empty() ? nullptr : reinterpret_cast<bool*>(replaced.data()); }
};

template <typename T>
void forward(const Tensor& sqk, const Tensor& sv, const Tensor& spos, const Tensor& padding,
             const Tensor& bias, const Backend::LshChunks& ch, const Tensor& out_t, const Tensor& lse_t) {
  cpu::single_threaded_blas();
  Chunks<T> a(sqk, sv, spos, padding, bias, ch);
  T* out = out_t.data<T>();
  T* lse = lse_t.data<T>();
  parallel_for(0, a.bh * a.n_ch, 1, [&](int64_t t0, int64_t t1) {
    TaskBuffers<T> buf(a, false);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t g = t / a.n_ch, ci = t % a.n_ch, q0 = a.row(g, ci);
      a.window_keys(g, ci, buf.khat.data(), buf.rho.data());
      a.logits(g, ci, buf.khat.data(), buf.p.data(), buf.kpos.data(), buf.kmask.data());
      softmax_rows(buf.p.data(), a.c, a.w, lse + q0);
      if (a.window_contiguous(ci)) {
        cpu::gemm(CblasNoTrans, CblasNoTrans, a.c, a.dv, a.w, 1.0, buf.p.data(), a.w,
                  a.v + a.row(g, a.window_chunk(ci, 0)) * a.dv, a.dv, 0.0, out + q0 * a.dv, a.dv);
        continue;
      }
      for (int64_t s = 0; s < a.span; ++s) {
        const int64_t k0 = a.row(g, a.window_chunk(ci, s));
        cpu::gemm(CblasNoTrans, CblasNoTrans, a.c, a.dv, a.c, 1.0, buf.p.data() + s * a.c, a.w,
                  a.v + k0 * a.dv, a.dv, s == 0 ? 0.0 : 1.0, out + q0 * a.dv, a.dv);
      }
    }
  });
}

// The backward of chunk ci of (b, h) g, added into gq and gv (see the top of the file).
template <typename T>
void backward_task(const Chunks<T>& a, int64_t g, int64_t ci, const T* go, const T* gl, const T* out, T* gq,
                   T* gv, TaskBuffers<T>& buf) {
  const int64_t q0 = a.row(g, ci);
  T* p = buf.p.data();
  T* dp = buf.dp.data();
  a.window_keys(g, ci, buf.khat.data(), buf.rho.data());
  a.logits(g, ci, buf.khat.data(), p, buf.kpos.data(), buf.kmask.data(), buf.replaced_mask());
  softmax_rows<T>(p, a.c, a.w, nullptr);
  if (a.window_contiguous(ci)) {  // the window's W rows of v and grad_v are consecutive: one GEMM each
    const int64_t k0 = a.row(g, a.window_chunk(ci, 0));
    cpu::gemm(CblasNoTrans, CblasTrans, a.c, a.w, a.dv, 1.0, go + q0 * a.dv, a.dv, a.v + k0 * a.dv, a.dv, 0.0,
              dp, a.w);
    cpu::gemm(CblasTrans, CblasNoTrans, a.w, a.dv, a.c, 1.0, p, a.w, go + q0 * a.dv, a.dv, 1.0,
              gv + k0 * a.dv, a.dv);
  } else {
    for (int64_t s = 0; s < a.span; ++s) {
      const int64_t k0 = a.row(g, a.window_chunk(ci, s));
      cpu::gemm(CblasNoTrans, CblasTrans, a.c, a.c, a.dv, 1.0, go + q0 * a.dv, a.dv, a.v + k0 * a.dv, a.dv,
                0.0, dp + s * a.c, a.w);
      cpu::gemm(CblasTrans, CblasNoTrans, a.c, a.dv, a.c, 1.0, p + s * a.c, a.w, go + q0 * a.dv, a.dv, 1.0,
                gv + k0 * a.dv, a.dv);
    }
  }
  const bool* replaced = buf.replaced_mask();
  for (int64_t r = 0; r < a.c; ++r) {
    const T* o = out + (q0 + r) * a.dv;
    const T* g_o = go + (q0 + r) * a.dv;
    T row = cpu::vec::dot(g_o, o, a.dv);
    if (gl) row -= gl[q0 + r];
    T* pr = p + r * a.w;
    const T* dpr = dp + r * a.w;
    const bool* mr = replaced + r * a.w;
    for (int64_t e = 0; e < a.w; ++e) pr[e] = mr[e] ? T(0) : pr[e] * (dpr[e] - row);  // p now holds dS
  }
  // Key path: dK = dS^T Q, then the normalisation's derivative, k = q rho / sqrt(d), rho = (mean(q^2) +
  // eps)^(-1/2)  =>  dq += rho / sqrt(d) (dk - q rho^2 (dk . q) / d).
  const T inv_sqrt_d = static_cast<T>(1.0 / std::sqrt(static_cast<double>(a.d)));
  // dQ of the task's own rows from all W keys at once (khat is consecutive), and dK of all W keys at once.
  cpu::gemm(CblasNoTrans, CblasNoTrans, a.c, a.d, a.w, 1.0, p, a.w, buf.khat.data(), a.d, 1.0, gq + q0 * a.d,
            a.d);
  cpu::gemm(CblasTrans, CblasNoTrans, a.w, a.d, a.c, 1.0, p, a.w, a.qk + q0 * a.d, a.d, 0.0, buf.dk.data(),
            a.d);
  for (int64_t s = 0; s < a.span; ++s) {
    const int64_t k0 = a.row(g, a.window_chunk(ci, s));
    for (int64_t r = 0; r < a.c; ++r) {
      const T* q = a.qk + (k0 + r) * a.d;
      const T* dkr = buf.dk.data() + (s * a.c + r) * a.d;
      T* gqr = gq + (k0 + r) * a.d;
      const T rho = buf.rho[static_cast<size_t>(s * a.c + r)];
      const T dot = cpu::vec::dot(dkr, q, a.d);
      const T coef = rho * rho * dot / static_cast<T>(a.d), scale = rho * inv_sqrt_d;
      for (int64_t k = 0; k < a.d; ++k) gqr[k] += scale * (dkr[k] - q[k] * coef);
    }
  }
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
  std::fill(gq, gq + a.bh * a.n * a.d, T(0));
  std::fill(gv, gv + a.bh * a.n * a.dv, T(0));
  // Chunks ci and ci + k span have disjoint windows when span divides the chunk count (the windows tile the
  // circle); otherwise one chunk per (b, h) and pass.
  const int64_t passes = a.n_ch % a.span == 0 ? a.span : a.n_ch;
  for (int64_t pass = 0; pass < passes; ++pass) {
    const int64_t per_g = (a.n_ch - pass + passes - 1) / passes;
    parallel_for(0, a.bh * per_g, 1, [&](int64_t t0, int64_t t1) {
      TaskBuffers<T> buf(a, true);
      for (int64_t t = t0; t < t1; ++t)
        backward_task(a, t / per_g, pass + (t % per_g) * passes, go, gl, out, gq, gv, buf);
    });
  }
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
