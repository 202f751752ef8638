// ACT's frozen-row projection on the GPU (backend.h, act_frozen_projection / _backward), formula for formula
// as ops/cpu/cpu_act.cpp: the running rows are scattered into the output, and each frozen row gets a warp
// that computes its inverse standard deviation from the precomputed terms and writes its projected row. The
// backward gathers the running rows' gradient, gives each frozen row a warp for its own gradients, and
// reduces the column sums (signal and shift gradients) over fixed chunks of 64 rows, then over the chunks in
// order: no atomics, the same bits every run, whatever the GPU.
#include <climits>
#include <cmath>

#include "loom/cuda/attention_tiles.cuh"
#include "loom/cuda/cuda_backend_impl.h"
#include "loom/cuda/launch.cuh"

namespace loom::cuda {
namespace {

using attention::kWarps;
using attention::warp_sum;

constexpr int64_t kChunkRows = 64;

// rows_out[rows[i]] = rows_in[i] (scatter) or rows_out[i] = rows_in[rows[i]] (gather), rows of C elements.
template <typename T>
__global__ void move_rows_kernel(const T* in, const int64_t* rows, int64_t n, int64_t C, T* out,
                                 bool gather) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n * C;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / C, c = i % C;
    if (gather)
      out[i] = in[rows[r] * C + c];
    else
      out[rows[r] * C + c] = in[i];
  }
}

template <typename T>
struct Frozen {
  const int64_t* rows;
  const T *projected, *centred, *squared_norm, *signal_centred, *signal_projected, *shift, *inv_sigma;
  int64_t h, C, d;
  T eps;
};

template <typename T>
__device__ T warp_dot(const T* a, const T* b, int64_t n, int lane) {
  T x = 0;
  for (int64_t k = lane; k < n; k += 32) x += a[k] * b[k];
  return warp_sum(x);
}

template <typename T>
__global__ void frozen_forward_kernel(Frozen<T> f, T* out, T* inv_sigma) {
  const int64_t j = blockIdx.x * int64_t{kWarps} + threadIdx.x / 32;
  if (j >= f.h) return;
  const int lane = threadIdx.x % 32;
  const T* s = f.signal_centred;
  const T ss = warp_dot(s, s, f.d, lane);
  const T variance =
      (f.squared_norm[j] + T(2) * warp_dot(f.centred + j * f.d, s, f.d, lane) + ss) / static_cast<T>(f.d);
  const T r = T(1) / sqrt(variance + f.eps);
  if (lane == 0) inv_sigma[j] = r;
  const T* p = f.projected + j * f.C;
  T* row = out + f.rows[j] * f.C;
  for (int64_t c = lane; c < f.C; c += 32) row[c] = (p[c] + f.signal_projected[c]) * r + f.shift[c];
}

// Per frozen row: grad_projected, grad_squared_norm, grad_centred and g_dot = 2 / d * dL/dvar (kept for the
// column sums).
template <typename T>
__global__ void frozen_backward_rows_kernel(Frozen<T> f, const T* grad, T* g_projected, T* g_squared_norm,
                                            T* g_centred, T* g_dot) {
  const int64_t j = blockIdx.x * int64_t{kWarps} + threadIdx.x / 32;
  if (j >= f.h) return;
  const int lane = threadIdx.x % 32;
  const T* gr = grad + f.rows[j] * f.C;
  const T r = f.inv_sigma[j];
  const T g_inv =
      warp_dot(gr, f.projected + j * f.C, f.C, lane) + warp_dot(gr, f.signal_projected, f.C, lane);
  if (g_projected)
    for (int64_t c = lane; c < f.C; c += 32) g_projected[j * f.C + c] = gr[c] * r;
  const T g_var = g_inv * r * r * r * T(-0.5);  // d sigma^-1 / d var = -sigma^-3 / 2
  const T dot = g_var * (T(2) / static_cast<T>(f.d));
  if (lane == 0) {
    if (g_squared_norm) g_squared_norm[j] = g_var / static_cast<T>(f.d);
    g_dot[j] = dot;
  }
  if (g_centred)
    for (int64_t k = lane; k < f.d; k += 32) g_centred[j * f.d + k] = dot * f.signal_centred[k];
}

