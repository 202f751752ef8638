// LSH attention's chunk kernels on the tensor cores, float32 heads up to 128 wide, at float32's accuracy
// (3xTF32, tensor_cores.cuh): lsh_attention.cuh's tensor_core_forward and tensor_core_backward, which
// cuda_lsh_attention.cu tries first under AttentionKernels::Auto, the default. The algorithm is
// cuda_lsh_attention.cu's (its header comment): an online-softmax forward over each chunk's window;
// backward, a kernel per query tile that recomputes each row's statistics and writes the query path of dQK,
// then a kernel per key tile that visits every window slot its chunk occupies, accumulates dV and dK and adds
// the key path through the normalisation.
//
// How: mma_tiles.cuh's warp GEMMs, each warp owning 16 rows of every product: query rows in the forward and
// query kernels, key rows in the key kernel (which computes S^T = K Q^T and dP^T = V dO^T, so that its rows
// of P^T and dS^T are its own). Weights and score gradients reach their second product through the warp's own
// rows of a shared tile.
//
// Shared memory, d = dv = 64: 69 KiB forward, 86 KiB for the query kernel, 104 KiB for the key kernel (the
// kernels opt in above 48 KiB; where a device cannot, or is older than sm_80, they decline).
#include <algorithm>
#include <cmath>

#include "loom/cuda/lsh_attention.cuh"
#include "loom/cuda/mma_tiles.cuh"

