// LSH attention's chunk kernels, register-tiled, for heads up to 128 wide (lsh_attention.cuh:
// register_tiled_forward and register_tiled_backward; cuda_lsh_attention.cu dispatches, and its
// shared-memory-tile kernels take what these decline). The algorithm is cuda_lsh_attention.cu's (its header
// comment): an online-softmax forward over each chunk's window; backward, a kernel per query tile that
// recomputes each row's statistics and writes the query path of dQK, then a kernel per key tile that visits
// every window slot its chunk occupies, accumulates dV and dK and adds the key path through the
// normalisation. How the arithmetic meets the data is register_tiles.cuh's: 64 x 64 tiles, each thread a
// 4 x 4 block of every product.
//
// Shared memory, float32, d = dv = 64: 66 KiB forward, 82 KiB for the query kernel and 99 KiB for the
// key kernel, so the kernels opt in above 48 KiB (an H100 gives 227 KiB); where the device cannot, they
// decline.
#include <algorithm>
#include <cmath>
#include <limits>

#include "loom/cuda/lsh_attention.cuh"
#include "loom/cuda/register_tiles.cuh"

namespace loom::cuda::lsh_attention {
namespace {

using namespace register_tiles;

// The shared memory of all three kernels, carved in one order: a query tile (Q, and dO for the backward
// kernels), a key tile (normalised K, V, positions, padding, and for the key kernel each key's rho and
// dK . q), the weights P and the score gradients dS. Measured on the host with a null base.
template <typename T>
struct Tiles {
  T *q = nullptr, *go = nullptr, *k = nullptr, *v = nullptr, *p = nullptr, *ds = nullptr;
  T *rho = nullptr, *kdot = nullptr;
  int64_t* kpos = nullptr;
  bool* kpad = nullptr;
  size_t bytes = 0;
  enum Kind { kForward, kQuery, kKey };
  __host__ __device__ Tiles(unsigned char* base, Kind kind, int d, int dv) {
    Carver cv{base};
    kpos = cv.take<int64_t>(kTile);
    q = cv.take<T>(static_cast<size_t>(kTile) * odd_pitch(d));
    if (kind != kForward) go = cv.take<T>(static_cast<size_t>(kTile) * odd_pitch(dv));
    k = cv.take<T>(static_cast<size_t>(kTile) * odd_pitch(d));
    v = cv.take<T>(static_cast<size_t>(kTile) * odd_pitch(dv));
    if (kind == kKey) {
      rho = cv.take<T>(kTile);
      kdot = cv.take<T>(kTile);
    }
    if (kind != kQuery) p = cv.take<T>(static_cast<size_t>(kTile) * kScorePitch);
    if (kind != kForward) ds = cv.take<T>(static_cast<size_t>(kTile) * kScorePitch);
    kpad = cv.take<bool>(kTile);
    bytes = cv.offset;
  }
};

// A query tile: batch-head g, chunk ci, the global row q0 of its first query, its row count, and each of
// the thread's rows' position (rows past the tile get position 0; their logits are never used).
struct QueryRows {
  int64_t g, ci, q0;
  int rows;
  int64_t pos[kMicro];
};

template <typename T>
__device__ QueryRows query_rows(const Lsh<T>& a, const ThreadGrid& g, int64_t g_head, int64_t ci,
                                int64_t first, int rows) {
  QueryRows qr{g_head, ci, first, rows, {}};
#pragma unroll
  for (int r = 0; r < kMicro; ++r) qr.pos[r] = g.row(r) < rows ? a.pos[first + g.row(r)] : 0;
  return qr;
}

// The block's query tile for the forward and query kernels: 64 rows of one chunk.
template <typename T>
__device__ QueryRows block_query_tile(const Lsh<T>& a, const ThreadGrid& g) {
  int64_t head, ci, tile;
  chunk_coords(a.n_ch, (a.c + kTile - 1) / kTile, head, ci, tile);
  return query_rows(a, g, head, ci, head * a.n + ci * a.c + tile * kTile,
                    static_cast<int>(min_of(kTile, a.c - tile * kTile)));
}

// Bit (r, c) of a thread's 4 x 4 block, for flags kept in one register.
__device__ __forceinline__ unsigned replaced_bit(int r, int c) { return 1u << (r * kMicro + c); }

// The logits of the thread's block of a tile, from the raw products s = q . k, for keys at window positions
// [w0, w0 + kc): a.logit within the tile, -inf past its rows or keys (weight 0). `replaced` gets the bits
// (replaced_bit) of the -1e9 constants (padding, causal), whose gradient is 0.
template <typename T>
__device__ __forceinline__ void tile_logits(const Lsh<T>& a, const ThreadGrid& g, const QueryRows& qr,
                                            const Tiles<T>& t, int64_t w0, int kc, T (&s)[kMicro][kMicro],
                                            unsigned& replaced) {
  constexpr T kInf = std::numeric_limits<T>::infinity();
#pragma unroll
  for (int r = 0; r < kMicro; ++r)
#pragma unroll
    for (int c = 0; c < kMicro; ++c) {
      const int i = g.row(r), j = g.col(c);
      bool was_replaced = false;
      s[r][c] = i < qr.rows && j < kc
                    ? a.logit(s[r][c], qr.pos[r], t.kpos[j], t.kpad[j], qr.q0 + i, w0 + j, was_replaced)
                    : -kInf;
      if (was_replaced) replaced |= replaced_bit(r, c);
    }
}

// A query tile's products with the key tile in shared memory (window positions [w0, w0 + kc)): the logits
// (tile_logits, with their `replaced` bits) and, when `grads`, dp = dO V^T.
template <typename T>
__device__ __forceinline__ void tile_products(const Lsh<T>& a, const ThreadGrid& g, const QueryRows& qr,
                                              const Tiles<T>& t, int64_t w0, int kc, bool grads,
                                              T (&s)[kMicro][kMicro], T (&dp)[kMicro][kMicro],
                                              unsigned& replaced) {
  zero(s);
  zero(dp);
  replaced = 0;
  micro_gemm(s, g, t.q, odd_pitch(a.d), 1, t.k, odd_pitch(a.d), 1, a.d, kc);
  if (grads) micro_gemm(dp, g, t.go, odd_pitch(a.dv), 1, t.v, odd_pitch(a.dv), 1, a.dv, kc);
  tile_logits(a, g, qr, t, w0, kc, s, replaced);
}

// Loads window positions [w0, w0 + kc) of the query tile's chunk: keys normalised, positions, padding and
// (when `values`) the values.
template <typename T>
__device__ __forceinline__ void load_window_tile(const Lsh<T>& a, const QueryRows& qr, const Tiles<T>& t,
                                                 int64_t w0, int kc, bool values) {
  auto row_of = [&](int e) { return a.window_row(qr.g, qr.ci, w0 + e); };
  load_keys(a, qr.g, kc, row_of, t.k, t.kpos, t.kpad, static_cast<T*>(nullptr));
  if (values) load_rows_at(a.v, a.dv, kc, a.dv, row_of, t.v, odd_pitch(a.dv));
}

// --- forward ----------------------------------------------------------------------------------------------

template <typename T, int kCols>
__global__ void __launch_bounds__(kAttnThreads) lsh_register_forward_kernel(Lsh<T> a) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const Tiles<T> t(shared_bytes, Tiles<T>::kForward, a.d, a.dv);
  const int d = a.d, dv = a.dv, dp = odd_pitch(d), dvp = odd_pitch(dv);
  const ThreadGrid g;
  const QueryRows qr = block_query_tile(a, g);
  load_rows(a.qk, d, qr.q0, qr.rows, d, t.q, dp);
  T row_max[kMicro], row_sum[kMicro], acc[kMicro][kCols];
#pragma unroll
  for (int r = 0; r < kMicro; ++r) {
    row_max[r] = -std::numeric_limits<T>::infinity();
    row_sum[r] = 0;
  }
  zero(acc);