// partial[chunk][col] over the chunk's rows, col in [0, 2C + d + 1): sum g inv_sigma (signal_projected), sum
// g (shift), sum g_dot centred (signal_centred, before its own term), sum g_dot.
template <typename T>
__global__ void frozen_column_partials_kernel(Frozen<T> f, const T* grad, const T* g_dot, T* partial) {
  const int64_t width = 2 * f.C + f.d + 1;
  const int64_t col = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int64_t chunk = blockIdx.y;
  if (col >= width) return;
  const int64_t end = attention::min_of(f.h, (chunk + 1) * kChunkRows);
  T acc = 0;
  for (int64_t j = chunk * kChunkRows; j < end; ++j) {
    if (col < f.C)
      acc += grad[f.rows[j] * f.C + col] * f.inv_sigma[j];
    else if (col < 2 * f.C)
      acc += grad[f.rows[j] * f.C + col - f.C];
    else if (col < 2 * f.C + f.d)
      acc += g_dot[j] * f.centred[j * f.d + col - 2 * f.C];
    else
      acc += g_dot[j];
  }
  partial[chunk * width + col] = acc;
}

template <typename T>
__global__ void frozen_column_totals_kernel(Frozen<T> f, const T* partial, int64_t chunks,
                                            T* g_signal_projected, T* g_shift, T* g_signal_centred) {
  const int64_t width = 2 * f.C + f.d + 1;
  const int64_t col = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (col >= 2 * f.C + f.d) return;
  T total = 0;
  for (int64_t chunk = 0; chunk < chunks; ++chunk) total += partial[chunk * width + col];
  if (col < f.C) {
    if (g_signal_projected) g_signal_projected[col] = total;
  } else if (col < 2 * f.C) {
    if (g_shift) g_shift[col - f.C] = total;
  } else if (g_signal_centred) {
    T dot_total = 0;
    for (int64_t chunk = 0; chunk < chunks; ++chunk) dot_total += partial[chunk * width + width - 1];
    const int64_t k = col - 2 * f.C;
    g_signal_centred[k] = total + f.signal_centred[k] * dot_total;
  }
}

template <typename T>
T* ptr_or_null(const Tensor& t) {
  return t.defined() ? ptr<T>(t) : nullptr;
}

template <typename T>
Frozen<T> frozen_of(const Backend::ActFrozenProjection& a, const Tensor& inv_sigma) {
  Frozen<T> f;
  f.rows = ptr<const int64_t>(a.frozen_rows);
  f.projected = ptr<const T>(a.projected);
  f.centred = ptr<const T>(a.centred);
  f.squared_norm = ptr_or_null<const T>(a.squared_norm);
  f.signal_centred = ptr<const T>(a.signal_centred);
  f.signal_projected = ptr<const T>(a.signal_projected);
  f.shift = ptr_or_null<const T>(a.shift);
  f.inv_sigma = ptr_or_null<const T>(inv_sigma);
  f.h = a.frozen_rows.numel();
  f.C = a.projected.size(1);
  f.d = a.centred.size(1);
  f.eps = static_cast<T>(a.eps);
  return f;
}

}  // namespace

