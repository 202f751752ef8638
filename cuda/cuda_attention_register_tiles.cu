// Register-tiled fused attention for heads up to 128 wide (dense_attention.cuh: register_tiled_forward and
// register_tiled_backward; cuda_attention.cu dispatches, and its shared-memory-tile kernels take what these
// decline). The algorithm is cuda_attention.cu's (its header comment): online softmax forward, then a block
// per key tile for dK and dV and a block per query tile for dQ, recomputing the weights, no atomics. What
// differs is how the arithmetic meets the data.
//
// How: register_tiles.cuh (a 16 x 16 thread grid over 64 x 64 tiles, each thread a 4 x 4 block of every
// product, as in a GEMM), where the shared-tile kernels read both operands of every multiply-add from
// shared memory.
//
// Shared memory, float32, d = dv = 64: 65 KiB forward, 97.5 KiB for dK and dV, 81 KiB for dQ, so the kernels
// opt in above the default 48 KiB (an H100 gives 227 KiB); where the device cannot, they decline.
#include <algorithm>
#include <cmath>
#include <limits>

#include "loom/cuda/dense_attention.cuh"
#include "loom/cuda/register_tiles.cuh"

namespace loom::cuda::dense_attention {
namespace {

using namespace register_tiles;

// Writes acc (rows ty + 16 a, columns tx + 16 b) times `factor` to rows [first, first + rows) and columns
// [0, width) of matrix `mat` of operand `op`.
template <typename T, int kCols>
__device__ __forceinline__ void store_rows(const Problem<T>& p, int op, T* base, int64_t mat, int64_t first,
                                           int rows, int width, const ThreadGrid& g,
                                           const T (&acc)[kMicro][kCols], T factor) {
  T* at = base + p.lay.offset(mat, op);
  const int64_t rs = p.lay.row_stride[op];
#pragma unroll
  for (int a = 0; a < kMicro; ++a) {
    if (g.row(a) >= rows) continue;
#pragma unroll
    for (int b = 0; b < kCols; ++b)
      if (g.col(b) < width) at[(first + g.row(a)) * rs + g.col(b)] = factor * acc[a][b];
  }
}

// --- forward ----------------------------------------------------------------------------------------------

template <typename T, int kCols>
__global__ void __launch_bounds__(kAttnThreads) register_forward_kernel(Problem<T> p) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const int d = p.d, dv = p.dv, dp = p.dp, dvp = p.dvp;
  T* sq = reinterpret_cast<T*>(shared_bytes);  // [64][dp]
  T* sk = sq + kTile * dp;                     // [64][dp]
  T* sv = sk + kTile * dp;                     // [64][dvp]
  T* sw = sv + kTile * dvp;                    // [64][65]: weights (after dropout)
  const ThreadGrid g;
  int64_t mat, tile;
  block_coords((p.l + kTile - 1) / kTile, mat, tile);
  const int64_t i0 = tile * kTile;
  const int rows = static_cast<int>(min_of(kTile, p.l - i0));
  const int64_t mask_base = p.mask ? p.lay.offset(mat, kMask) : 0;
  const int64_t k_base = p.lay.offset(mat, kK), v_base = p.lay.offset(mat, kV);
  constexpr T kInf = std::numeric_limits<T>::infinity();

  load_operand_rows(p, kQ, p.lay.offset(mat, kQ), i0, rows, sq);
  T row_max[kMicro], row_sum[kMicro], acc[kMicro][kCols];
#pragma unroll
  for (int a = 0; a < kMicro; ++a) {
    row_max[a] = -kInf;
    row_sum[a] = 0;
  }
  zero(acc);

