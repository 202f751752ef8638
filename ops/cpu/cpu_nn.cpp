// Fused nn kernels on the CPU: row-wise (log-)softmax with an optional mask, layer norm, and their backward
// passes (plus gelu's). Rows are split over the thread pool; within a row every pass is a vectorised loop.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "loom/core/parallel.h"
#include "loom/ops/cpu/cpu_backend.h"
#include "loom/ops/cpu/vec_math.h"

namespace loom {
namespace {

// Elements per task.
constexpr int64_t kGrain = 1 << 14;

// max_i x[i] (-inf for n == 0). NaNs are skipped here; they still reach the output through exp(x - max).
// Written on vector types: GCC leaves the same loop over a scalar array of lanes unvectorised (scalar vmaxss).
template <typename T>
T lane_max(const T* x, int64_t n) {
  using V = cpu::vec::Vec<T>;
  constexpr int64_t L = cpu::vec::kLanes<T>;
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  V acc0 = cpu::vec::splat<V>(kNegInf), acc1 = acc0;
  int64_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    V v0, v1;
    std::memcpy(&v0, x + i, sizeof(V));
    std::memcpy(&v1, x + i + L, sizeof(V));
    acc0 = v0 > acc0 ? v0 : acc0;  // a NaN compares false and leaves the lane as it was
    acc1 = v1 > acc1 ? v1 : acc1;
  }
  acc0 = acc1 > acc0 ? acc1 : acc0;
  T m = kNegInf;
  for (int64_t k = 0; k < L; ++k) m = acc0[k] > m ? acc0[k] : m;
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// Element offset of the mask at the start of row `row` of a tensor whose last dim is the row.
int64_t mask_row_offset(const Tensor& mask, int64_t row) {
  int64_t off = 0;
  for (int64_t d = mask.dim() - 2; d >= 0; --d) {
    int64_t size = mask.size(d);
    off += (row % size) * mask.stride(d);
    row /= size;
  }
  return off;
}

template <typename T>
void softmax_rows(const Tensor& in, const Tensor& mask, bool log, const Tensor& out) {
  int64_t d = in.dim() == 0 ? 1 : in.size(-1);
  int64_t rows = d == 0 ? 0 : in.numel() / d;
  const T* x = in.data<T>();
  T* y = out.data<T>();
  const bool* m = mask.defined() ? mask.data<bool>() : nullptr;
  int64_t mask_stride = mask.defined() && mask.dim() > 0 ? mask.stride(-1) : 0;
  constexpr T kInf = std::numeric_limits<T>::infinity();
  // A large output is written once, with streaming stores, from a row computed in a scratch buffer that stays
  // in L1; a small one in place, where it then sits in the cache for whoever reads it next.
  const bool stream = out.numel() * static_cast<int64_t>(sizeof(T)) >= cpu::vec::kStreamingStoreBytes;
  parallel_for(0, rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(d, 1)), [&](int64_t lo, int64_t hi) {
    std::vector<T> scratch(stream ? static_cast<size_t>(d) : 0);
    for (int64_t r = lo; r < hi; ++r) {
      const T* xr = x + r * d;
      T* yr = y + r * d;
      T* work = stream ? scratch.data() : yr;
      const T* src = xr;
      if (m) {
        // Excluded entries become -inf in the working row, which then serves as the source.
        const bool* mr = m + mask_row_offset(mask, r);
        if (mask_stride == 1) {
          for (int64_t i = 0; i < d; ++i) {
            T v = xr[i];  // loaded outside the select so that the loop vectorises
            work[i] = mr[i] ? -kInf : v;
          }
        } else {
          for (int64_t i = 0; i < d; ++i) {
            T v = xr[i];
            work[i] = mr[i * mask_stride] ? -kInf : v;
          }
        }
        src = work;
      }
      T mx = lane_max(src, d);
      if (mx == -kInf) {  // nothing allowed (or every logit -inf): zeros / -inf rather than NaN
        std::fill(yr, yr + d, log ? -kInf : T(0));
        continue;
      }
      auto exp_shifted = [mx](auto v) { return cpu::vec::exp_nonpositive(v - mx); };
      if (log) {
        T sum = cpu::vec::map_sum(src, d, exp_shifted);
        // (x - max) - log(sum), not x - (max + log(sum)): the latter rounds log(sum) to max's ulp.
        T log_sum = std::log(sum);
        auto shift = [mx, log_sum](auto v) { return (v - mx) - log_sum; };
        if (stream) {
          cpu::vec::map_stream(src, yr, d, shift);
        } else {
          for (int64_t i = 0; i < d; ++i) yr[i] = shift(src[i]);
        }
      } else {
        T inv = T(1) / cpu::vec::map_store_sum(src, work, d, exp_shifted);
        if (stream) {
          cpu::vec::map_stream(work, yr, d, [inv](auto v) { return v * inv; });
        } else {
          for (int64_t i = 0; i < d; ++i) yr[i] *= inv;
        }
      }
    }
  });
}

template <typename T>
void layer_norm_rows(const Tensor& in, const Tensor& weight, const Tensor& bias, double eps,
                     const Tensor& out, const Tensor& mean, const Tensor& rstd) {
  int64_t d = in.size(-1);
  int64_t rows = in.numel() / std::max<int64_t>(d, 1);
  const T* x = in.data<T>();
  T* y = out.data<T>();
  const T* w = weight.defined() ? weight.data<T>() : nullptr;
  const T* b = bias.defined() ? bias.data<T>() : nullptr;
  T* mean_out = mean.data<T>();
  T* rstd_out = rstd.data<T>();
  parallel_for(0, rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(d, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* xr = x + r * d;
      T* yr = y + r * d;
      // Two passes over x - k with k = x[0]: shifting by a sample keeps the partial sums at the scale of the
      // spread rather than of the mean (x - k is exact for nearby floats), and the variance is taken about
      // the mean, so neither a large offset nor E[x^2] - E[x]^2 cancellation costs precision.
      const T k = xr[0];
      T mu = cpu::vec::map_sum(xr, d, [k](auto v) { return v - k; }) / static_cast<T>(d);
      T var = cpu::vec::map_sum(xr, d,
                                [k, mu](auto v) {
                                  auto c = (v - k) - mu;
                                  return c * c;
                                }) /
              static_cast<T>(d);
      T rs = T(1) / std::sqrt(var + static_cast<T>(eps));
      mean_out[r] = k + mu;
      rstd_out[r] = rs;
      if (w && b) {
        for (int64_t i = 0; i < d; ++i) yr[i] = ((xr[i] - k) - mu) * rs * w[i] + b[i];
      } else if (w) {
        for (int64_t i = 0; i < d; ++i) yr[i] = ((xr[i] - k) - mu) * rs * w[i];
      } else if (b) {
        for (int64_t i = 0; i < d; ++i) yr[i] = ((xr[i] - k) - mu) * rs + b[i];
      } else {
        for (int64_t i = 0; i < d; ++i) yr[i] = ((xr[i] - k) - mu) * rs;
      }
    }
  });
}