  for (int64_t w0 = 0; w0 < a.w; w0 += kTile) {
    const int kc = static_cast<int>(min_of(kTile, a.w - w0));
    __syncthreads();  // the previous tile's keys, values and weights have been read
    load_window_tile(a, qr, t, w0, kc, true);
    __syncthreads();
    T s[kMicro][kMicro], unused[kMicro][kMicro];
    unsigned replaced;
    tile_products(a, g, qr, t, w0, kc, false, s, unused, replaced);
    T factor[kMicro];
    online_softmax_tile(s, row_max, row_sum, factor);
#pragma unroll
    for (int r = 0; r < kMicro; ++r) {
#pragma unroll
      for (int b = 0; b < kCols; ++b) acc[r][b] *= factor[r];
#pragma unroll
      for (int c = 0; c < kMicro; ++c) t.p[g.row(r) * kScorePitch + g.col(c)] = s[r][c];
    }
    __syncthreads();
    micro_gemm(acc, g, t.p, kScorePitch, 1, t.v, 1, dvp, kc, dv);
  }
  // Every logit of a row is finite and its window holds at least one key, so every sum is at least 1.
#pragma unroll
  for (int r = 0; r < kMicro; ++r) {
    if (g.row(r) >= qr.rows) continue;
    const int64_t row = qr.q0 + g.row(r);
#pragma unroll
    for (int b = 0; b < kCols; ++b)
      if (g.col(b) < dv) a.out[row * dv + g.col(b)] = acc[r][b] / row_sum[r];
    if (g.tx == 0) a.lse[row] = row_max[r] + log_of(row_sum[r]);
  }
}

// --- backward step 1: statistics and the query path -------------------------------------------------------

template <typename T, int kCols>
__global__ void __launch_bounds__(kAttnThreads) lsh_register_query_kernel(Lsh<T> a) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const Tiles<T> t(shared_bytes, Tiles<T>::kQuery, a.d, a.dv);
  const int d = a.d, dv = a.dv, dp = odd_pitch(d), dvp = odd_pitch(dv);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const ThreadGrid g;
  const QueryRows qr = block_query_tile(a, g);
  load_rows(a.qk, d, qr.q0, qr.rows, d, t.q, dp);
  load_rows(a.go, dv, qr.q0, qr.rows, dv, t.go, dvp);
  // delta = dO . O - dlse, a warp per row, into the (not yet used) score-gradient tile's first column.
  for (int r = warp; r < qr.rows; r += kWarps) {
    const T delta = warp_row_delta(a, qr.q0 + r);
    if (lane == 0) t.ds[r * kScorePitch] = delta;
  }
  __syncthreads();
  T delta[kMicro];
#pragma unroll
  for (int r = 0; r < kMicro; ++r) delta[r] = g.row(r) < qr.rows ? t.ds[g.row(r) * kScorePitch] : T(0);

