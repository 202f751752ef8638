// Dense fused attention on the tensor cores, float32 heads up to 128 wide, at float32 accuracy (3xTF32,
// tensor_cores.cuh): dense_attention.cuh's tensor_core_forward and tensor_core_backward, which
// cuda_attention.cu tries first under AttentionKernels::Auto, the default. The algorithm is
// cuda_attention.cu's (its header comment): online softmax forward, then a block per key tile for dK and dV
// and a block per query tile for dQ, recomputing the weights, no atomics.
//
// How: mma_tiles.cuh's warp GEMMs, each warp owning 16 rows of every product: query rows in the forward and
// dQ kernels, key rows in the dK/dV kernel (which computes S^T = K Q^T and dP^T = V dO^T, so that its rows of
// P^T and dS^T are its own). The only block-wide barriers are around loading a tile. The weights and score
// gradients that feed each pass's second product go through the warp's own rows of a shared tile, which turns
// the accumulator layout into the operand layout and applies dropout on the way.
//
// Shared memory, d = dv = 64: 68 KiB forward, 102 KiB for dK and dV, 85 KiB for dQ (the kernels opt in above
// 48 KiB; an H100 gives 227 KiB, and where a device cannot they decline, as they do on GPUs older than
// sm_80).
#include <algorithm>
#include <cmath>
#include <limits>

#include "loom/cuda/dense_attention.cuh"
#include "loom/cuda/mma_tiles.cuh"

namespace loom::cuda::dense_attention {
namespace {

using namespace mma_tiles;

// Rows [first, first + n) of operand `op` into a [kRows][pitch_of(width)] tile (mma_tiles.cuh's load_padded).
__device__ __forceinline__ void load_tile(const Problem<float>& p, int op, int64_t base, int64_t first, int n,
                                          float* dst) {
  const float* src = (op == kQ ? p.q : op == kK ? p.k : op == kV ? p.v : p.go) + base;
  load_padded(
      src, p.lay.row_stride[op], [first](int r) { return first + r; }, n, op == kQ || op == kK ? p.d : p.dv,
      dst);
}

// Writes factor * acc (the warp's rows from r0, columns < width) to rows [first, first + rows) of matrix
// `mat` of operand `op`.
template <int kTiles>
__device__ __forceinline__ void store_rows(const Problem<float>& p, int op, float* base, int64_t mat,
                                           int64_t first, int rows, int width, const Lane& l, int r0,
                                           const float (&acc)[kTiles][4], float factor) {
  float* at = base + p.lay.offset(mat, op);
  const int64_t rs = p.lay.row_stride[op];
#pragma unroll
  for (int nt = 0; nt < kTiles; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = r0 + l.row(i), c = kMmaCols * nt + l.col(i);
      if (r < rows && c < width) at[(first + r) * rs + c] = factor * acc[nt][i];
    }
}

// --- forward ----------------------------------------------------------------------------------------------

template <int kTiles>
__global__ void __launch_bounds__(kBlockThreads) tensor_core_forward_kernel(Problem<float> p) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const int qp = pitch_of(p.d), vp = pitch_of(p.dv), out_tiles = padded(p.dv) / kMmaCols;
  float* sq = reinterpret_cast<float*>(shared_bytes);  // [64][qp]
  float* sk = sq + kRows * qp;                         // [64][qp]
  float* sv = sk + kRows * qp;                         // [64][vp]
  float* sw = sv + kRows * vp;                         // [64][68]: weights (after dropout)
  const Lane l;
  const int r0 = l.first_row();
  int64_t mat, tile;
  block_coords((p.l + kRows - 1) / kRows, mat, tile);
  const int64_t i0 = tile * kRows;
  const int rows = static_cast<int>(min_of(kRows, p.l - i0));
  const int64_t mask_base = p.mask ? p.lay.offset(mat, kMask) : 0;
  const int64_t k_base = p.lay.offset(mat, kK), v_base = p.lay.offset(mat, kV);

  load_tile(p, kQ, p.lay.offset(mat, kQ), i0, rows, sq);
  // Rows r0 + g (h = 0) and r0 + g + 8 (h = 1): accumulator entries 2 h and 2 h + 1 of every tile.
  float row_max[2] = {-kInf, -kInf}, row_sum[2] = {0, 0}, acc[kTiles][4];
  zero(acc);

