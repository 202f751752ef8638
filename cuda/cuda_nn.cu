// Fused nn kernels on the GPU: row-wise (log-)softmax with an optional mask, layer norm, their backward
// passes, gelu's and relu's backward, and the Adam update. Row kernels give each row a warp (or a block, for
// rows longer than kWarpRowLimit); row sums accumulate as row_reduce.cuh's reductions do (float32 in double),
// combined in a fixed order, so results are bit-identical from run to run. They follow ops/cpu/cpu_nn.cpp
// formula for formula.
#include <cmath>
#include <limits>

#include "loom/cuda/cuda_backend_impl.h"
#include "loom/cuda/launch.cuh"
#include "loom/cuda/row_reduce.cuh"

namespace loom::cuda {
namespace {

template <typename T>
__device__ __forceinline__ T neg_inf() {
  return -std::numeric_limits<T>::infinity();
}

// --- softmax -----------------------------------------------------------------------------------------------

template <typename T>
struct SoftmaxRows {
  const T* x;
  T* y;
  const bool* mask;  // nullptr: no mask
  RowOffsets mask_rows;
  int64_t d;
  bool log_softmax;

  template <int G>
  __device__ void run(int64_t row, int lane) const {
    using A = Accumulator<T>;
    const T* xr = x + row * d;
    T* yr = y + row * d;
    const bool* mr = mask ? mask + mask_rows.at(row) : nullptr;
    const int64_t ms = mask_rows.last_stride;
    // Excluded entries read as -inf.
    auto logit = [xr, mr, ms](int64_t j) -> T { return (mr && mr[j * ms]) ? neg_inf<T>() : xr[j]; };
    // The maximum skips NaNs (as the CPU's does); they still reach the row through exp(x - max).
    const T mx = row_allreduce<G>(d, lane, neg_inf<T>(), logit, MaxSkipNan{});
    if (mx == neg_inf<T>()) {  // nothing allowed (or every logit -inf): zeros / -inf rather than NaN
      for (int64_t j = lane; j < d; j += G) yr[j] = log_softmax ? neg_inf<T>() : T(0);
      return;
    }
    const A sum = row_allreduce<G>(
        d, lane, A(0), [logit, mx](int64_t j) { return static_cast<A>(exp(logit(j) - mx)); }, Plus{});
    if (log_softmax) {
      // (x - max) - log(sum), not x - (max + log(sum)): the latter rounds log(sum) to max's ulp.
      const T log_sum = log(static_cast<T>(sum));
      for (int64_t j = lane; j < d; j += G) yr[j] = (logit(j) - mx) - log_sum;
    } else {
      const T inv = T(1) / static_cast<T>(sum);
      for (int64_t j = lane; j < d; j += G) yr[j] = exp(logit(j) - mx) * inv;
    }
  }
};

template <typename T>
struct SoftmaxBackwardRows {
  const T* g;
  const T* y;
  T* gi;
  int64_t d;

  template <int G>
  __device__ void run(int64_t row, int lane) const {
    using A = Accumulator<T>;
    const T* gr = g + row * d;
    const T* yr = y + row * d;
    T* ir = gi + row * d;
    const T s = static_cast<T>(row_allreduce<G>(
        d, lane, A(0), [gr, yr](int64_t j) { return static_cast<A>(gr[j]) * static_cast<A>(yr[j]); },
        Plus{}));
    for (int64_t j = lane; j < d; j += G) ir[j] = yr[j] * (gr[j] - s);
  }
};

// Excluded outputs are constants: their gradient is dropped before the row sum and they get none back.
template <typename T>
struct LogSoftmaxBackwardRows {
  const T* g;
  const T* y;
  T* gi;
  const bool* mask;
  RowOffsets mask_rows;
  int64_t d;

