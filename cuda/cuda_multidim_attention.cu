// Multi-dimensional (feature-wise) attention on the GPU (backend.h, multi_dim_attention_forward / _backward),
// formula for formula as ops/cpu/cpu_multidim_attention.cpp, whose header derives them. Every (sequence n,
// query i, feature f) has its own softmax over the keys j, so there is no GEMM to hand to cuBLAS; the work is
// one tanh and one exp per (i, j, f), and the composed default's [N, L, L, d] score tensor (what Bi-BloSA
// exists to avoid) is never formed: memory is that of the operands.
//
// A block of 32 x 8 threads owns 32 features (one per lane, so global reads of a row are coalesced) of 32
// rows of one sequence (four per thread, in registers) and walks its partner rows 32 at a time, staged in
// shared memory so that each partner element is read from global memory once per block rather than once
// per owned row:
//   forward      owns queries, walks keys:   sum += e, acc += e v[j] with e = exp(c tanh((k[j] + q[i] + b) /
//   c)) query grad   owns queries, walks keys:   dq += P dO (v[j] - o[i]) (1 - t^2) key grad     owns keys,
//   walks queries: dk += P dO (v[j] - o[i]) (1 - t^2), dv += P dO
// with P dO = e * inv_sum[i] * dO[i]. Every sum runs over the partners in ascending order, as on the CPU, and
// no block writes another's rows: no atomics, the same bits every run. Scores lie in (-c, c), so exp needs no
// running max (biblosa.md P3).
#include <climits>
#include <cmath>
#include <type_traits>

#include "loom/cuda/attention_tiles.cuh"
#include "loom/cuda/cuda_backend_impl.h"
#include "loom/cuda/launch.cuh"
#include "loom/ops/multidim_attention_problem.h"

namespace loom::cuda {
namespace {

using attention::exp_of;
using attention::min_of;
using attention::tanh_of;

constexpr int kFeatures = 32;                         // features per block: one per lane
constexpr int kRowGroups = 8;                         // warps per block
constexpr int kOwnPerThread = 4;                      // rows each thread owns
constexpr int kOwnRows = kRowGroups * kOwnPerThread;  // rows a block owns
constexpr int kPartnerTile = 32;                      // partner rows staged at a time
constexpr int kBlockThreads = kFeatures * kRowGroups;

// The problem and its masks, shared with the CPU kernel.
template <typename T>
using MultiDim = MultiDimProblem<T>;

// The tensors backward reads and writes ([N, L, d], contiguous; gradients may be null).
template <typename T>
struct Saved {
  const T *grad_out, *out, *inv_sum;
};

// The block's place: sequence b, owned rows [row0, row0 + kOwnRows), features from f0; this thread's feature
// f and its owned rows row0 + threadIdx.y + kRowGroups r.
struct Place {
  int64_t b, row0, f0, f;
  int tid;