  const int64_t key_end = p.causal ? min_of(p.s, i0 + rows) : p.s;
  for (int64_t j0 = 0; j0 < key_end; j0 += kTile) {
    const int cols = static_cast<int>(min_of(kTile, key_end - j0));
    __syncthreads();  // the previous tile's keys, values and weights have been read
    load_operand_rows(p, kK, k_base, j0, cols, sk);
    load_operand_rows(p, kV, v_base, j0, cols, sv);
    __syncthreads();
    T s[kMicro][kMicro];
    zero(s);
    micro_gemm(s, g, sq, dp, 1, sk, dp, 1, d, cols);
#pragma unroll
    for (int a = 0; a < kMicro; ++a)
#pragma unroll
      for (int c = 0; c < kMicro; ++c) {
        const int r = g.row(a), j = g.col(c);
        const bool in = r < rows && j < cols && allowed(p, mask_base, i0 + r, j0 + j);
        s[a][c] = in ? p.scale * s[a][c] : -kInf;
      }
    T factor[kMicro];
    online_softmax_tile(s, row_max, row_sum, factor);
#pragma unroll
    for (int a = 0; a < kMicro; ++a) {
#pragma unroll
      for (int b = 0; b < kCols; ++b) {
        acc[a][b] *= factor[a];
      }
      // The sums stay those of the undropped probabilities; only the product with V sees the dropout.
#pragma unroll
      for (int c = 0; c < kMicro; ++c) {
        T weight = s[a][c];
        if (p.dropping && weight != T(0)) weight *= keep_multiplier(p, mat, i0 + g.row(a), j0 + g.col(c));
        sw[g.row(a) * kScorePitch + g.col(c)] = weight;
      }
    }
    __syncthreads();
    micro_gemm(acc, g, sw, kScorePitch, 1, sv, 1, dvp, cols, dv);
  }

#pragma unroll
  for (int a = 0; a < kMicro; ++a)
#pragma unroll
    for (int b = 0; b < kCols; ++b) acc[a][b] = row_sum[a] == T(0) ? T(0) : acc[a][b] / row_sum[a];
  store_rows(p, kOut, p.out, mat, i0, rows, dv, g, acc, T(1));
  if (g.tx == 0) {
#pragma unroll
    for (int a = 0; a < kMicro; ++a)
      if (g.row(a) < rows)
        p.lse[mat * p.l + i0 + g.row(a)] = row_sum[a] == T(0) ? kInf : row_max[a] + log_of(row_sum[a]);
  }
}

// --- backward ---------------------------------------------------------------------------------------------

// The backward kernels' shared memory: a query tile (Q [64][dp], dO [64][dvp]), a key tile (K [64][dp],
// V [64][dvp]) and the score gradients dS [64][65], then for dK and dV the weights P * M [64][65]. One layout
// for both kernels and the host's launch size.
template <typename T>
struct BackwardTiles {
  T *q, *go, *k, *v, *ds, *w;
  __device__ BackwardTiles(unsigned char* bytes, int dp, int dvp, bool weights) {
    q = reinterpret_cast<T*>(bytes);
    go = q + kTile * dp;
    k = go + kTile * dvp;
    v = k + kTile * dp;
    ds = v + kTile * dvp;
    w = weights ? ds + kTile * kScorePitch : nullptr;
  }
  static size_t bytes(int dp, int dvp, bool weights) {
    return sizeof(T) * kTile *
           (2 * static_cast<size_t>(dp) + 2 * static_cast<size_t>(dvp) + (weights ? 2 : 1) * kScorePitch);
  }
};

// A query tile's raw products with a key tile of `cols` keys: s = Q K^T and, when `grads`, dp = dO V^T.
template <typename T>
__device__ __forceinline__ void tile_products(const Problem<T>& p, const BackwardTiles<T>& t,
                                              const ThreadGrid& g, int cols, bool grads,
                                              T (&s)[kMicro][kMicro], T (&dp)[kMicro][kMicro]) {
  zero(s);
  zero(dp);
  micro_gemm(s, g, t.q, p.dp, 1, t.k, p.dp, 1, p.d, cols);
  if (grads) micro_gemm(dp, g, t.go, p.dvp, 1, t.v, p.dvp, 1, p.dv, cols);
}

// From a tile's raw products s = q . k and (when `grads`) dp = dO . v, the weights P * M (into `sw`, unless
// null) and the score gradients dS = P (M dp - delta) (into `sds`) of query rows [i0, i0 + rows) and keys
// [j0, j0 + cols) of matrix `mat`, with P = exp(scale s - logsumexp); 0 for entries outside them and for
// excluded keys.
template <typename T>
__device__ __forceinline__ void weight_tiles(const Problem<T>& p, const ThreadGrid& g, int64_t mat,
                                             int64_t mask_base, int64_t i0, int rows, int64_t j0, int cols,
                                             const T (&s)[kMicro][kMicro], const T (&dp)[kMicro][kMicro],
                                             bool grads, T* sw, T* sds) {
#pragma unroll
  for (int a = 0; a < kMicro; ++a) {
    const int r = g.row(a);
    const bool row_in = r < rows;
    const T lse = row_in ? p.lse[mat * p.l + i0 + r] : T(0);
    const T delta = row_in && grads ? p.delta[mat * p.l + i0 + r] : T(0);
#pragma unroll
    for (int c = 0; c < kMicro; ++c) {
      const int j = g.col(c);
      T w = 0, ds = 0;
      if (row_in && j < cols && allowed(p, mask_base, i0 + r, j0 + j)) {
        // s - logsumexp <= 0 but for rounding; +inf logsumexp (no allowed key) gives 0.
        const T prob = exp_of(p.scale * s[a][c] - lse);
        if (prob != T(0)) {
          const T keep = p.dropping ? keep_multiplier(p, mat, i0 + r, j0 + j) : T(1);
          w = prob * keep;
          if (grads) ds = prob * (keep * dp[a][c] - delta);
        }
      }
      if (sw) sw[r * kScorePitch + j] = w;
      sds[r * kScorePitch + j] = ds;
    }
  }
}

// dK and dV of one key tile, over every query tile that can see it.
template <typename T, int kCols>
__global__ void __launch_bounds__(kAttnThreads) register_backward_kv_kernel(Problem<T> p) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const int d = p.d, dv = p.dv;
  const BackwardTiles<T> t(shared_bytes, p.dp, p.dvp, true);
  const ThreadGrid g;
  int64_t mat, key_tile;
  block_coords((p.s + kTile - 1) / kTile, mat, key_tile);
  const int64_t j0 = key_tile * kTile;
  const int cols = static_cast<int>(min_of(kTile, p.s - j0));
  const int64_t mask_base = p.mask ? p.lay.offset(mat, kMask) : 0;
  const int64_t q_base = p.lay.offset(mat, kQ), go_base = p.lay.offset(mat, kGradOut);
  const bool want_k = p.gk != nullptr, want_v = p.gv != nullptr;
  load_operand_rows(p, kK, p.lay.offset(mat, kK), j0, cols, t.k);
  load_operand_rows(p, kV, p.lay.offset(mat, kV), j0, cols, t.v);
  T acc_k[kMicro][kCols], acc_v[kMicro][kCols];
  zero(acc_k);
  zero(acc_v);