  template <int G>
  __device__ void run(int64_t row, int lane) const {
    using A = Accumulator<T>;
    const T* gr = g + row * d;
    const T* yr = y + row * d;
    T* ir = gi + row * d;
    const bool* mr = mask ? mask + mask_rows.at(row) : nullptr;
    const int64_t ms = mask_rows.last_stride;
    auto excluded = [mr, ms](int64_t j) { return mr && mr[j * ms]; };
    const T s = static_cast<T>(row_allreduce<G>(
        d, lane, A(0), [gr, excluded](int64_t j) { return excluded(j) ? A(0) : static_cast<A>(gr[j]); },
        Plus{}));
    for (int64_t j = lane; j < d; j += G) ir[j] = excluded(j) ? T(0) : gr[j] - exp(yr[j]) * s;
  }
};

// --- layer norm ----------------------------------------------------------------------------------------

// Two passes over x - k with k = x[0] (see the CPU kernel): neither a large offset nor E[x^2] - E[x]^2
// cancellation costs precision.
template <typename T>
struct LayerNormRows {
  const T* x;
  const T* w;  // nullptr: ones
  const T* b;  // nullptr: zeros
  T* y;
  T* mean;
  T* rstd;
  int64_t d;
  double eps;

  template <int G>
  __device__ void run(int64_t row, int lane) const {
    using A = Accumulator<T>;
    const T* xr = x + row * d;
    T* yr = y + row * d;
    const T k = xr[0];
    const A mu = row_allreduce<G>(
                     d, lane, A(0), [xr, k](int64_t j) { return static_cast<A>(xr[j] - k); }, Plus{}) /
                 static_cast<A>(d);
    const A var = row_allreduce<G>(
                      d, lane, A(0),
                      [xr, k, mu](int64_t j) {
                        A c = static_cast<A>(xr[j] - k) - mu;
                        return c * c;
                      },
                      Plus{}) /
                  static_cast<A>(d);
    const T rs = static_cast<T>(A(1) / sqrt(var + static_cast<A>(eps)));
    if (lane == 0) {
      mean[row] = static_cast<T>(static_cast<A>(k) + mu);
      rstd[row] = rs;
    }
    const T m = static_cast<T>(mu);
    for (int64_t j = lane; j < d; j += G) {
      T v = ((xr[j] - k) - m) * rs;
      if (w) v *= w[j];
      if (b) v += b[j];
      yr[j] = v;
    }
  }
};

// grad_in = rstd * (gh - mean(gh) - xhat * mean(gh * xhat)), gh = grad * weight, xhat = (x - mean) * rstd.
template <typename T>
struct LayerNormBackwardRows {
  const T* g;
  const T* x;
  const T* mean;
  const T* rstd;
  const T* w;  // nullptr: ones
  T* gx;
  int64_t d;