// ---- backward ------------------------------------------------------------------------------------------

// y[i] = f(a[i], b[i]) for i < n on whole vectors, the tail included (as vec::map, with two inputs).
template <typename T, typename F>
void map2(const T* a, const T* b, T* y, int64_t n, F f) {
  using V = cpu::vec::Vec<T>;
  constexpr int64_t L = cpu::vec::kLanes<T>;
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    V va, vb;
    std::memcpy(&va, a + i, sizeof(V));
    std::memcpy(&vb, b + i, sizeof(V));
    V v = f(va, vb);
    std::memcpy(y + i, &v, sizeof(V));
  }
  if (i < n) {
    V v = f(cpu::vec::load_partial(a + i, n - i), cpu::vec::load_partial(b + i, n - i));
    std::memcpy(y + i, &v, static_cast<size_t>(n - i) * sizeof(T));
  }
}

// sum_i a[i] * b[i] on whole vectors with a zero-padded tail (as map_sum).
template <typename T>
T lane_dot(const T* a, const T* b, int64_t n) {
  using V = cpu::vec::Vec<T>;
  constexpr int64_t L = cpu::vec::kLanes<T>;
  V acc0{}, acc1{};
  int64_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    V a0, a1, b0, b1;
    std::memcpy(&a0, a + i, sizeof(V));
    std::memcpy(&a1, a + i + L, sizeof(V));
    std::memcpy(&b0, b + i, sizeof(V));
    std::memcpy(&b1, b + i + L, sizeof(V));
    acc0 += a0 * b0;
    acc1 += a1 * b1;
  }
  for (; i < n; i += L) {
    int64_t m = n - i < L ? n - i : L;
    acc0 += cpu::vec::load_partial(a + i, m) * cpu::vec::load_partial(b + i, m);
  }
  acc0 += acc1;
  T s = 0;
  for (int64_t k = 0; k < L; ++k) s += acc0[k];
  return s;
}