  __device__ Place(int64_t row_tiles) {
    b = blockIdx.x / row_tiles;
    row0 = (blockIdx.x % row_tiles) * int64_t{kOwnRows};
    f0 = blockIdx.y * int64_t{kFeatures};
    f = f0 + threadIdx.x;
    tid = threadIdx.y * kFeatures + threadIdx.x;
  }
  __device__ int64_t own(int r) const { return row0 + threadIdx.y + int64_t{kRowGroups} * r; }
};

// Fills tile[r][c] with at(r, f0 + c) for the first `count` rows and the features below d, zeros elsewhere
// (so that idle lanes compute on finite numbers). Callers synchronise around it.
template <typename T, typename At>
__device__ __forceinline__ void stage(T (&tile)[kPartnerTile][kFeatures], int count, const Place& p,
                                      int64_t d, At at) {
  for (int e = p.tid; e < kPartnerTile * kFeatures; e += kBlockThreads) {
    const int r = e / kFeatures, c = e % kFeatures;
    tile[r][c] = r < count && p.f0 + c < d ? at(r, p.f0 + c) : T(0);
  }
}

// ---- queries own the block: forward and the query gradient ----------------------------------------------

// Forward (Grad = false): writes out and inv_sum. Query gradient (Grad = true): writes grad_q.
template <typename T, bool Grad>
__global__ void __launch_bounds__(kBlockThreads)
    query_rows_kernel(MultiDim<T> a, Saved<T> s, int64_t row_tiles, T* out, T* inv_sum) {
  __shared__ T keys[kPartnerTile][kFeatures];
  __shared__ T values[kPartnerTile][kFeatures];
  __shared__ bool key_padded[kPartnerTile];
  const Place p(row_tiles);
  const bool feature = p.f < a.d;
  // Per owned query: q + bias, then the forward's sums or the gradient's invariants and accumulator.
  T qb[kOwnPerThread], sum[kOwnPerThread], acc[kOwnPerThread], inv_go[kOwnPerThread], o[kOwnPerThread];
  bool live[kOwnPerThread], any[kOwnPerThread];
#pragma unroll
  for (int r = 0; r < kOwnPerThread; ++r) {
    const int64_t i = p.own(r);
    live[r] = i < a.l && !a.query_blocked(p.b, i);
    any[r] = false;
    sum[r] = acc[r] = qb[r] = inv_go[r] = o[r] = T(0);
    if (live[r] && feature) {
      qb[r] = a.q_at(p.b, i)[p.f] + a.bias[p.f];
      if constexpr (Grad) {
        const int64_t row = (p.b * a.l + i) * a.d + p.f;
        inv_go[r] = s.inv_sum[row] * s.grad_out[row];
        o[r] = s.out[row];
      }
    }
  }
  int64_t begin, end;
  a.key_range(p.row0, min_of(p.row0 + kOwnRows, a.l), begin, end);
  for (int64_t j0 = begin; j0 < end; j0 += kPartnerTile) {
    const int count = static_cast<int>(min_of(kPartnerTile, end - j0));
    __syncthreads();  // the previous tile is no longer read
    stage(keys, count, p, a.d, [&](int r, int64_t f) { return a.k_at(p.b, j0 + r)[f]; });
    stage(values, count, p, a.d, [&](int r, int64_t f) { return a.v_at(p.b, j0 + r)[f]; });
    if (p.tid < kPartnerTile) key_padded[p.tid] = p.tid < count && a.padded(p.b, j0 + p.tid);
    __syncthreads();
    for (int jj = 0; jj < count; ++jj) {
      if (key_padded[jj]) continue;
      const int64_t j = j0 + jj;
      const T kj = keys[jj][threadIdx.x], vj = values[jj][threadIdx.x];
#pragma unroll
      for (int r = 0; r < kOwnPerThread; ++r) {
        if (!live[r] || !a.sees(p.own(r), j)) continue;
        const T t = tanh_of((kj + qb[r]) * a.inv_c);
        const T e = exp_of(a.c * t);
        if constexpr (Grad) {
          acc[r] += e * inv_go[r] * (vj - o[r]) * (T(1) - t * t);
        } else {
          sum[r] += e;
          acc[r] += e * vj;
          any[r] = true;
        }
      }
    }
  }
  if (!feature) return;
#pragma unroll
  for (int r = 0; r < kOwnPerThread; ++r) {
    const int64_t i = p.own(r);
    if (i >= a.l) continue;
    const int64_t row = (p.b * a.l + i) * a.d + p.f;
    if constexpr (Grad) {
      out[row] = acc[r];  // out is grad_q here
    } else {
      // A query with no allowed key outputs 0, and inv_sum 0 makes every P of its row 0 in backward.
      const T inv = any[r] ? T(1) / sum[r] : T(0);
      out[row] = acc[r] * inv;
      inv_sum[row] = inv;
    }
  }
}

// ---- keys own the block: the key and value gradients -----------------------------------------------------

template <typename T>
__global__ void __launch_bounds__(kBlockThreads)
    key_rows_kernel(MultiDim<T> a, Saved<T> s, int64_t row_tiles, T* grad_k, T* grad_v) {
  __shared__ T queries[kPartnerTile][kFeatures];
  __shared__ T inv_gos[kPartnerTile][kFeatures];
  __shared__ T outs[kPartnerTile][kFeatures];
  __shared__ bool query_blocked[kPartnerTile];
  const Place p(row_tiles);
  const bool feature = p.f < a.d;
  // Per owned key: k + bias (the bias is folded in on the key side here, as on the CPU), v, and dk, dv.
  T kb[kOwnPerThread], vv[kOwnPerThread], dk[kOwnPerThread], dv[kOwnPerThread];
  bool live[kOwnPerThread];
#pragma unroll
  for (int r = 0; r < kOwnPerThread; ++r) {
    const int64_t j = p.own(r);
    live[r] = j < a.l && !a.padded(p.b, j);  // a padding key is seen by no query
    kb[r] = vv[r] = dk[r] = dv[r] = T(0);
    if (live[r] && feature) {
      kb[r] = a.k_at(p.b, j)[p.f] + a.bias[p.f];
      vv[r] = a.v_at(p.b, j)[p.f];
    }
  }
  int64_t begin, end;
  a.query_range(p.row0, min_of(p.row0 + kOwnRows, a.l), begin, end);
  for (int64_t i0 = begin; i0 < end; i0 += kPartnerTile) {
    const int count = static_cast<int>(min_of(kPartnerTile, end - i0));
    auto row = [&](int r, int64_t f) { return (p.b * a.l + i0 + r) * a.d + f; };
    __syncthreads();
    stage(queries, count, p, a.d, [&](int r, int64_t f) { return a.q_at(p.b, i0 + r)[f]; });
    stage(inv_gos, count, p, a.d,
          [&](int r, int64_t f) { return s.inv_sum[row(r, f)] * s.grad_out[row(r, f)]; });
    stage(outs, count, p, a.d, [&](int r, int64_t f) { return s.out[row(r, f)]; });
    if (p.tid < kPartnerTile) query_blocked[p.tid] = p.tid < count && a.query_blocked(p.b, i0 + p.tid);
    __syncthreads();
    for (int ii = 0; ii < count; ++ii) {
      if (query_blocked[ii]) continue;
      const int64_t i = i0 + ii;
      const T qi = queries[ii][threadIdx.x], ig = inv_gos[ii][threadIdx.x], oi = outs[ii][threadIdx.x];
#pragma unroll
      for (int r = 0; r < kOwnPerThread; ++r) {
        if (!live[r] || !a.sees(i, p.own(r))) continue;
        const T t = tanh_of((qi + kb[r]) * a.inv_c);
        const T pg = exp_of(a.c * t) * ig;
        dk[r] += pg * (vv[r] - oi) * (T(1) - t * t);
        dv[r] += pg;
      }
    }
  }
  if (!feature) return;
#pragma unroll
  for (int r = 0; r < kOwnPerThread; ++r) {
    const int64_t j = p.own(r);
    if (j >= a.l) continue;
    const int64_t row = (p.b * a.l + j) * a.d + p.f;
    if (grad_k) grad_k[row] = dk[r];
    if (grad_v) grad_v[row] = dv[r];
  }
}

// The grid: x = (sequence, tile of owned rows), y = tile of features.
template <typename T>
dim3 grid_of(const MultiDim<T>& a, int64_t& row_tiles, const char* op) {
  row_tiles = (a.l + kOwnRows - 1) / kOwnRows;
  const int64_t feature_tiles = (a.d + kFeatures - 1) / kFeatures;
  LOOM_CHECK(a.n * row_tiles <= INT_MAX && feature_tiles <= 65535, op, ": [", a.n, ", ", a.l, ", ", a.d,
             "] exceeds the CUDA grid");
  return dim3(static_cast<unsigned>(a.n * row_tiles), static_cast<unsigned>(feature_tiles));
}

}  // namespace

void CudaBackend::multi_dim_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                              const Tensor& bias, const Tensor& padding,
                                              AttentionDirection direction, double c, bool mask_queries,
                                              const Tensor& out, const Tensor& inv_sum) {
  if (out.numel() == 0) return;
  DeviceGuard guard(device_);
  LOOM_DISPATCH_FLOATING(q.dtype(), "multi_dim_attention", [&] {
    using T = scalar_t;
    const MultiDim<T> a(q, k, v, bias, padding, direction, c, mask_queries);
    int64_t row_tiles = 0;
    const dim3 grid = grid_of(a, row_tiles, "multi_dim_attention");
    query_rows_kernel<T, false>
        <<<grid, dim3(kFeatures, kRowGroups)>>>(a, Saved<T>{}, row_tiles, ptr<T>(out), ptr<T>(inv_sum));
    LOOM_CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::multi_dim_attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k,
                                               const Tensor& v, const Tensor& bias, const Tensor& padding,
                                               AttentionDirection direction, double c, bool mask_queries,
                                               const Tensor& out, const Tensor& inv_sum, const Tensor& grad_q,
                                               const Tensor& grad_k, const Tensor& grad_v) {
  if (q.numel() == 0 || (!grad_q.defined() && !grad_k.defined() && !grad_v.defined())) return;
  DeviceGuard guard(device_);
  LOOM_DISPATCH_FLOATING(q.dtype(), "multi_dim_attention backward", [&] {
    using T = scalar_t;
    const MultiDim<T> a(q, k, v, bias, padding, direction, c, mask_queries);
    const Saved<T> s{ptr<const T>(grad_out), ptr<const T>(out), ptr<const T>(inv_sum)};
    int64_t row_tiles = 0;
    const dim3 grid = grid_of(a, row_tiles, "multi_dim_attention backward");
    const dim3 block(kFeatures, kRowGroups);
    if (grad_q.defined()) {
      query_rows_kernel<T, true><<<grid, block>>>(a, s, row_tiles, ptr<T>(grad_q), nullptr);
      LOOM_CUDA_CHECK_LAUNCH();
    }
    if (grad_k.defined() || grad_v.defined()) {
      key_rows_kernel<T><<<grid, block>>>(a, s, row_tiles, grad_k.defined() ? ptr<T>(grad_k) : nullptr,
                                          grad_v.defined() ? ptr<T>(grad_v) : nullptr);
      LOOM_CUDA_CHECK_LAUNCH();
    }
  });
}

}  // namespace loom::cuda