  // Causal: query i sees key j only from i = j on.
  for (int64_t i0 = p.causal ? j0 : 0; i0 < p.l; i0 += kTile) {
    const int rows = static_cast<int>(min_of(kTile, p.l - i0));
    __syncthreads();  // the previous query tile and its weights have been read
    load_operand_rows(p, kQ, q_base, i0, rows, t.q);
    load_operand_rows(p, kGradOut, go_base, i0, rows, t.go);
    __syncthreads();
    T s[kMicro][kMicro], dprob[kMicro][kMicro];
    tile_products(p, t, g, cols, want_k, s, dprob);
    weight_tiles(p, g, mat, mask_base, i0, rows, j0, cols, s, dprob, want_k, t.w, t.ds);
    __syncthreads();
    // Rows of these products are keys, the reduction runs over the tile's query rows.
    if (want_v) micro_gemm(acc_v, g, t.w, 1, kScorePitch, t.go, 1, p.dvp, rows, dv);
    if (want_k) micro_gemm(acc_k, g, t.ds, 1, kScorePitch, t.q, 1, p.dp, rows, d);
  }
  // Every key row is written, zeros included (keys no query sees).
  if (want_v) store_rows(p, kGradV, p.gv, mat, j0, cols, dv, g, acc_v, T(1));
  if (want_k) store_rows(p, kGradK, p.gk, mat, j0, cols, d, g, acc_k, p.scale);
}