template <typename T>
T lane_sum(const T* a, int64_t n) {
  return cpu::vec::map_sum(a, n, [](auto v) { return v; });
}

template <typename T>
void softmax_backward_rows(const Tensor& grad, const Tensor& out, const Tensor& grad_in) {
  const int64_t d = out.size(-1);
  const int64_t rows = out.numel() / d;
  const T* g = grad.data<T>();
  const T* y = out.data<T>();
  T* gi = grad_in.data<T>();
  parallel_for(0, rows, std::max<int64_t>(1, kGrain / d), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* gr = g + r * d;
      const T* yr = y + r * d;
      T* ir = gi + r * d;
      const T s = lane_dot(gr, yr, d);
      for (int64_t i = 0; i < d; ++i) ir[i] = yr[i] * (gr[i] - s);
    }
  });
}

template <typename T>
void log_softmax_backward_rows(const Tensor& grad, const Tensor& out, const Tensor& mask,
                               const Tensor& grad_in) {
  const int64_t d = out.size(-1);
  const int64_t rows = out.numel() / d;
  const T* g = grad.data<T>();
  const T* y = out.data<T>();
  T* gi = grad_in.data<T>();
  const bool* m = mask.defined() ? mask.data<bool>() : nullptr;
  const int64_t mask_stride = m ? mask.stride(-1) : 0;
  parallel_for(0, rows, std::max<int64_t>(1, kGrain / d), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* gr = g + r * d;
      const T* yr = y + r * d;
      T* ir = gi + r * d;
      if (!m) {
        const T s = lane_sum(gr, d);
        map2(gr, yr, ir, d, [s](auto gv, auto yv) { return gv - cpu::vec::exp(yv) * s; });
        continue;
      }
      // Excluded outputs are constants: their gradient is dropped before the row sum, and they get none back
      // (zeroed again at the end, so that even a non-finite sum cannot reach them through 0 * inf).
      const bool* mr = m + mask_row_offset(mask, r);
      for (int64_t i = 0; i < d; ++i) {
        T v = gr[i];
        ir[i] = mr[i * mask_stride] ? T(0) : v;
      }
      const T s = lane_sum(ir, d);
      map2(static_cast<const T*>(ir), yr, ir, d,
           [s](auto gv, auto yv) { return gv - cpu::vec::exp(yv) * s; });
      for (int64_t i = 0; i < d; ++i) {
        T v = ir[i];
        ir[i] = mr[i * mask_stride] ? T(0) : v;
      }
    }
  });
}

// Row sums of gh = grad * weight and gh * xhat, on whole vectors with a zero-padded tail (as map_sum; the
// weight test is hoisted out of the loop).
template <bool kWeight, typename T>
void layer_norm_row_sums(const T* gr, const T* xr, const T* w, T m, T s, int64_t d, T& c1, T& c2) {
  using V = cpu::vec::Vec<T>;
  constexpr int64_t L = cpu::vec::kLanes<T>;
  V a1{}, a2{};
  auto step = [&](V gv, V xv, V wv) {
    V gh = kWeight ? gv * wv : gv;
    a1 += gh;
    a2 += gh * ((xv - m) * s);
  };
  int64_t i = 0;
  for (; i + L <= d; i += L) {
    V gv, xv, wv{};
    std::memcpy(&gv, gr + i, sizeof(V));
    std::memcpy(&xv, xr + i, sizeof(V));
    if constexpr (kWeight) std::memcpy(&wv, w + i, sizeof(V));
    step(gv, xv, wv);
  }
  if (i < d) {
    // Zero-padded grad lanes contribute 0 to both sums whatever x and w hold there.
    V wv{};
    if constexpr (kWeight) wv = cpu::vec::load_partial(w + i, d - i);
    step(cpu::vec::load_partial(gr + i, d - i), cpu::vec::load_partial(xr + i, d - i), wv);
  }
  c1 = 0;
  c2 = 0;
  for (int64_t k = 0; k < L; ++k) {
    c1 += a1[k];
    c2 += a2[k];
  }
}

