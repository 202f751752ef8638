// Fused nn kernels on the CPU: row-wise (log-)softmax with an optional mask, and layer norm. Rows are split
// over the thread pool; within a row every pass is a vectorised loop.
#include <algorithm>
#include <cmath>
#include <limits>

#include "loom/core/parallel.h"
#include "loom/ops/cpu/cpu_backend.h"
#include "loom/ops/cpu/vec_math.h"

namespace loom {
namespace {

// Elements per task.
constexpr int64_t kGrain = 1 << 14;

// max_i x[i] (-inf for n == 0). NaNs are skipped here; they still reach the output through exp(x - max).
template <typename T>
T lane_max(const T* x, int64_t n) {
  // Independent lanes keep the loop vectorisable without -ffast-math.
  constexpr int L = 2 * cpu::vec::kLanes<T>;
  T acc[L];
  std::fill(acc, acc + L, -std::numeric_limits<T>::infinity());
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int k = 0; k < L; ++k) acc[k] = x[i + k] > acc[k] ? x[i + k] : acc[k];
  for (int k = 0; i + k < n; ++k) acc[k] = x[i + k] > acc[k] ? x[i + k] : acc[k];
  T m = acc[0];
  for (int k = 1; k < L; ++k) m = acc[k] > m ? acc[k] : m;
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
  parallel_for(0, rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(d, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* xr = x + r * d;
      T* yr = y + r * d;
      const T* src = xr;
      if (m) {
        // Excluded entries become -inf in the output row, which then serves as the source.
        const bool* mr = m + mask_row_offset(mask, r);
        if (mask_stride == 1) {
          for (int64_t i = 0; i < d; ++i) {
            T v = xr[i];  // loaded outside the select so that the loop vectorises
            yr[i] = mr[i] ? -kInf : v;
          }
        } else {
          for (int64_t i = 0; i < d; ++i) {
            T v = xr[i];
            yr[i] = mr[i * mask_stride] ? -kInf : v;
          }
        }
        src = yr;
      }
      T mx = lane_max(src, d);
      if (mx == -kInf) {  // nothing allowed (or every logit -inf): zeros / -inf rather than NaN
        std::fill(yr, yr + d, log ? -kInf : T(0));
        continue;
      }
      auto exp_shifted = [mx](auto v) { return cpu::vec::exp(v - mx); };
      if (log) {
        T sum = cpu::vec::map_sum(src, d, exp_shifted);
        // (x - max) - log(sum), not x - (max + log(sum)): the latter rounds log(sum) to max's ulp.
        T log_sum = std::log(sum);
        for (int64_t i = 0; i < d; ++i) yr[i] = (src[i] - mx) - log_sum;
      } else {
        cpu::vec::map(src, yr, d, exp_shifted);
        T inv = T(1) / cpu::vec::map_sum(yr, d, [](auto v) { return v; });
        for (int64_t i = 0; i < d; ++i) yr[i] *= inv;
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

}  // namespace loom