namespace loom::cuda::lsh_attention {
namespace {

using namespace mma_tiles;

// The shared memory of all three kernels, carved in one order: a query tile (Q, and dO for the backward
// kernels), a key tile (normalised K, V, positions, padding, and for the key kernel each key's rho and
// dK . q), the weights P and the score gradients dS, and for the key kernel the query tile's positions and
// row statistics. Measured on the host with a null base.
struct Tiles {
  float *q = nullptr, *go = nullptr, *k = nullptr, *v = nullptr, *p = nullptr, *ds = nullptr;
  float *rho = nullptr, *kdot = nullptr, *row_max = nullptr, *row_inv_sum = nullptr, *row_delta = nullptr;
  int64_t *kpos = nullptr, *qpos = nullptr;
  bool* kpad = nullptr;
  size_t bytes = 0;
  enum Kind { kForward, kQuery, kKey };
  __host__ __device__ Tiles(unsigned char* base, Kind kind, int d, int dv) {
    Carver cv{base};
    kpos = cv.take<int64_t>(kRows);
    if (kind == kKey) qpos = cv.take<int64_t>(kRows);
    q = cv.take<float>(static_cast<size_t>(kRows) * pitch_of(d));
    if (kind != kForward) go = cv.take<float>(static_cast<size_t>(kRows) * pitch_of(dv));
    k = cv.take<float>(static_cast<size_t>(kRows) * pitch_of(d));
    v = cv.take<float>(static_cast<size_t>(kRows) * pitch_of(dv));
    if (kind != kQuery) p = cv.take<float>(static_cast<size_t>(kRows) * kScoreRowPitch);
    if (kind != kForward) ds = cv.take<float>(static_cast<size_t>(kRows) * kScoreRowPitch);
    if (kind == kKey) {
      rho = cv.take<float>(kRows);
      kdot = cv.take<float>(kRows);
      row_max = cv.take<float>(kRows);
      row_inv_sum = cv.take<float>(kRows);
      row_delta = cv.take<float>(kRows);
    }
    kpad = cv.take<bool>(kRows);
    bytes = cv.offset;
  }
};

// Loads `count` keys, key e being global row row_of(e), normalised into a [kRows][pitch_of(d)] tile (zeros
// past the keys and the width), with their positions, padding flags and, when asked, their rho.
template <typename RowOf>
__device__ __forceinline__ void load_key_tile(const Lsh<float>& a, int64_t g, int count, RowOf row_of,
                                              const Tiles& t, float* rho_out) {
  load_keys<true>(a, g, count, row_of, KeyRows{pitch_of(a.d), padded(a.d), kRows, kBlockWarps}, t.k, t.kpos,
                  t.kpad, rho_out);
}

// A query tile of the forward and query kernels: batch-head g, chunk ci, the global row q0 of its first
// query, its row count, and the positions of the lane's two rows (0 past the tile: never used).
struct QueryTile {
  int64_t g, ci, q0;
  int rows;
  int64_t pos[2];
};

__device__ QueryTile block_query_tile(const Lsh<float>& a, const Lane& l) {
  QueryTile qt;
  int64_t tile;
  chunk_coords(a.n_ch, (a.c + kRows - 1) / kRows, qt.g, qt.ci, tile);
  qt.q0 = qt.g * a.n + qt.ci * a.c + tile * kRows;
  qt.rows = static_cast<int>(min_of(kRows, a.c - tile * kRows));
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = l.first_row() + l.g + 8 * h;
    qt.pos[h] = r < qt.rows ? a.pos[qt.q0 + r] : 0;
  }
  return qt;
}

// Window positions [w0, w0 + kc) of the query tile's chunk: keys normalised, positions, padding and (when
// `values`) the values.
__device__ __forceinline__ void load_window_tile(const Lsh<float>& a, const QueryTile& qt, const Tiles& t,
                                                 int64_t w0, int kc, bool values) {
  auto row_of = [&](int e) { return a.window_row(qt.g, qt.ci, w0 + e); };
  load_key_tile(a, qt.g, kc, row_of, t, nullptr);
  if (values) load_padded(a.v, a.dv, row_of, kc, a.dv, t.v);
}

// The logits of the warp's 16 query rows against the key tile (window positions [w0, w0 + kc)), from the raw
// products s = q . k: a.logit within the tile, -inf past its rows or keys (weight 0). Bit 4 nt + i of
// `replaced` marks the -1e9 constants (padding, causal), whose gradient is 0.
__device__ __forceinline__ void query_logits(const Lsh<float>& a, const Lane& l, const QueryTile& qt,
                                             const Tiles& t, int64_t w0, int kc, float (&s)[kScoreTiles][4],
                                             unsigned& replaced) {
  replaced = 0;
#pragma unroll
  for (int nt = 0; nt < kScoreTiles; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = l.first_row() + l.row(i), j = kMmaCols * nt + l.col(i);
      bool was_replaced = false;
      s[nt][i] = r < qt.rows && j < kc
                     ? a.logit(s[nt][i], qt.pos[i / 2], t.kpos[j], t.kpad[j], qt.q0 + r, w0 + j, was_replaced)
                     : -kInf;
      if (was_replaced) replaced |= 1u << (4 * nt + i);
    }
}

// One 64-slot window tile for the block's query rows, once every warp has read the previous tile (in the
// query kernel's first pass, the first time, its delta column): loads the tile's keys (and, with `values`,
// its values), then gives the warp's logits in s with their replaced bits and, with `grads`, dP = dO V^T in
// dprob.
__device__ __forceinline__ void window_tile_logits(const Lsh<float>& a, const Lane& l, const QueryTile& qt,
                                                   const Tiles& t, int64_t w0, int kc, bool values,
                                                   bool grads, float (&s)[kScoreTiles][4],
                                                   float (&dprob)[kScoreTiles][4], unsigned& replaced) {
  __syncthreads();
  load_window_tile(a, qt, t, w0, kc, values);
  __syncthreads();
  score_products(s, dprob, l, t.q, t.k, a.d, t.go, t.v, a.dv, grads);
  query_logits(a, l, qt, t, w0, kc, s, replaced);
}

// --- forward ----------------------------------------------------------------------------------------------

template <int kTiles>
__global__ void __launch_bounds__(kBlockThreads) lsh_tensor_core_forward_kernel(Lsh<float> a) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const Tiles t(shared_bytes, Tiles::kForward, a.d, a.dv);
  const int vp = pitch_of(a.dv);
  const Lane l;
  const int r0 = l.first_row();
  const QueryTile qt = block_query_tile(a, l);
  load_padded(
      a.qk, a.d, [&](int r) { return qt.q0 + r; }, qt.rows, a.d, t.q);
  float row_max[2] = {-kInf, -kInf}, row_sum[2] = {0, 0}, acc[kTiles][4];
  zero(acc);