  const int64_t key_end = p.causal ? min_of(p.s, i0 + rows) : p.s;
  for (int64_t j0 = 0; j0 < key_end; j0 += kRows) {
    const int cols = static_cast<int>(min_of(kRows, key_end - j0));
    __syncthreads();  // every warp has read the previous tile's keys and values
    load_tile(p, kK, k_base, j0, cols, sk);
    load_tile(p, kV, v_base, j0, cols, sv);
    __syncthreads();
    float s[kScoreTiles][4], unused[kScoreTiles][4];
    score_products(s, unused, l, sq, sk, p.d, nullptr, nullptr, p.dv, false);
#pragma unroll
    for (int nt = 0; nt < kScoreTiles; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = r0 + l.row(i), j = kMmaCols * nt + l.col(i);
        const bool in = r < rows && j < cols && allowed(p, mask_base, i0 + r, j0 + j);
        s[nt][i] = in ? p.scale * s[nt][i] : -kInf;
      }
    float factor[2];
    online_softmax_tile(s, row_max, row_sum, factor);
    scale_rows(acc, factor);
    // The sums stay those of the undropped probabilities; only the product with V sees the dropout.
#pragma unroll
    for (int nt = 0; nt < kScoreTiles; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = r0 + l.row(i), j = kMmaCols * nt + l.col(i);
        float weight = s[nt][i];
        if (p.dropping && weight != 0.0f) weight *= keep_multiplier(p, mat, i0 + r, j0 + j);
        sw[r * kScoreRowPitch + j] = weight;
      }
    __syncwarp();  // the warp's weight rows are written before its lanes read them as operands
    warp_gemm<true>(acc, l, sw, kScoreRowPitch, r0, sv, vp, kRows, out_tiles);
  }

#pragma unroll
  for (int nt = 0; nt < kTiles; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[nt][i] = row_sum[i / 2] == 0.0f ? 0.0f : acc[nt][i] / row_sum[i / 2];
  store_rows(p, kOut, p.out, mat, i0, rows, p.dv, l, r0, acc, 1.0f);
  if (l.t == 0) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = r0 + l.g + 8 * h;
      if (r < rows) p.lse[mat * p.l + i0 + r] = row_sum[h] == 0.0f ? kInf : row_max[h] + logf(row_sum[h]);
    }
  }
}

// --- backward ---------------------------------------------------------------------------------------------

// The backward kernels' shared memory: a key tile (K [64][qp], V [64][vp]), a query tile (Q [64][qp],
// dO [64][vp]), the score gradients [64][68] and, for dK and dV, the weights [64][68] and the query tile's
// logsumexp and delta [64] each. One layout for both kernels and the host's launch size.
struct BackwardTiles {
  float *k, *v, *q, *go, *ds, *w, *lse, *delta;
  __device__ BackwardTiles(unsigned char* bytes, int qp, int vp, bool kv) {
    k = reinterpret_cast<float*>(bytes);
    v = k + kRows * qp;
    q = v + kRows * vp;
    go = q + kRows * qp;
    ds = go + kRows * vp;
    w = kv ? ds + kRows * kScoreRowPitch : nullptr;
    lse = kv ? w + kRows * kScoreRowPitch : nullptr;
    delta = kv ? lse + kRows : nullptr;
  }
  static size_t bytes(int d, int dv, bool kv) {
    const size_t operands = 2 * static_cast<size_t>(pitch_of(d)) + 2 * static_cast<size_t>(pitch_of(dv));
    return sizeof(float) * kRows * (operands + (kv ? 2 * kScoreRowPitch + 2 : kScoreRowPitch));
  }
};