// dQ of one query tile, over the keys its rows can see.
template <typename T, int kCols>
__global__ void __launch_bounds__(kAttnThreads) register_backward_q_kernel(Problem<T> p) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const int d = p.d;
  const BackwardTiles<T> t(shared_bytes, p.dp, p.dvp, false);
  const ThreadGrid g;
  int64_t mat, query_tile;
  block_coords((p.l + kTile - 1) / kTile, mat, query_tile);
  const int64_t i0 = query_tile * kTile;
  const int rows = static_cast<int>(min_of(kTile, p.l - i0));
  const int64_t mask_base = p.mask ? p.lay.offset(mat, kMask) : 0;
  const int64_t k_base = p.lay.offset(mat, kK), v_base = p.lay.offset(mat, kV);
  load_operand_rows(p, kQ, p.lay.offset(mat, kQ), i0, rows, t.q);
  load_operand_rows(p, kGradOut, p.lay.offset(mat, kGradOut), i0, rows, t.go);
  T acc[kMicro][kCols];
  zero(acc);

  const int64_t key_end = p.causal ? min_of(p.s, i0 + rows) : p.s;
  for (int64_t j0 = 0; j0 < key_end; j0 += kTile) {
    const int cols = static_cast<int>(min_of(kTile, key_end - j0));
    __syncthreads();  // the previous key tile and its score gradients have been read
    load_operand_rows(p, kK, k_base, j0, cols, t.k);
    load_operand_rows(p, kV, v_base, j0, cols, t.v);
    __syncthreads();
    T s[kMicro][kMicro], dprob[kMicro][kMicro];
    tile_products(p, t, g, cols, true, s, dprob);
    weight_tiles<T>(p, g, mat, mask_base, i0, rows, j0, cols, s, dprob, true, nullptr, t.ds);
    __syncthreads();
    micro_gemm(acc, g, t.ds, kScorePitch, 1, t.k, 1, p.dp, cols, d);
  }
  store_rows(p, kGradQ, p.gq, mat, i0, rows, d, g, acc, p.scale);
}

// --- host side --------------------------------------------------------------------------------------------

template <typename T>
size_t forward_bytes(const Problem<T>& p) {
  return sizeof(T) * kTile * (2 * static_cast<size_t>(p.dp) + p.dvp + kScorePitch);
}
template <typename T, int kCols>
void launch_forward(const Problem<T>& p, size_t shared) {
  allow_shared_bytes(register_forward_kernel<T, kCols>, shared);
  register_forward_kernel<T, kCols><<<grid_for(p.batch, p.l, kTile), kAttnThreads, shared>>>(p);
  LOOM_CUDA_CHECK_LAUNCH();
}

template <typename T, int kCols>
void launch_backward(const Problem<T>& p, size_t kv_shared, size_t q_shared) {
  if (p.gk || p.gv) {
    allow_shared_bytes(register_backward_kv_kernel<T, kCols>, kv_shared);
    register_backward_kv_kernel<T, kCols><<<grid_for(p.batch, p.s, kTile), kAttnThreads, kv_shared>>>(p);
    LOOM_CUDA_CHECK_LAUNCH();
  }
  if (p.gq) {
    allow_shared_bytes(register_backward_q_kernel<T, kCols>, q_shared);
    register_backward_q_kernel<T, kCols><<<grid_for(p.batch, p.l, kTile), kAttnThreads, q_shared>>>(p);
    LOOM_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

template <typename T>
bool register_tiled_forward(const Problem<T>& p) {
  const size_t shared = forward_bytes(p);
  if (std::max(p.d, p.dv) > kWidest || !shared_bytes_fit(shared)) return false;
  return with_columns(p.dv, [&]<int kCols>() { launch_forward<T, kCols>(p, shared); });
}

template <typename T>
bool register_tiled_backward(const Problem<T>& p) {
  const size_t kv_shared = BackwardTiles<T>::bytes(p.dp, p.dvp, true),
               q_shared = BackwardTiles<T>::bytes(p.dp, p.dvp, false);
  if (std::max(p.d, p.dv) > kWidest || !shared_bytes_fit(std::max(kv_shared, q_shared))) return false;
  return with_columns(std::max(p.d, p.dv),
                      [&]<int kCols>() { launch_backward<T, kCols>(p, kv_shared, q_shared); });
}

template bool register_tiled_forward<float>(const Problem<float>&);
template bool register_tiled_forward<double>(const Problem<double>&);
template bool register_tiled_backward<float>(const Problem<float>&);
template bool register_tiled_backward<double>(const Problem<double>&);

}  // namespace loom::cuda::dense_attention