  for (int64_t w0 = 0; w0 < a.w; w0 += kRows) {
    const int kc = static_cast<int>(min_of(kRows, a.w - w0));
    float s[kScoreTiles][4], unused[kScoreTiles][4];
    unsigned replaced;
    window_tile_logits(a, l, qt, t, w0, kc, true, false, s, unused, replaced);
    float factor[2];
    online_softmax_tile(s, row_max, row_sum, factor);
    scale_rows(acc, factor);
#pragma unroll
    for (int nt = 0; nt < kScoreTiles; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) t.p[(r0 + l.row(i)) * kScoreRowPitch + kMmaCols * nt + l.col(i)] = s[nt][i];
    __syncwarp();  // the warp's weight rows are written before its lanes read them as operands
    warp_gemm<true>(acc, l, t.p, kScoreRowPitch, r0, t.v, vp, kRows, padded(a.dv) / kMmaCols);
  }
  // Every logit of a row is finite and its window holds at least one key, so every sum is at least 1.
#pragma unroll
  for (int nt = 0; nt < kTiles; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = r0 + l.row(i), col = kMmaCols * nt + l.col(i);
      if (r < qt.rows && col < a.dv) a.out[(qt.q0 + r) * a.dv + col] = acc[nt][i] / row_sum[i / 2];
    }
  if (l.t == 0) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = r0 + l.g + 8 * h;
      if (r < qt.rows) a.lse[qt.q0 + r] = row_max[h] + logf(row_sum[h]);
    }
  }
}

// --- backward step 1: statistics and the query path -------------------------------------------------------

template <int kTiles>
__global__ void __launch_bounds__(kBlockThreads) lsh_tensor_core_query_kernel(Lsh<float> a) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const Tiles t(shared_bytes, Tiles::kQuery, a.d, a.dv);
  const int qp = pitch_of(a.d);
  const Lane l;
  const int r0 = l.first_row(), lane = threadIdx.x % 32;
  const QueryTile qt = block_query_tile(a, l);
  auto query_row = [&](int r) { return qt.q0 + r; };
  load_padded(a.qk, a.d, query_row, qt.rows, a.d, t.q);
  load_padded(a.go, a.dv, query_row, qt.rows, a.dv, t.go);
  // delta = dO . O - dlse, a warp per row, into the (not yet used) score-gradient tile's first column.
  for (int r = l.warp; r < qt.rows; r += kBlockWarps) {
    const float delta = warp_row_delta(a, qt.q0 + r);
    if (lane == 0) t.ds[r * kScoreRowPitch] = delta;
  }
  __syncthreads();
  float delta[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = r0 + l.g + 8 * h;
    delta[h] = r < qt.rows ? t.ds[r * kScoreRowPitch] : 0.0f;
  }

  // Pass 1: each row's maximum and sum.
  float row_max[2] = {-kInf, -kInf}, row_sum[2] = {0, 0};
  for (int64_t w0 = 0; w0 < a.w; w0 += kRows) {
    const int kc = static_cast<int>(min_of(kRows, a.w - w0));
    float s[kScoreTiles][4], unused[kScoreTiles][4];
    unsigned replaced;
    window_tile_logits(a, l, qt, t, w0, kc, false, false, s, unused, replaced);
    float factor[2];
    online_softmax_tile(s, row_max, row_sum, factor);
  }
  float inv_sum[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    inv_sum[h] = 1.0f / row_sum[h];
    const int r = r0 + l.g + 8 * h;
    if (l.t == 0 && r < qt.rows) {
      a.row_max[qt.q0 + r] = row_max[h];
      a.row_inv_sum[qt.q0 + r] = inv_sum[h];
      a.row_delta[qt.q0 + r] = delta[h];
    }
  }

  // Pass 2: dS = P (dP - delta), 0 at replaced logits, and dQ = dS K.
  float acc[kTiles][4];
  zero(acc);
  for (int64_t w0 = 0; w0 < a.w; w0 += kRows) {
    const int kc = static_cast<int>(min_of(kRows, a.w - w0));
    float s[kScoreTiles][4], dprob[kScoreTiles][4];
    unsigned replaced;
    window_tile_logits(a, l, qt, t, w0, kc, true, true, s, dprob, replaced);
#pragma unroll
    for (int nt = 0; nt < kScoreTiles; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = r0 + l.row(i), j = kMmaCols * nt + l.col(i);
        float ds = 0;
        if (r < qt.rows && j < kc)
          ds = weight_and_grad(s[nt][i], (replaced >> (4 * nt + i)) & 1u, row_max[i / 2], inv_sum[i / 2],
                               dprob[nt][i], delta[i / 2])
                   .ds;
        t.ds[r * kScoreRowPitch + j] = ds;
      }
    __syncwarp();  // the warp's rows of dS are written before its lanes read them
    warp_gemm<true>(acc, l, t.ds, kScoreRowPitch, r0, t.k, qp, kRows, padded(a.d) / kMmaCols);
  }