  template <int G>
  __device__ void run(int64_t row, int lane) const {
    using A = Accumulator<T>;
    const T* gr = g + row * d;
    const T* xr = x + row * d;
    const T m = mean[row], s = rstd[row];
    const T* wr = w;
    auto gh = [gr, wr](int64_t j) { return wr ? gr[j] * wr[j] : gr[j]; };
    const A c1 = row_allreduce<G>(
                     d, lane, A(0), [gh](int64_t j) { return static_cast<A>(gh(j)); }, Plus{}) /
                 static_cast<A>(d);
    const A c2 =
        row_allreduce<G>(
            d, lane, A(0),
            [gh, xr, m, s](int64_t j) { return static_cast<A>(gh(j)) * static_cast<A>((xr[j] - m) * s); },
            Plus{}) /
        static_cast<A>(d);
    const T c1t = static_cast<T>(c1), c2t = static_cast<T>(c2);
    T* gxr = gx + row * d;
    for (int64_t j = lane; j < d; j += G) gxr[j] = s * (gh(j) - c1t - ((xr[j] - m) * s) * c2t);
  }
};

// Column sums of grad * xhat and grad over a chunk of rows: block (column tile, chunk), a thread a column, so
// reads are coalesced along the row. The chunks are then added in order: no atomics, a fixed result.
template <typename T, typename A>
__global__ void layer_norm_column_partials(const T* g, const T* x, const T* mean, const T* rstd, int64_t rows,
                                           int64_t d, int64_t chunk_rows, A* part_w, A* part_b) {
  const int64_t col = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (col >= d) return;
  const int64_t chunk = blockIdx.y;
  const int64_t r_end = (chunk + 1) * chunk_rows < rows ? (chunk + 1) * chunk_rows : rows;
  A sw = 0, sb = 0;
  for (int64_t r = chunk * chunk_rows; r < r_end; ++r) {
    const T gv = g[r * d + col];
    if (part_w) sw += static_cast<A>(gv) * static_cast<A>((x[r * d + col] - mean[r]) * rstd[r]);
    sb += static_cast<A>(gv);
  }
  if (part_w) part_w[chunk * d + col] = sw;
  if (part_b) part_b[chunk * d + col] = sb;
}

template <typename T, typename A>
__global__ void sum_chunks(const A* part, int64_t chunks, int64_t d, T* out) {
  for (int64_t col = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; col < d;
       col += int64_t{gridDim.x} * blockDim.x) {
    A s = 0;
    for (int64_t c = 0; c < chunks; ++c) s += part[c * d + col];
    out[col] = static_cast<T>(s);
  }
}

// --- elementwise backward kernels and Adam -------------------------------------------------------------

// gelu'(x) = Phi(x) + x phi(x) (exact), or the derivative of x * sigmoid(2u), u = k0 (x + k1 x^3) (tanh
// form).
template <typename T, bool kTanh>
struct GeluBackward {
  T* gi;
  const T* g;
  const T* x;
  __device__ __forceinline__ T derivative(T v) const {
    if constexpr (kTanh) {
      constexpr T k0 = T(0.7978845608028654), k1 = T(0.044715);
      const T v2 = v * v;
      const T s = T(1) / (T(1) + exp(-(T(2) * k0 * v * (T(1) + k1 * v2))));
      return s + v * s * (T(1) - s) * (T(2) * k0) * (T(1) + T(3) * k1 * v2);
    } else {
      const T cdf = T(0.5) * erfc(-v * T(0.70710678118654752));
      const T pdf = exp(T(-0.5) * v * v) * T(0.3989422804014327);
      return cdf + v * pdf;
    }
  }
  __device__ __forceinline__ void operator()(int64_t i) const { gi[i] = g[i] * derivative(x[i]); }
  __device__ __forceinline__ void operator()(const Offsets<3>& o) const {
    gi[o.v[0]] = g[o.v[1]] * derivative(x[o.v[2]]);
  }
};

// grad where out > 0, else 0 (0 at out = 0 and NaN, as PyTorch's threshold_backward).
template <typename T>
struct ReluBackward {
  T* gi;
  const T* g;
  const T* y;
  __device__ __forceinline__ void operator()(int64_t i) const { gi[i] = y[i] > T(0) ? g[i] : T(0); }
  __device__ __forceinline__ void operator()(const Offsets<3>& o) const {
    gi[o.v[0]] = y[o.v[2]] > T(0) ? g[o.v[1]] : T(0);
  }
};

// The operation order of the CPU kernel and torch.optim, in T's precision.
template <typename T>
__global__ void adam_kernel(T* p, const T* g, T* m, T* v, int64_t n, Backend::AdamStep s) {
  const T beta1 = static_cast<T>(s.beta1), beta2 = static_cast<T>(s.beta2);
  const T one_minus_beta1 = static_cast<T>(1 - s.beta1), one_minus_beta2 = static_cast<T>(1 - s.beta2);
  const T decay = static_cast<T>(1 - s.lr * s.weight_decay), l2 = static_cast<T>(s.weight_decay);
  const T bc2 = static_cast<T>(s.bias_correction2_sqrt), eps = static_cast<T>(s.eps);
  const T neg_step = static_cast<T>(-s.step_size);
  const bool any_decay = s.weight_decay != 0;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    T pi = p[i], gi = g[i];
    if (any_decay) {
      if (s.decoupled) {
        pi = pi * decay;
      } else {
        gi = gi + pi * l2;
      }
    }
    const T mi = m[i] * beta1 + gi * one_minus_beta1;
    const T vi = v[i] * beta2 + (gi * gi) * one_minus_beta2;
    const T denom = sqrt(vi) / bc2 + eps;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi + (mi / denom) * neg_step;
  }
}

}  // namespace