void CudaBackend::act_frozen_projection(const Tensor& running, const ActFrozenProjection& a,
                                        const Tensor& out, const Tensor& inv_sigma) {
  DeviceGuard guard(device_);
  const int64_t n = running.size(0), C = out.size(1), h = a.frozen_rows.numel();
  LOOM_DISPATCH_FLOATING(out.dtype(), "act_frozen_projection", [&] {
    using T = scalar_t;
    if (n > 0 && C > 0) {
      move_rows_kernel<T><<<blocks_for(n * C), kThreads>>>(
          ptr<const T>(running), ptr<const int64_t>(a.running_rows), n, C, ptr<T>(out), /*gather=*/false);
      LOOM_CUDA_CHECK_LAUNCH();
    }
    if (h > 0) {
      LOOM_CHECK((h + kWarps - 1) / kWarps <= INT_MAX, "act_frozen_projection: ", h,
                 " rows exceed the CUDA grid");
      frozen_forward_kernel<T><<<static_cast<unsigned>((h + kWarps - 1) / kWarps), kThreads>>>(
          frozen_of<T>(a, Tensor()), ptr<T>(out), ptr<T>(inv_sigma));
      LOOM_CUDA_CHECK_LAUNCH();
    }
  });
}

void CudaBackend::act_frozen_projection_backward(const Tensor& grad, const ActFrozenProjection& a,
                                                 const Tensor& inv_sigma, const ActFrozenProjectionGrads& g) {
  DeviceGuard guard(device_);
  const int64_t n = a.running_rows.numel(), C = grad.size(1), h = a.frozen_rows.numel(),
                d = a.centred.size(1);
  LOOM_DISPATCH_FLOATING(grad.dtype(), "act_frozen_projection_backward", [&] {
    using T = scalar_t;
    if (g.running.defined() && n > 0 && C > 0) {
      move_rows_kernel<T><<<blocks_for(n * C), kThreads>>>(
          ptr<const T>(grad), ptr<const int64_t>(a.running_rows), n, C, ptr<T>(g.running), /*gather=*/true);
      LOOM_CUDA_CHECK_LAUNCH();
    }
    // With no frozen row, every frozen-side gradient is a sum over nothing.
    for (const Tensor* t :
         {&g.projected, &g.centred, &g.squared_norm, &g.signal_centred, &g.signal_projected, &g.shift})
      if (t->defined() && h == 0) fill(*t, 0.0);
    if (h == 0) return;
    LOOM_CHECK((h + kWarps - 1) / kWarps <= INT_MAX, "act_frozen_projection backward: ", h,
               " rows exceed the CUDA grid");
    const Frozen<T> f = frozen_of<T>(a, inv_sigma);
    Tensor g_dot = Tensor::empty({h}, grad.options());
    frozen_backward_rows_kernel<T><<<static_cast<unsigned>((h + kWarps - 1) / kWarps), kThreads>>>(
        f, ptr<const T>(grad), ptr_or_null<T>(g.projected), ptr_or_null<T>(g.squared_norm),
        ptr_or_null<T>(g.centred), ptr<T>(g_dot));
    LOOM_CUDA_CHECK_LAUNCH();
    if (!g.signal_projected.defined() && !g.shift.defined() && !g.signal_centred.defined()) return;
    const int64_t chunks = (h + kChunkRows - 1) / kChunkRows, width = 2 * C + d + 1;
    LOOM_CHECK(chunks <= 65535, "act_frozen_projection backward: ", h, " frozen rows exceed ",
               65535 * kChunkRows);
    Tensor partial = Tensor::empty({chunks, width}, grad.options());
    const unsigned col_blocks = static_cast<unsigned>((width + kThreads - 1) / kThreads);
    frozen_column_partials_kernel<T><<<dim3(col_blocks, static_cast<unsigned>(chunks)), kThreads>>>(
        f, ptr<const T>(grad), ptr<const T>(g_dot), ptr<T>(partial));
    LOOM_CUDA_CHECK_LAUNCH();
    frozen_column_totals_kernel<T>
        <<<col_blocks, kThreads>>>(f, ptr<const T>(partial), chunks, ptr_or_null<T>(g.signal_projected),
                                   ptr_or_null<T>(g.shift), ptr_or_null<T>(g.signal_centred));
    LOOM_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace loom::cuda