#pragma unroll
  for (int nt = 0; nt < kTiles; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = r0 + l.row(i), col = kMmaCols * nt + l.col(i);
      if (r < qt.rows && col < a.d) a.gq[(qt.q0 + r) * a.d + col] = acc[nt][i];
    }
}

// --- backward step 2: the key path and the values ---------------------------------------------------------

template <int kTiles>
__global__ void __launch_bounds__(kBlockThreads) lsh_tensor_core_key_kernel(Lsh<float> a) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const Tiles t(shared_bytes, Tiles::kKey, a.d, a.dv);
  const int qp = pitch_of(a.d), vp = pitch_of(a.dv);
  const Lane l;
  const int r0 = l.first_row(), lane = threadIdx.x % 32;
  int64_t head, key_chunk, kt;
  chunk_coords(a.n_ch, (a.c + kRows - 1) / kRows, head, key_chunk, kt);
  const int64_t k0 = head * a.n + key_chunk * a.c + kt * kRows;  // global row of the tile's first key
  const int kc = static_cast<int>(min_of(kRows, a.c - kt * kRows));
  auto key_row = [k0](int e) { return k0 + e; };
  load_key_tile(a, head, kc, key_row, t, t.rho);
  load_padded(a.v, a.dv, key_row, kc, a.dv, t.v);
  float acc_k[kTiles][4], acc_v[kTiles][4];
  zero(acc_k);
  zero(acc_v);

  for (int64_t slot = 0; slot < a.span; ++slot) {
    // The chunk whose window holds this key chunk in `slot`, and the keys' positions in that window.
    const int64_t cq = ((key_chunk - slot + a.before) % a.n_ch + a.n_ch) % a.n_ch;
    const int64_t w0 = slot * a.c + kt * kRows;
    for (int64_t i0 = 0; i0 < a.c; i0 += kRows) {
      const int rows = static_cast<int>(min_of(kRows, a.c - i0));
      const int64_t q0 = head * a.n + cq * a.c + i0;
      auto query_row = [q0](int r) { return q0 + r; };
      __syncthreads();  // every warp has read the previous query tile (the first time: keys loaded)
      load_padded(a.qk, a.d, query_row, rows, a.d, t.q);
      load_padded(a.go, a.dv, query_row, rows, a.dv, t.go);
      for (int e = threadIdx.x; e < kRows; e += kBlockThreads) {
        const bool in = e < rows;
        t.qpos[e] = in ? a.pos[q0 + e] : 0;
        t.row_max[e] = in ? a.row_max[q0 + e] : 0.0f;
        t.row_inv_sum[e] = in ? a.row_inv_sum[q0 + e] : 0.0f;
        t.row_delta[e] = in ? a.row_delta[q0 + e] : 0.0f;
      }
      __syncthreads();
      float st[kScoreTiles][4], dpt[kScoreTiles][4];  // keys x queries
      score_products(st, dpt, l, t.k, t.q, a.d, t.v, t.go, a.dv, true);
#pragma unroll
      for (int nt = 0; nt < kScoreTiles; ++nt)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int key = r0 + l.row(i), query = kMmaCols * nt + l.col(i);
          WeightAndGrad<float> pg{0, 0};
          if (query < rows && key < kc) {
            bool replaced = false;
            const float x =
                a.logit(st[nt][i], t.qpos[query], t.kpos[key], t.kpad[key], q0 + query, w0 + key, replaced);
            pg = weight_and_grad(x, replaced, t.row_max[query], t.row_inv_sum[query], dpt[nt][i],
                                 t.row_delta[query]);
          }
          t.p[key * kScoreRowPitch + query] = pg.p;
          t.ds[key * kScoreRowPitch + query] = pg.ds;
        }
      __syncwarp();  // the warp's rows of P^T and dS^T are written before its lanes read them
      warp_gemm<true>(acc_v, l, t.p, kScoreRowPitch, r0, t.go, vp, kRows, padded(a.dv) / kMmaCols);
      warp_gemm<true>(acc_k, l, t.ds, kScoreRowPitch, r0, t.q, qp, kRows, padded(a.d) / kMmaCols);
    }
  }
  __syncthreads();  // every warp has read the keys: dK goes over them
  float* dk = t.k;