void CudaBackend::softmax(const Tensor& in, const Tensor& mask, bool log, const Tensor& out) {
  const int64_t d = in.dim() == 0 ? 1 : in.size(-1);
  const int64_t rows = d == 0 ? 0 : in.numel() / d;
  if (rows == 0) return;
  DeviceGuard guard(device_);
  LOOM_DISPATCH_FLOATING(in.dtype(), log ? "log_softmax" : "softmax", [&] {
    SoftmaxRows<scalar_t> f{ptr<scalar_t>(in),
                            ptr<scalar_t>(out),
                            mask.defined() ? ptr<bool>(mask) : nullptr,
                            mask.defined() ? row_offsets(mask) : RowOffsets{},
                            d,
                            log};
    launch_rows(rows, d, f);
  });
}

void CudaBackend::softmax_backward(const Tensor& grad, const Tensor& out, const Tensor& grad_in) {
  const int64_t d = out.size(-1);
  if (grad_in.numel() == 0) return;
  DeviceGuard guard(device_);
  LOOM_DISPATCH_FLOATING(out.dtype(), "softmax backward", [&] {
    SoftmaxBackwardRows<scalar_t> f{ptr<scalar_t>(grad), ptr<scalar_t>(out), ptr<scalar_t>(grad_in), d};
    launch_rows(out.numel() / d, d, f);
  });
}

void CudaBackend::log_softmax_backward(const Tensor& grad, const Tensor& out, const Tensor& mask,
                                       const Tensor& grad_in) {
  const int64_t d = out.size(-1);
  if (grad_in.numel() == 0) return;
  DeviceGuard guard(device_);
  LOOM_DISPATCH_FLOATING(out.dtype(), "log_softmax backward", [&] {
    LogSoftmaxBackwardRows<scalar_t> f{ptr<scalar_t>(grad),
                                       ptr<scalar_t>(out),
                                       ptr<scalar_t>(grad_in),
                                       mask.defined() ? ptr<bool>(mask) : nullptr,
                                       mask.defined() ? row_offsets(mask) : RowOffsets{},
                                       d};
    launch_rows(out.numel() / d, d, f);
  });
}

void CudaBackend::layer_norm(const Tensor& in, const Tensor& weight, const Tensor& bias, double eps,
                             const Tensor& out, const Tensor& mean, const Tensor& rstd) {
  const int64_t d = in.size(-1);
  if (d == 0 || in.numel() == 0) return;
  DeviceGuard guard(device_);
  LOOM_DISPATCH_FLOATING(in.dtype(), "layer_norm", [&] {
    using T = scalar_t;
    LayerNormRows<T> f{ptr<T>(in),
                       weight.defined() ? ptr<T>(weight) : nullptr,
                       bias.defined() ? ptr<T>(bias) : nullptr,
                       ptr<T>(out),
                       ptr<T>(mean),
                       ptr<T>(rstd),
                       d,
                       eps};
    launch_rows(in.numel() / d, d, f);
  });
}