  // Pass 1: each row's maximum and sum.
  T row_max[kMicro], row_sum[kMicro];
#pragma unroll
  for (int r = 0; r < kMicro; ++r) {
    row_max[r] = -std::numeric_limits<T>::infinity();
    row_sum[r] = 0;
  }
  for (int64_t w0 = 0; w0 < a.w; w0 += kTile) {
    const int kc = static_cast<int>(min_of(kTile, a.w - w0));
    __syncthreads();  // the previous tile's keys (the first time: delta) have been read
    load_window_tile(a, qr, t, w0, kc, false);
    __syncthreads();
    T s[kMicro][kMicro], unused[kMicro][kMicro];
    unsigned replaced;
    tile_products(a, g, qr, t, w0, kc, false, s, unused, replaced);
    T factor[kMicro];
    online_softmax_tile(s, row_max, row_sum, factor);
  }
  T inv_sum[kMicro];
#pragma unroll
  for (int r = 0; r < kMicro; ++r) {
    inv_sum[r] = T(1) / row_sum[r];
    if (g.tx == 0 && g.row(r) < qr.rows) {
      const int64_t row = qr.q0 + g.row(r);
      a.row_max[row] = row_max[r];
      a.row_inv_sum[row] = inv_sum[r];
      a.row_delta[row] = delta[r];
    }
  }