// Layer norm backward. With xhat = (x - mean) * rstd and gh = grad * weight, per row
//   grad_in = rstd * (gh - mean(gh) - xhat * mean(gh * xhat)),
// and over rows grad_weight = sum(grad * xhat), grad_bias = sum(grad). The column sums are taken per block of
// rows into a partial buffer, then added up block by block: the block count depends only on the shape, so
// the result does not depend on the number of threads.
template <typename T>
void layer_norm_backward_rows(const Tensor& grad, const Tensor& in, const Tensor& mean, const Tensor& rstd,
                              const Tensor& weight, const Tensor& grad_in, const Tensor& grad_weight,
                              const Tensor& grad_bias) {
  const int64_t rows = in.size(0), d = in.size(1);
  T* gw_out = grad_weight.defined() ? grad_weight.data<T>() : nullptr;
  T* gb_out = grad_bias.defined() ? grad_bias.data<T>() : nullptr;
  if (rows == 0 || d == 0) {
    if (gw_out) std::fill(gw_out, gw_out + d, T(0));
    if (gb_out) std::fill(gb_out, gb_out + d, T(0));
    return;
  }
  const T* g = grad.data<T>();
  const T* x = in.data<T>();
  const T* mu = mean.data<T>();
  const T* rs = rstd.data<T>();
  const T* w = weight.defined() ? weight.data<T>() : nullptr;
  T* gx = grad_in.defined() ? grad_in.data<T>() : nullptr;

  constexpr int64_t kMaxBlocks = 64;
  const int64_t min_rows = std::max<int64_t>(1, kGrain / d);
  const int64_t blocks = std::min(kMaxBlocks, (rows + min_rows - 1) / min_rows);
  const int64_t block_rows = (rows + blocks - 1) / blocks;
  const bool columns = gw_out || gb_out;
  std::vector<T> part_w(gw_out ? static_cast<size_t>(blocks * d) : 0, T(0));
  std::vector<T> part_b(gb_out ? static_cast<size_t>(blocks * d) : 0, T(0));
  const T inv_d = T(1) / static_cast<T>(d);

  parallel_for(0, blocks, 1, [&](int64_t blo, int64_t bhi) {
    for (int64_t blk = blo; blk < bhi; ++blk) {
      T* pw = gw_out ? part_w.data() + blk * d : nullptr;
      T* pb = gb_out ? part_b.data() + blk * d : nullptr;
      const int64_t r_end = std::min(rows, (blk + 1) * block_rows);
      for (int64_t r = blk * block_rows; r < r_end; ++r) {
        const T* gr = g + r * d;
        const T* xr = x + r * d;
        const T m = mu[r], s = rs[r];
        if (columns) {
          if (pw)
            for (int64_t i = 0; i < d; ++i) pw[i] += gr[i] * ((xr[i] - m) * s);
          if (pb)
            for (int64_t i = 0; i < d; ++i) pb[i] += gr[i];
        }
        if (!gx) continue;
        T c1, c2;
        if (w)
          layer_norm_row_sums<true>(gr, xr, w, m, s, d, c1, c2);
        else
          layer_norm_row_sums<false>(gr, xr, w, m, s, d, c1, c2);
        c1 *= inv_d;
        c2 *= inv_d;
        T* gxr = gx + r * d;
        if (w) {
          for (int64_t j = 0; j < d; ++j) gxr[j] = s * (gr[j] * w[j] - c1 - ((xr[j] - m) * s) * c2);
        } else {
          for (int64_t j = 0; j < d; ++j) gxr[j] = s * (gr[j] - c1 - ((xr[j] - m) * s) * c2);
        }
      }
    }
  });
  if (!columns) return;
  parallel_for(0, d, std::max<int64_t>(1, kGrain / blocks), [&](int64_t lo, int64_t hi) {
    for (T* out_col : {gw_out, gb_out}) {
      if (!out_col) continue;
      const T* part = out_col == gw_out ? part_w.data() : part_b.data();
      for (int64_t i = lo; i < hi; ++i) out_col[i] = part[i];
      for (int64_t blk = 1; blk < blocks; ++blk)
        for (int64_t i = lo; i < hi; ++i) out_col[i] += part[blk * d + i];
    }
  });
}

// gelu'(x) = Phi(x) + x phi(x) (exact), or the derivative of x * sigmoid(2u), u = k0 (x + k1 x^3) (tanh
// form).
template <typename V>
V gelu_grad(V x) {
  using T = typename cpu::vec::Traits<V>::T;
  V a = cpu::vec::fabs(x) * T(0.70710678118654752);
  V c;
  if constexpr (std::is_same_v<T, float>) {
    c = cpu::vec::erfc_nonneg(a);
  } else {
    for (int64_t k = 0; k < cpu::vec::kLanes<T>; ++k) c[k] = std::erfc(a[k]);
  }
  V cdf = x >= T(0) ? T(1) - T(0.5) * c : T(0.5) * c;
  V pdf = cpu::vec::exp(T(-0.5) * x * x) * T(0.3989422804014327);
  return cdf + x * pdf;
}