void CudaBackend::layer_norm_backward(const Tensor& grad, const Tensor& in, const Tensor& mean,
                                      const Tensor& rstd, const Tensor& weight, const Tensor& grad_in,
                                      const Tensor& grad_weight, const Tensor& grad_bias) {
  const int64_t rows = in.size(0), d = in.size(1);
  DeviceGuard guard(device_);
  if (rows == 0 || d == 0) {
    if (grad_weight.defined()) fill(grad_weight, 0.0);
    if (grad_bias.defined()) fill(grad_bias, 0.0);
    return;
  }
  LOOM_DISPATCH_FLOATING(in.dtype(), "layer_norm backward", [&] {
    using T = scalar_t;
    using A = Accumulator<T>;
    if (grad_in.defined()) {
      LayerNormBackwardRows<T> f{ptr<T>(grad),
                                 ptr<T>(in),
                                 ptr<T>(mean),
                                 ptr<T>(rstd),
                                 weight.defined() ? ptr<T>(weight) : nullptr,
                                 ptr<T>(grad_in),
                                 d};
      launch_rows(rows, d, f);
    }
    if (!grad_weight.defined() && !grad_bias.defined()) return;
    // At most 1024 chunks of at least 32 rows each.
    const int64_t chunk_rows = std::max<int64_t>(32, (rows + 1023) / 1024);
    const int64_t chunks = (rows + chunk_rows - 1) / chunk_rows;
    const TensorOptions part_options{dtype_of_v<A>, in.device()};
    Tensor part_w = grad_weight.defined() ? Tensor::empty({chunks, d}, part_options) : Tensor();
    Tensor part_b = grad_bias.defined() ? Tensor::empty({chunks, d}, part_options) : Tensor();
    A* pw = part_w.defined() ? ptr<A>(part_w) : nullptr;
    A* pb = part_b.defined() ? ptr<A>(part_b) : nullptr;
    const dim3 grid(static_cast<unsigned>((d + kThreads - 1) / kThreads), static_cast<unsigned>(chunks));
    layer_norm_column_partials<T, A><<<grid, kThreads>>>(ptr<T>(grad), ptr<T>(in), ptr<T>(mean), ptr<T>(rstd),
                                                         rows, d, chunk_rows, pw, pb);
    LOOM_CUDA_CHECK_LAUNCH();
    if (pw) {
      sum_chunks<T, A><<<blocks_for(d), kThreads>>>(pw, chunks, d, ptr<T>(grad_weight));
      LOOM_CUDA_CHECK_LAUNCH();
    }
    if (pb) {
      sum_chunks<T, A><<<blocks_for(d), kThreads>>>(pb, chunks, d, ptr<T>(grad_bias));
      LOOM_CUDA_CHECK_LAUNCH();
    }
  });
}

void CudaBackend::gelu_backward(const Tensor& grad, const Tensor& in, bool tanh_approx,
                                const Tensor& grad_in) {
  if (grad_in.numel() == 0) return;
  DeviceGuard guard(device_);
  LOOM_DISPATCH_FLOATING(in.dtype(), "gelu backward", [&] {
    using T = scalar_t;
    if (tanh_approx) {
      launch_elementwise<3>({grad_in, grad, in},
                            GeluBackward<T, true>{ptr<T>(grad_in), ptr<T>(grad), ptr<T>(in)});
    } else {
      launch_elementwise<3>({grad_in, grad, in},
                            GeluBackward<T, false>{ptr<T>(grad_in), ptr<T>(grad), ptr<T>(in)});
    }
  });
}

void CudaBackend::relu_backward(const Tensor& grad, const Tensor& out, const Tensor& grad_in) {
  if (grad_in.numel() == 0) return;
  DeviceGuard guard(device_);
  LOOM_DISPATCH_FLOATING(out.dtype(), "relu backward", [&] {
    using T = scalar_t;
    launch_elementwise<3>({grad_in, grad, out}, ReluBackward<T>{ptr<T>(grad_in), ptr<T>(grad), ptr<T>(out)});
  });
}

void CudaBackend::adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                            const Tensor& exp_avg_sq, const AdamStep& step) {
  const int64_t n = param.numel();
  if (n == 0) return;
  DeviceGuard guard(device_);
  Tensor g = grad.contiguous();
  LOOM_DISPATCH_FLOATING(param.dtype(), "adam_step", [&] {
    using T = scalar_t;
    adam_kernel<T>
        <<<blocks_for(n), kThreads>>>(ptr<T>(param), ptr<T>(g), ptr<T>(exp_avg), ptr<T>(exp_avg_sq), n, step);
    LOOM_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace loom::cuda