  // Pass 2: dS = P (dP - delta), 0 at replaced logits, and dQ = dS K.
  T acc[kMicro][kCols];
  zero(acc);
  for (int64_t w0 = 0; w0 < a.w; w0 += kTile) {
    const int kc = static_cast<int>(min_of(kTile, a.w - w0));
    __syncthreads();  // the previous tile's keys, values and score gradients have been read
    load_window_tile(a, qr, t, w0, kc, true);
    __syncthreads();
    T s[kMicro][kMicro], dprob[kMicro][kMicro];
    unsigned replaced;
    tile_products(a, g, qr, t, w0, kc, true, s, dprob, replaced);
#pragma unroll
    for (int r = 0; r < kMicro; ++r)
#pragma unroll
      for (int c = 0; c < kMicro; ++c) {
        const int i = g.row(r), j = g.col(c);
        T ds = 0;
        if (i < qr.rows && j < kc)
          ds = weight_and_grad(s[r][c], replaced & replaced_bit(r, c), row_max[r], inv_sum[r], dprob[r][c],
                               delta[r])
                   .ds;
        t.ds[i * kScorePitch + j] = ds;
      }
    __syncthreads();
    micro_gemm(acc, g, t.ds, kScorePitch, 1, t.k, 1, dp, kc, d);
  }
#pragma unroll
  for (int r = 0; r < kMicro; ++r) {
    if (g.row(r) >= qr.rows) continue;
#pragma unroll
    for (int b = 0; b < kCols; ++b)
      if (g.col(b) < d) a.gq[(qr.q0 + g.row(r)) * d + g.col(b)] = acc[r][b];
  }
}

// --- backward step 2: the key path and the values ---------------------------------------------------------

template <typename T, int kCols>
__global__ void __launch_bounds__(kAttnThreads) lsh_register_key_kernel(Lsh<T> a) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const Tiles<T> t(shared_bytes, Tiles<T>::kKey, a.d, a.dv);
  const int d = a.d, dv = a.dv, dp = odd_pitch(d), dvp = odd_pitch(dv);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const ThreadGrid g;
  int64_t head, key_chunk, kt;
  chunk_coords(a.n_ch, (a.c + kTile - 1) / kTile, head, key_chunk, kt);
  const int64_t k0 = head * a.n + key_chunk * a.c + kt * kTile;  // global row of the tile's first key
  const int kc = static_cast<int>(min_of(kTile, a.c - kt * kTile));
  load_keys(
      a, head, kc, [&](int e) { return k0 + e; }, t.k, t.kpos, t.kpad, t.rho);
  load_rows(a.v, dv, k0, kc, dv, t.v, dvp);
  T acc_k[kMicro][kCols], acc_v[kMicro][kCols];
  zero(acc_k);
  zero(acc_v);

  for (int64_t slot = 0; slot < a.span; ++slot) {
    // The chunk whose window holds this key chunk in `slot`, and the keys' positions in that window.
    const int64_t cq = ((key_chunk - slot + a.before) % a.n_ch + a.n_ch) % a.n_ch;
    const int64_t w0 = slot * a.c + kt * kTile;
    for (int64_t i0 = 0; i0 < a.c; i0 += kTile) {
      const int rows = static_cast<int>(min_of(kTile, a.c - i0));
      const QueryRows qr = query_rows(a, g, head, cq, head * a.n + cq * a.c + i0, rows);
      T m[kMicro], inv_sum[kMicro], delta[kMicro];
#pragma unroll
      for (int r = 0; r < kMicro; ++r) {
        const bool in = g.row(r) < rows;
        m[r] = in ? a.row_max[qr.q0 + g.row(r)] : T(0);
        inv_sum[r] = in ? a.row_inv_sum[qr.q0 + g.row(r)] : T(0);
        delta[r] = in ? a.row_delta[qr.q0 + g.row(r)] : T(0);
      }
      __syncthreads();  // the previous query tile has been read (the first time: keys loaded)
      load_rows(a.qk, d, qr.q0, rows, d, t.q, dp);
      load_rows(a.go, dv, qr.q0, rows, dv, t.go, dvp);
      __syncthreads();
      T s[kMicro][kMicro], dprob[kMicro][kMicro];
      unsigned replaced;
      tile_products(a, g, qr, t, w0, kc, true, s, dprob, replaced);
#pragma unroll
      for (int r = 0; r < kMicro; ++r)
#pragma unroll
        for (int c = 0; c < kMicro; ++c) {
          const int i = g.row(r), j = g.col(c);
          WeightAndGrad<T> pg{0, 0};
          if (i < rows && j < kc)
            pg = weight_and_grad(s[r][c], replaced & replaced_bit(r, c), m[r], inv_sum[r], dprob[r][c],
                                 delta[r]);
          t.p[i * kScorePitch + j] = pg.p;
          t.ds[i * kScorePitch + j] = pg.ds;
        }
      __syncthreads();
      // Rows of these products are keys, the reduction runs over the tile's query rows.
      micro_gemm(acc_v, g, t.p, 1, kScorePitch, t.go, 1, dvp, rows, dv);
      micro_gemm(acc_k, g, t.ds, 1, kScorePitch, t.q, 1, dp, rows, d);
    }
  }
  __syncthreads();  // every key tile read is done: dK goes over the keys
  T* dk = t.k;