template <typename V>
V gelu_tanh_grad(V x) {
  using T = typename cpu::vec::Traits<V>::T;
  constexpr T k0 = T(0.7978845608028654), k1 = T(0.044715);
  V x2 = x * x;
  V s = cpu::vec::sigmoid(T(2) * k0 * x * (T(1) + k1 * x2));
  return s + x * s * (T(1) - s) * (T(2) * k0) * (T(1) + T(3) * k1 * x2);
}

template <typename T>
void gelu_backward_elems(const Tensor& grad, const Tensor& in, bool tanh_approx, const Tensor& grad_in) {
  const int64_t n = in.numel();
  const T* g = grad.data<T>();
  const T* x = in.data<T>();
  T* gi = grad_in.data<T>();
  parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) {
    if (tanh_approx)
      map2(g + lo, x + lo, gi + lo, hi - lo, [](auto gv, auto xv) { return gv * gelu_tanh_grad(xv); });
    else
      map2(g + lo, x + lo, gi + lo, hi - lo, [](auto gv, auto xv) { return gv * gelu_grad(xv); });
  });
}

template <typename T>
void relu_backward_elems(const Tensor& grad, const Tensor& out, const Tensor& grad_in) {
  const T* g = grad.data<T>();
  const T* y = out.data<T>();
  T* gi = grad_in.data<T>();
  parallel_for(0, out.numel(), kGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const T gv = g[i], yv = y[i];  // both loaded before the select, so that the loop vectorises
      gi[i] = yv > T(0) ? gv : T(0);
    }
  });
}

}  // namespace

void CpuBackend::softmax(const Tensor& in, const Tensor& mask, bool log, const Tensor& out) {
  if (in.numel() == 0) return;
  LOOM_DISPATCH_FLOATING(in.dtype(), log ? "log_softmax" : "softmax",
                         [&] { softmax_rows<scalar_t>(in, mask, log, out); });
}

void CpuBackend::layer_norm(const Tensor& in, const Tensor& weight, const Tensor& bias, double eps,
                            const Tensor& out, const Tensor& mean, const Tensor& rstd) {
  if (in.numel() == 0) return;
  LOOM_DISPATCH_FLOATING(in.dtype(), "layer_norm",
                         [&] { layer_norm_rows<scalar_t>(in, weight, bias, eps, out, mean, rstd); });
}

void CpuBackend::softmax_backward(const Tensor& grad, const Tensor& out, const Tensor& grad_in) {
  if (out.numel() == 0) return;
  LOOM_DISPATCH_FLOATING(out.dtype(), "softmax_backward",
                         [&] { softmax_backward_rows<scalar_t>(grad, out, grad_in); });
}

void CpuBackend::log_softmax_backward(const Tensor& grad, const Tensor& out, const Tensor& mask,
                                      const Tensor& grad_in) {
  if (out.numel() == 0) return;
  LOOM_DISPATCH_FLOATING(out.dtype(), "log_softmax_backward",
                         [&] { log_softmax_backward_rows<scalar_t>(grad, out, mask, grad_in); });
}

void CpuBackend::layer_norm_backward(const Tensor& grad, const Tensor& in, const Tensor& mean,
                                     const Tensor& rstd, const Tensor& weight, const Tensor& grad_in,
                                     const Tensor& grad_weight, const Tensor& grad_bias) {
  LOOM_DISPATCH_FLOATING(in.dtype(), "layer_norm_backward", [&] {
    layer_norm_backward_rows<scalar_t>(grad, in, mean, rstd, weight, grad_in, grad_weight, grad_bias);
  });
}

void CpuBackend::gelu_backward(const Tensor& grad, const Tensor& in, bool tanh_approx,
                               const Tensor& grad_in) {
  if (in.numel() == 0) return;
  LOOM_DISPATCH_FLOATING(in.dtype(), "gelu_backward",
                         [&] { gelu_backward_elems<scalar_t>(grad, in, tanh_approx, grad_in); });
}

void CpuBackend::relu_backward(const Tensor& grad, const Tensor& out, const Tensor& grad_in) {
  if (out.numel() == 0) return;
  LOOM_DISPATCH_FLOATING(out.dtype(), "relu_backward",
                         [&] { relu_backward_elems<scalar_t>(grad, out, grad_in); });
}

}  // namespace loom