#pragma unroll
  for (int nt = 0; nt < kTiles; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int key = r0 + l.row(i), col = kMmaCols * nt + l.col(i);
      if (key >= kc) continue;
      if (col < a.dv) a.gv[(k0 + key) * a.dv + col] = acc_v[nt][i];
      if (col < a.d) dk[key * qp + col] = acc_k[nt][i];
    }
  __syncthreads();
  for (int j = l.warp; j < kc; j += kBlockWarps) {
    const float kdot = warp_key_dot(a, dk + j * qp, k0 + j);
    if (lane == 0) t.kdot[j] = kdot;
  }
  __syncthreads();
#pragma unroll
  for (int nt = 0; nt < kTiles; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int key = r0 + l.row(i), col = kMmaCols * nt + l.col(i);
      if (key < kc && col < a.d)
        a.gq[(k0 + key) * a.d + col] +=
            key_path_grad(a, t.rho[key], t.kdot[key], acc_k[nt][i], k0 + key, col);
    }
}

// --- host side --------------------------------------------------------------------------------------------

size_t tile_bytes(Tiles::Kind kind, const Lsh<float>& a) { return Tiles(nullptr, kind, a.d, a.dv).bytes; }

// Whether the kernels take a problem: heads up to 128 wide whose tiles fit, on a GPU with tf32 tensor cores
// that passed the self-check (tensor_core_check.cu).
bool applies(const Lsh<float>& a, size_t shared) {
  return std::max(a.d, a.dv) <= kWidestHead && shared_bytes_fit(shared) &&
         current_device_enables_tensor_cores();
}

}  // namespace

bool tensor_core_forward(const Lsh<float>& a) {
  const size_t shared = tile_bytes(Tiles::kForward, a);
  if (!applies(a, shared)) return false;
  with_tiles(a.dv, [&]<int kTiles>() {
    allow_shared_bytes(lsh_tensor_core_forward_kernel<kTiles>, shared);
    lsh_tensor_core_forward_kernel<kTiles>
        <<<chunk_grid(a.bh, a.n_ch, a.c, kRows), kBlockThreads, shared>>>(a);
    LOOM_CUDA_CHECK_LAUNCH();
  });
  return true;
}

bool tensor_core_backward(const Lsh<float>& a) {
  const size_t query_shared = tile_bytes(Tiles::kQuery, a), key_shared = tile_bytes(Tiles::kKey, a);
  if (!applies(a, std::max(query_shared, key_shared))) return false;
  with_tiles(std::max(a.d, a.dv), [&]<int kTiles>() {
    allow_shared_bytes(lsh_tensor_core_query_kernel<kTiles>, query_shared);
    lsh_tensor_core_query_kernel<kTiles>
        <<<chunk_grid(a.bh, a.n_ch, a.c, kRows), kBlockThreads, query_shared>>>(a);
    LOOM_CUDA_CHECK_LAUNCH();
    allow_shared_bytes(lsh_tensor_core_key_kernel<kTiles>, key_shared);
    lsh_tensor_core_key_kernel<kTiles>
        <<<chunk_grid(a.bh, a.n_ch, a.c, kRows), kBlockThreads, key_shared>>>(a);
    LOOM_CUDA_CHECK_LAUNCH();
  });
  return true;
}

// float64 has no tensor-core path (sm_80's DMMA is a different instruction and shape).
bool tensor_core_forward(const Lsh<double>&) { return false; }
bool tensor_core_backward(const Lsh<double>&) { return false; }

}  // namespace loom::cuda::lsh_attention