#pragma unroll
  for (int r = 0; r < kMicro; ++r) {
    const int j = g.row(r);
    if (j >= kc) continue;
#pragma unroll
    for (int b = 0; b < kCols; ++b) {
      const int col = g.col(b);
      if (col < dv) a.gv[(k0 + j) * dv + col] = acc_v[r][b];
      if (col < d) dk[j * dp + col] = acc_k[r][b];
    }
  }
  __syncthreads();
  for (int j = warp; j < kc; j += kWarps) {
    const T kdot = warp_key_dot(a, dk + j * dp, k0 + j);
    if (lane == 0) t.kdot[j] = kdot;
  }
  __syncthreads();
#pragma unroll
  for (int r = 0; r < kMicro; ++r) {
    const int j = g.row(r);
    if (j >= kc) continue;
#pragma unroll
    for (int b = 0; b < kCols; ++b)
      if (g.col(b) < d)
        a.gq[(k0 + j) * d + g.col(b)] += key_path_grad(a, t.rho[j], t.kdot[j], acc_k[r][b], k0 + j, g.col(b));
  }
}

// --- host side --------------------------------------------------------------------------------------------

template <typename T>
size_t tile_bytes(typename Tiles<T>::Kind kind, const Lsh<T>& a) {
  return Tiles<T>(nullptr, kind, a.d, a.dv).bytes;
}

template <typename T, int kCols>
void launch_forward(const Lsh<T>& a, size_t shared) {
  allow_shared_bytes(lsh_register_forward_kernel<T, kCols>, shared);
  lsh_register_forward_kernel<T, kCols><<<chunk_grid(a.bh, a.n_ch, a.c, kTile), kAttnThreads, shared>>>(a);
  LOOM_CUDA_CHECK_LAUNCH();
}

template <typename T, int kCols>
void launch_backward(const Lsh<T>& a, size_t query_shared, size_t key_shared) {
  allow_shared_bytes(lsh_register_query_kernel<T, kCols>, query_shared);
  lsh_register_query_kernel<T, kCols>
      <<<chunk_grid(a.bh, a.n_ch, a.c, kTile), kAttnThreads, query_shared>>>(a);
  LOOM_CUDA_CHECK_LAUNCH();
  allow_shared_bytes(lsh_register_key_kernel<T, kCols>, key_shared);
  lsh_register_key_kernel<T, kCols><<<chunk_grid(a.bh, a.n_ch, a.c, kTile), kAttnThreads, key_shared>>>(a);
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace

template <typename T>
bool register_tiled_forward(const Lsh<T>& a) {
  const size_t shared = tile_bytes(Tiles<T>::kForward, a);
  if (std::max(a.d, a.dv) > kWidest || !shared_bytes_fit(shared)) return false;
  return with_columns(a.dv, [&]<int kCols>() { launch_forward<T, kCols>(a, shared); });
}

template <typename T>
bool register_tiled_backward(const Lsh<T>& a) {
  const size_t query_shared = tile_bytes(Tiles<T>::kQuery, a), key_shared = tile_bytes(Tiles<T>::kKey, a);
  if (std::max(a.d, a.dv) > kWidest || !shared_bytes_fit(std::max(query_shared, key_shared))) return false;
  return with_columns(std::max(a.d, a.dv),
                      [&]<int kCols>() { launch_backward<T, kCols>(a, query_shared, key_shared); });
}

template bool register_tiled_forward<float>(const Lsh<float>&);
template bool register_tiled_forward<double>(const Lsh<double>&);
template bool register_tiled_backward<float>(const Lsh<float>&);
template bool register_tiled_backward<double>(const Lsh<double>&);

}  // namespace loom::cuda::lsh_attention