// dK and dV of one key tile, over every query tile that can see it. Each warp owns 16 keys: it computes
// S^T = K Q^T and dP^T = V dO^T for them, so its rows of P^T and dS^T are its own and dV += P^T dO,
// dK += dS^T Q need no other warp's.
template <int kTiles>
__global__ void __launch_bounds__(kBlockThreads) tensor_core_backward_kv_kernel(Problem<float> p) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const int qp = pitch_of(p.d), vp = pitch_of(p.dv);
  const BackwardTiles t(shared_bytes, qp, vp, true);
  const Lane l;
  const int r0 = l.first_row();
  int64_t mat, key_tile;
  block_coords((p.s + kRows - 1) / kRows, mat, key_tile);
  const int64_t j0 = key_tile * kRows;
  const int cols = static_cast<int>(min_of(kRows, p.s - j0));
  const int64_t mask_base = p.mask ? p.lay.offset(mat, kMask) : 0;
  const int64_t q_base = p.lay.offset(mat, kQ), go_base = p.lay.offset(mat, kGradOut);
  const bool want_k = p.gk != nullptr, want_v = p.gv != nullptr;
  load_tile(p, kK, p.lay.offset(mat, kK), j0, cols, t.k);
  load_tile(p, kV, p.lay.offset(mat, kV), j0, cols, t.v);
  float acc_k[kTiles][4], acc_v[kTiles][4];
  zero(acc_k);
  zero(acc_v);

  // Causal: query i sees key j only from i = j on.
  for (int64_t i0 = p.causal ? j0 : 0; i0 < p.l; i0 += kRows) {
    const int rows = static_cast<int>(min_of(kRows, p.l - i0));
    __syncthreads();  // every warp has read the previous query tile
    load_tile(p, kQ, q_base, i0, rows, t.q);
    load_tile(p, kGradOut, go_base, i0, rows, t.go);
    for (int e = threadIdx.x; e < kRows; e += kBlockThreads) {
      t.lse[e] = e < rows ? p.lse[mat * p.l + i0 + e] : 0.0f;
      t.delta[e] = e < rows && want_k ? p.delta[mat * p.l + i0 + e] : 0.0f;
    }
    __syncthreads();
    float st[kScoreTiles][4], dpt[kScoreTiles][4];  // keys x queries
    score_products(st, dpt, l, t.k, t.q, p.d, t.v, t.go, p.dv, want_k);
#pragma unroll
    for (int nt = 0; nt < kScoreTiles; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int key = r0 + l.row(i), query = kMmaCols * nt + l.col(i);
        float w = 0, ds = 0;
        if (query < rows && key < cols && allowed(p, mask_base, i0 + query, j0 + key)) {
          // s - logsumexp <= 0 but for rounding; +inf logsumexp (no allowed key) gives 0.
          const float prob = expf(p.scale * st[nt][i] - t.lse[query]);
          if (prob != 0.0f) {
            const float keep = p.dropping ? keep_multiplier(p, mat, i0 + query, j0 + key) : 1.0f;
            w = prob * keep;
            if (want_k) ds = prob * (keep * dpt[nt][i] - t.delta[query]);
          }
        }
        t.w[key * kScoreRowPitch + query] = w;
        t.ds[key * kScoreRowPitch + query] = ds;
      }
    __syncwarp();  // the warp's rows of P^T and dS^T are written before its lanes read them
    if (want_v) warp_gemm<true>(acc_v, l, t.w, kScoreRowPitch, r0, t.go, vp, kRows, padded(p.dv) / kMmaCols);
    if (want_k) warp_gemm<true>(acc_k, l, t.ds, kScoreRowPitch, r0, t.q, qp, kRows, padded(p.d) / kMmaCols);
  }
  // Every key row is written, zeros included (keys no query sees).
  if (want_v) store_rows(p, kGradV, p.gv, mat, j0, cols, p.dv, l, r0, acc_v, 1.0f);
  if (want_k) store_rows(p, kGradK, p.gk, mat, j0, cols, p.d, l, r0, acc_k, p.scale);
}

