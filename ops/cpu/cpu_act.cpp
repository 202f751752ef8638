// ACT kernels on the CPU: act_frozen_projection's forward and backward, each one pass over the rows (the
// composed default makes about a dozen passes over [h, C] tensors, as slow as the projection it replaces).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "loom/core/parallel.h"
#include "loom/ops/cpu/cpu_backend.h"
#include "loom/ops/cpu/vec_math.h"

namespace loom {
namespace {

// Rows of a chunk of the backward: fixed, so the column sums add the same partial sums in the same order
// whatever the thread count.
constexpr int64_t kChunkRows = 64;

template <typename T>
void copy_rows(const T* src, const int64_t* rows, int64_t n, int64_t C, T* dst, bool gather) {
  parallel_for(0, n, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(C, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t j = lo; j < hi; ++j) {
      const T* from = gather ? src + rows[j] * C : src + j * C;
      T* to = gather ? dst + j * C : dst + rows[j] * C;
      std::memcpy(to, from, static_cast<size_t>(C) * sizeof(T));
    }
  });
}

template <typename T>
void forward(const Tensor& running, const Backend::ActFrozenProjection& a, const Tensor& out,
             const Tensor& inv_sigma) {
  const int64_t n = running.size(0), C = out.size(1), h = a.frozen_rows.numel(), d = a.centred.size(1);
  T* o = out.data<T>();
  copy_rows(running.data<T>(), a.running_rows.data<int64_t>(), n, C, o, /*gather=*/false);
  const T *P = a.projected.data<T>(), *V = a.centred.data<T>(), *sq = a.squared_norm.data<T>();
  const T *s = a.signal_centred.data<T>(), *sp = a.signal_projected.data<T>(), *shift = a.shift.data<T>();
  const int64_t* rows = a.frozen_rows.data<int64_t>();
  T* inv = inv_sigma.data<T>();
  const T ss = cpu::vec::dot(s, s, d), eps = static_cast<T>(a.eps), inv_d = T(1) / static_cast<T>(d);
  parallel_for(0, h, std::max<int64_t>(1, (1 << 13) / std::max<int64_t>(C + d, 1)),
               [&](int64_t lo, int64_t hi) {
                 for (int64_t j = lo; j < hi; ++j) {
                   const T variance = (sq[j] + T(2) * cpu::vec::dot(V + j * d, s, d) + ss) * inv_d;
                   const T r = T(1) / std::sqrt(variance + eps);
                   inv[j] = r;
                   const T* p = P + j * C;
                   T* row = o + rows[j] * C;
                   for (int64_t c = 0; c < C; ++c) row[c] = (p[c] + sp[c]) * r + shift[c];
                 }
               });
}

template <typename T>
void backward(const Tensor& grad, const Backend::ActFrozenProjection& a, const Tensor& inv_sigma,
              const Backend::ActFrozenProjectionGrads& g) {
  const int64_t n = a.running_rows.numel(), C = grad.size(1), h = a.frozen_rows.numel(),
                d = a.centred.size(1);
  const T* G = grad.data<T>();
  if (g.running.defined())
    copy_rows(G, a.running_rows.data<int64_t>(), n, C, g.running.data<T>(), /*gather=*/true);
  const T *P = a.projected.data<T>(), *V = a.centred.data<T>(), *s = a.signal_centred.data<T>();
  const T *sp = a.signal_projected.data<T>(), *inv = inv_sigma.data<T>();
  const int64_t* rows = a.frozen_rows.data<int64_t>();
  T* gP = g.projected.defined() ? g.projected.data<T>() : nullptr;
  T* gV = g.centred.defined() ? g.centred.data<T>() : nullptr;
  T* gsq = g.squared_norm.defined() ? g.squared_norm.data<T>() : nullptr;
  const T two_over_d = T(2) / static_cast<T>(d);
  // Per chunk: the column sums of g * inv (signal_projected), of g (shift), of g_dot * v~ and of g_dot
  // (signal_centred), where g_dot = 2 / d * dL/dvar.
  const int64_t chunks = (h + kChunkRows - 1) / kChunkRows, width = 2 * C + d + 1;
  std::vector<T> partial(static_cast<size_t>(chunks * width), T(0));
  parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t chunk = c0; chunk < c1; ++chunk) {
      T* acc_sp = partial.data() + chunk * width;
      T* acc_shift = acc_sp + C;
      T* acc_v = acc_shift + C;
      T& acc_dot = acc_v[d];
      for (int64_t j = chunk * kChunkRows; j < std::min(h, (chunk + 1) * kChunkRows); ++j) {
        const T* gr = G + rows[j] * C;
        const T* p = P + j * C;
        const T r = inv[j];
        const T g_inv = cpu::vec::dot(gr, p, C) + cpu::vec::dot(gr, sp, C);
        for (int64_t c = 0; c < C; ++c) {
          acc_sp[c] += gr[c] * r;
          acc_shift[c] += gr[c];
        }
        if (gP)
          for (int64_t c = 0; c < C; ++c) gP[j * C + c] = gr[c] * r;
        const T g_var = g_inv * r * r * r * T(-0.5);  // d sigma^-1 / d var = -sigma^-3 / 2
        if (gsq) gsq[j] = g_var / static_cast<T>(d);
        const T g_dot = g_var * two_over_d;
        const T* v = V + j * d;
        if (gV)
          for (int64_t k = 0; k < d; ++k) gV[j * d + k] = g_dot * s[k];
        for (int64_t k = 0; k < d; ++k) acc_v[k] += g_dot * v[k];
        acc_dot += g_dot;
      }
    }
  });
  std::vector<T> total(static_cast<size_t>(width), T(0));
  for (int64_t chunk = 0; chunk < chunks; ++chunk)
    for (int64_t i = 0; i < width; ++i)
      total[static_cast<size_t>(i)] += partial[static_cast<size_t>(chunk * width + i)];
  if (g.signal_projected.defined())
    std::memcpy(g.signal_projected.data<T>(), total.data(), static_cast<size_t>(C) * sizeof(T));
  if (g.shift.defined()) std::memcpy(g.shift.data<T>(), total.data() + C, static_cast<size_t>(C) * sizeof(T));
  if (g.signal_centred.defined()) {
    T* gs = g.signal_centred.data<T>();
    const T sum_dot = total[static_cast<size_t>(2 * C + d)];
    for (int64_t k = 0; k < d; ++k) gs[k] = total[static_cast<size_t>(2 * C + k)] + s[k] * sum_dot;
  }
}

}  // namespace

void CpuBackend::act_frozen_projection(const Tensor& running, const ActFrozenProjection& a, const Tensor& out,
                                       const Tensor& inv_sigma) {
  LOOM_DISPATCH_FLOATING(out.dtype(), "act_frozen_projection",
                         [&] { forward<scalar_t>(running, a, out, inv_sigma); });
}

void CpuBackend::act_frozen_projection_backward(const Tensor& grad, const ActFrozenProjection& a,
                                                const Tensor& inv_sigma,
                                                const ActFrozenProjectionGrads& grads) {
  LOOM_DISPATCH_FLOATING(grad.dtype(), "act_frozen_projection_backward",
                         [&] { backward<scalar_t>(grad, a, inv_sigma, grads); });
}

}  // namespace loom