// dQ of one query tile, over the keys its rows can see: each warp its 16 query rows, dQ += dS K.
template <int kTiles>
__global__ void __launch_bounds__(kBlockThreads) tensor_core_backward_q_kernel(Problem<float> p) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const int qp = pitch_of(p.d), vp = pitch_of(p.dv);
  const BackwardTiles t(shared_bytes, qp, vp, false);
  const Lane l;
  const int r0 = l.first_row();
  int64_t mat, query_tile;
  block_coords((p.l + kRows - 1) / kRows, mat, query_tile);
  const int64_t i0 = query_tile * kRows;
  const int rows = static_cast<int>(min_of(kRows, p.l - i0));
  const int64_t mask_base = p.mask ? p.lay.offset(mat, kMask) : 0;
  const int64_t k_base = p.lay.offset(mat, kK), v_base = p.lay.offset(mat, kV);
  load_tile(p, kQ, p.lay.offset(mat, kQ), i0, rows, t.q);
  load_tile(p, kGradOut, p.lay.offset(mat, kGradOut), i0, rows, t.go);
  float lse[2], delta[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = r0 + l.g + 8 * h;
    lse[h] = r < rows ? p.lse[mat * p.l + i0 + r] : 0.0f;
    delta[h] = r < rows ? p.delta[mat * p.l + i0 + r] : 0.0f;
  }
  float acc[kTiles][4];
  zero(acc);

  const int64_t key_end = p.causal ? min_of(p.s, i0 + rows) : p.s;
  for (int64_t j0 = 0; j0 < key_end; j0 += kRows) {
    const int cols = static_cast<int>(min_of(kRows, key_end - j0));
    __syncthreads();  // every warp has read the previous key tile
    load_tile(p, kK, k_base, j0, cols, t.k);
    load_tile(p, kV, v_base, j0, cols, t.v);
    __syncthreads();
    float s[kScoreTiles][4], dprob[kScoreTiles][4];
    score_products(s, dprob, l, t.q, t.k, p.d, t.go, t.v, p.dv, true);
#pragma unroll
    for (int nt = 0; nt < kScoreTiles; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = r0 + l.row(i), j = kMmaCols * nt + l.col(i);
        float ds = 0;
        if (r < rows && j < cols && allowed(p, mask_base, i0 + r, j0 + j)) {
          const float prob = expf(p.scale * s[nt][i] - lse[i / 2]);
          if (prob != 0.0f) {
            const float keep = p.dropping ? keep_multiplier(p, mat, i0 + r, j0 + j) : 1.0f;
            ds = prob * (keep * dprob[nt][i] - delta[i / 2]);
          }
        }
        t.ds[r * kScoreRowPitch + j] = ds;
      }
    __syncwarp();  // the warp's rows of dS are written before its lanes read them
    warp_gemm<true>(acc, l, t.ds, kScoreRowPitch, r0, t.k, qp, kRows, padded(p.d) / kMmaCols);
  }
  store_rows(p, kGradQ, p.gq, mat, i0, rows, p.d, l, r0, acc, p.scale);
}

// --- host side --------------------------------------------------------------------------------------------

size_t forward_bytes(int d, int dv) {
  return sizeof(float) * kRows *
         (2 * static_cast<size_t>(pitch_of(d)) + static_cast<size_t>(pitch_of(dv)) + kScoreRowPitch);
}

// Whether the kernels take a problem: float32 heads up to 128 wide whose tiles fit, on a GPU with tf32
// tensor cores that passed the self-check (tensor_core_check.cu).
bool applies(const Problem<float>& p, size_t shared) {
  return std::max(p.d, p.dv) <= kWidestHead && shared_bytes_fit(shared) &&
         current_device_enables_tensor_cores();
}

}  // namespace

bool tensor_core_forward(const Problem<float>& p) {
  const size_t shared = forward_bytes(p.d, p.dv);
  if (!applies(p, shared)) return false;
  with_tiles(p.dv, [&]<int kTiles>() {
    allow_shared_bytes(tensor_core_forward_kernel<kTiles>, shared);
    tensor_core_forward_kernel<kTiles><<<grid_for(p.batch, p.l, kRows), kBlockThreads, shared>>>(p);
    LOOM_CUDA_CHECK_LAUNCH();
  });
  return true;
}

bool tensor_core_backward(const Problem<float>& p) {
  const size_t kv_shared = BackwardTiles::bytes(p.d, p.dv, true),
               q_shared = BackwardTiles::bytes(p.d, p.dv, false);
  if (!applies(p, kv_shared)) return false;
  with_tiles(std::max(p.d, p.dv), [&]<int kTiles>() {
    if (p.gk || p.gv) {
      allow_shared_bytes(tensor_core_backward_kv_kernel<kTiles>, kv_shared);
      tensor_core_backward_kv_kernel<kTiles><<<grid_for(p.batch, p.s, kRows), kBlockThreads, kv_shared>>>(p);
      LOOM_CUDA_CHECK_LAUNCH();
    }
    if (p.gq) {
      allow_shared_bytes(tensor_core_backward_q_kernel<kTiles>, q_shared);
      tensor_core_backward_q_kernel<kTiles><<<grid_for(p.batch, p.l, kRows), kBlockThreads, q_shared>>>(p);
      LOOM_CUDA_CHECK_LAUNCH();
    }
  });
  return true;
}

// float64 has no tensor-core path here (sm_80's DMMA is a different instruction and shape).
bool tensor_core_forward(const Problem<double>&) { return false; }
bool tensor_core_backward(const Problem<double>&) { return false; }

}  // namespace loom::cuda::dense_attention
