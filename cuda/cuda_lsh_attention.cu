// LSH attention's per-chunk core on the GPU (backend.h, lsh_attention_forward / _backward): the rows are
// already sorted by (round, bucket, position), and chunk ci of C rows attends to the W = span C rows of
// chunks ci - n_before .. ci + n_after (circularly). Like cuda_attention.cu, no [C, W] logit tile leaves
// shared memory and nothing of size N W is allocated; ops/cpu/cpu_lsh_attention.cpp is the same computation
// on the CPU.
//
// Logits: s = q . k - 1e5 [same position] - bias, replaced by -1e9 where the key is padding or (causal) after
// the query, with keys k = q_key rho / sqrt(d), rho = (mean(q_key^2) + 1e-6)^(-1/2), normalised as each key
// tile is loaded (every window recomputes its keys' norms instead of holding an [N, d] key matrix).
//
// Forward: a block owns R query rows of one chunk and walks its window 32 keys at a time with an online
//   softmax (as the dense kernel); writes out = softmax(s) V and lse = logsumexp(s). Every logit is finite,
//   so every row has a maximum and a sum >= 1.
// Backward, in three steps, none of which writes another block's rows (no atomics, the same bits every run):
//   1. per query tile: the row's softmax maximum m and sum l are recomputed (one pass over the window: the
//      probabilities must be a row softmax, not exp(s - lse), which float32 cannot resolve for a fully masked
//      row whose lse is near -1e9), delta = dO . O - dlse, then dS = P (dP - delta) (0 at replaced logits,
//      which are constants) and the query path dQ = dS K is written to grad_qk; m, 1 / l and delta are kept
//      per row.
//   2. per key tile (32 rows of one chunk): every window slot the chunk occupies (chunk c' sits in slot s of
//      chunk c' - s + n_before's window; a small chunk count can put it in several slots of one window) is
//      visited, its query rows' P and dS recomputed from the kept statistics, and dV = P^T dO and dK = dS^T Q
//      accumulated; grad_v is written and the key path through the normalisation,
//      rho / sqrt(d) (dK - q rho^2 (dK . q) / d), added to the key rows of grad_qk.
// Heads wider than 128 take the composed default: the key kernel's dK and dV would not fit its accumulators.
// Tiles are sized for 48 KiB of shared memory; a float64 head near 128 wide opts into more.
// Dispatch (at the end): the register-tiled kernels of cuda_lsh_attention_register_tiles.cu (the same steps
// with GEMM-like inner loops) run first; the kernels here take what they decline (their tiles need more
// shared memory: a float64 head of 128, or a device with less to give). lsh_attention.cuh holds what both
// share; cuda::set_attention_kernels can switch either off, or put cuda_lsh_attention_tensor_cores.cu's
// kernels (float32 on tensor cores) first.
#include <algorithm>
#include <climits>
#include <cmath>
#include <iterator>
#include <limits>
#include <type_traits>

#include "loom/cuda/cuda_backend.h"
#include "loom/cuda/lsh_attention.cuh"

namespace loom::cuda {
namespace {

using namespace lsh_attention;

constexpr int kKeys = 32;  // keys per tile: one per lane in the row statistics
// The query tile a forward or query-gradient block owns: batch-head g, chunk ci, the global row q0 of its
// first query and its row count. Starting it loads the queries and their positions into shared memory and
// sets each row's running softmax maximum to -inf and its sum to 0.
struct QueryTile {
  int64_t g, ci, q0;
  int rows;
};
template <typename T>
__device__ QueryTile start_query_tile(const Lsh<T>& a, int tile_rows, T* q, int64_t* qpos, T* row_max,
                                      T* row_sum) {
  QueryTile qt;
  int64_t tile;
  chunk_coords(a.n_ch, (a.c + tile_rows - 1) / tile_rows, qt.g, qt.ci, tile);
  qt.q0 = qt.g * a.n + qt.ci * a.c + tile * tile_rows;
  qt.rows = static_cast<int>(min_of(tile_rows, a.c - tile * tile_rows));
  load_rows(a.qk, a.d, qt.q0, qt.rows, a.d, q, a.d);
  for (int r = threadIdx.x; r < qt.rows; r += kAttnThreads) {
    qpos[r] = a.pos[qt.q0 + r];
    row_max[r] = -std::numeric_limits<T>::infinity();
    row_sum[r] = 0;
  }
  return qt;
}

// --- forward
// -------------------------------------------------------------------------------------------------

template <typename T>
struct ForwardTiles {
  int64_t *qpos, *kpos;
  T *q, *k, *v, *s, *row_max, *row_sum, *row_scale;
  bool* kpad;
  size_t bytes;
  __host__ __device__ ForwardTiles(unsigned char* base, int rows, int d, int dv) {
    Carver cv{base};
    qpos = cv.take<int64_t>(rows);
    kpos = cv.take<int64_t>(kKeys);
    q = cv.take<T>(static_cast<size_t>(rows) * d);
    k = cv.take<T>(static_cast<size_t>(kKeys) * odd_pitch(d));
    v = cv.take<T>(static_cast<size_t>(kKeys) * dv);
    s = cv.take<T>(static_cast<size_t>(rows) * (kKeys + 1));
    row_max = cv.take<T>(rows);
    row_sum = cv.take<T>(rows);
    row_scale = cv.take<T>(rows);
    kpad = cv.take<bool>(kKeys);
    bytes = cv.offset;
  }
};

template <typename T>
__global__ void __launch_bounds__(kAttnThreads) lsh_forward_kernel(Lsh<T> a, int tile_rows) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const ForwardTiles<T> t(shared_bytes, tile_rows, a.d, a.dv);
  const int d = a.d, dv = a.dv, tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const QueryTile qt = start_query_tile(a, tile_rows, t.q, t.qpos, t.row_max, t.row_sum);
  const int64_t g = qt.g, ci = qt.ci, q0 = qt.q0;
  const int rows = qt.rows;
  constexpr T kInf = std::numeric_limits<T>::infinity();
  T acc[kMaxOwned];
#pragma unroll
  for (int k = 0; k < kMaxOwned; ++k) acc[k] = 0;
  const int owned = rows * dv;

  for (int64_t w0 = 0; w0 < a.w; w0 += kKeys) {
    const int kc = static_cast<int>(min_of(kKeys, a.w - w0));
    auto row_of = [&](int e) { return a.window_row(g, ci, w0 + e); };
    __syncthreads();  // the previous tile has been read
    load_keys(a, g, kc, row_of, t.k, t.kpos, t.kpad, static_cast<T*>(nullptr));
    load_rows_at(a.v, dv, kc, dv, row_of, t.v, dv);
    __syncthreads();
    for (int e = tid; e < rows * kKeys; e += kAttnThreads) {
      const int r = e / kKeys, j = e % kKeys;
      T score = -kInf;  // past the window's end: weight 0
      if (j < kc) {
        bool replaced;
        score = a.logit(dot(t.q + r * d, t.k + j * odd_pitch(d), d), t.qpos[r], t.kpos[j], t.kpad[j], q0 + r,
                        w0 + j, replaced);
      }
      t.s[r * (kKeys + 1) + j] = score;
    }
    __syncthreads();
    for (int r = warp; r < rows; r += kWarps) {
      // Every logit is finite and the tile has at least one key, so the step's maximum is finite.
      const SoftmaxStep<T> step =
          online_softmax_step(t.s[r * (kKeys + 1) + lane], t.row_max + r, t.row_sum + r);
      if (lane == 0) t.row_scale[r] = step.scale;
      t.s[r * (kKeys + 1) + lane] = step.weight;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kMaxOwned; ++k) {
      const int e = tid + k * kAttnThreads;
      if (e < owned) {
        const int r = e / dv, col = e % dv;
        const T* weights = t.s + r * (kKeys + 1);
        T x = acc[k] * t.row_scale[r];
        for (int j = 0; j < kc; ++j) x += weights[j] * t.v[j * dv + col];
        acc[k] = x;
      }
    }
  }
  __syncthreads();
#pragma unroll
  for (int k = 0; k < kMaxOwned; ++k) {
    const int e = tid + k * kAttnThreads;
    if (e < owned) a.out[(q0 + e / dv) * dv + e % dv] = acc[k] / t.row_sum[e / dv];
  }
  for (int r = tid; r < rows; r += kAttnThreads) a.lse[q0 + r] = t.row_max[r] + log_of(t.row_sum[r]);
}

// --- backward step 1: statistics and the query path
// -----------------------------------------------------------

template <typename T>
struct QueryTiles {
  int64_t *qpos, *kpos;
  T *q, *go, *m, *inv_l, *delta, *k, *v, *s;
  bool* kpad;
  size_t bytes;
  __host__ __device__ QueryTiles(unsigned char* base, int rows, int d, int dv) {
    Carver cv{base};
    qpos = cv.take<int64_t>(rows);
    kpos = cv.take<int64_t>(kKeys);
    q = cv.take<T>(static_cast<size_t>(rows) * d);
    go = cv.take<T>(static_cast<size_t>(rows) * dv);
    m = cv.take<T>(rows);
    inv_l = cv.take<T>(rows);
    delta = cv.take<T>(rows);
    k = cv.take<T>(static_cast<size_t>(kKeys) * odd_pitch(d));
    v = cv.take<T>(static_cast<size_t>(kKeys) * odd_pitch(dv));
    s = cv.take<T>(static_cast<size_t>(rows) * (kKeys + 1));
    kpad = cv.take<bool>(kKeys);
    bytes = cv.offset;
  }
};

template <typename T>
__global__ void __launch_bounds__(kAttnThreads) lsh_backward_query_kernel(Lsh<T> a, int tile_rows) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const QueryTiles<T> t(shared_bytes, tile_rows, a.d, a.dv);
  const int d = a.d, dv = a.dv, tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  // inv_l holds the running sum until the first pass ends.
  const QueryTile qt = start_query_tile(a, tile_rows, t.q, t.qpos, t.m, t.inv_l);
  const int64_t g = qt.g, ci = qt.ci, q0 = qt.q0;
  const int rows = qt.rows;
  constexpr T kInf = std::numeric_limits<T>::infinity();
  load_rows(a.go, dv, q0, rows, dv, t.go, dv);
  for (int r = warp; r < rows; r += kWarps) {  // straight from global memory
    const T delta = warp_row_delta(a, q0 + r);
    if (lane == 0) t.delta[r] = delta;
  }

  // Pass 1: each row's maximum and sum.
  for (int64_t w0 = 0; w0 < a.w; w0 += kKeys) {
    const int kc = static_cast<int>(min_of(kKeys, a.w - w0));
    __syncthreads();
    load_keys(
        a, g, kc, [&](int e) { return a.window_row(g, ci, w0 + e); }, t.k, t.kpos, t.kpad,
        static_cast<T*>(nullptr));
    __syncthreads();
    for (int r = warp; r < rows; r += kWarps) {
      T score = -kInf;
      if (lane < kc) {
        bool replaced;
        score = a.logit(dot(t.q + r * d, t.k + lane * odd_pitch(d), d), t.qpos[r], t.kpos[lane], t.kpad[lane],
                        q0 + r, w0 + lane, replaced);
      }
      online_softmax_step(score, t.m + r, t.inv_l + r);
    }
  }
  __syncthreads();
  for (int r = tid; r < rows; r += kAttnThreads) {
    t.inv_l[r] = T(1) / t.inv_l[r];
    a.row_max[q0 + r] = t.m[r];
    a.row_inv_sum[q0 + r] = t.inv_l[r];
    a.row_delta[q0 + r] = t.delta[r];
  }

  // Pass 2: dS and dQ = dS K.
  T acc[kMaxOwned];
#pragma unroll
  for (int k = 0; k < kMaxOwned; ++k) acc[k] = 0;
  const int owned = rows * d;
  for (int64_t w0 = 0; w0 < a.w; w0 += kKeys) {
    const int kc = static_cast<int>(min_of(kKeys, a.w - w0));
    auto row_of = [&](int e) { return a.window_row(g, ci, w0 + e); };
    __syncthreads();
    load_keys(a, g, kc, row_of, t.k, t.kpos, t.kpad, static_cast<T*>(nullptr));
    load_rows_at(a.v, dv, kc, dv, row_of, t.v, odd_pitch(dv));
    __syncthreads();
    for (int e = tid; e < rows * kKeys; e += kAttnThreads) {
      const int r = e / kKeys, j = e % kKeys;
      T ds = 0;
      if (j < kc) {
        bool replaced;
        const T x = a.logit(dot(t.q + r * d, t.k + j * odd_pitch(d), d), t.qpos[r], t.kpos[j], t.kpad[j],
                            q0 + r, w0 + j, replaced);
        if (!replaced) {
          const T p = exp_of(x - t.m[r]) * t.inv_l[r];
          ds = p * (dot(t.go + r * dv, t.v + j * odd_pitch(dv), dv) - t.delta[r]);
        }
      }
      t.s[r * (kKeys + 1) + j] = ds;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kMaxOwned; ++k) {
      const int e = tid + k * kAttnThreads;
      if (e < owned) {
        const int r = e / d, col = e % d;
        const T* ds = t.s + r * (kKeys + 1);
        T x = acc[k];
        for (int j = 0; j < kc; ++j) x += ds[j] * t.k[j * odd_pitch(d) + col];
        acc[k] = x;
      }
    }
  }
#pragma unroll
  for (int k = 0; k < kMaxOwned; ++k) {
    const int e = tid + k * kAttnThreads;
    if (e < owned) a.gq[(q0 + e / d) * d + e % d] = acc[k];
  }
}

// --- backward step 2: the key path and the values
// ---------------------------------------------------------------

template <typename T>
struct KeyTiles {
  int64_t *kpos, *qpos;
  T *k, *v, *rho, *kdot, *q, *go, *dk, *m, *inv_l, *delta, *p, *ds;
  bool* kpad;
  size_t bytes;
  __host__ __device__ KeyTiles(unsigned char* base, int rows, int d, int dv) {
    Carver cv{base};
    kpos = cv.take<int64_t>(kKeys);
    qpos = cv.take<int64_t>(rows);
    k = cv.take<T>(static_cast<size_t>(kKeys) * odd_pitch(d));
    v = cv.take<T>(static_cast<size_t>(kKeys) * odd_pitch(dv));
    rho = cv.take<T>(kKeys);
    kdot = cv.take<T>(kKeys);
    // The query tile (q, dO).
    q = cv.take<T>(static_cast<size_t>(rows) * (d + dv));
    go = q ? q + static_cast<size_t>(rows) * d : nullptr;
    dk = k;  // dK [32][odd_pitch(d)] once every query has been visited: the keys are no longer read
    m = cv.take<T>(rows);
    inv_l = cv.take<T>(rows);
    delta = cv.take<T>(rows);
    p = cv.take<T>(static_cast<size_t>(rows) * (kKeys + 1));
    ds = cv.take<T>(static_cast<size_t>(rows) * (kKeys + 1));
    kpad = cv.take<bool>(kKeys);
    bytes = cv.offset;
  }
};

template <typename T>
__global__ void __launch_bounds__(kAttnThreads) lsh_backward_key_kernel(Lsh<T> a, int tile_rows) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const KeyTiles<T> t(shared_bytes, tile_rows, a.d, a.dv);
  const int d = a.d, dv = a.dv, tid = threadIdx.x, lane = tid % 32, warp = tid / 32, pitch = kKeys + 1;
  int64_t g, kc_chunk, kt;
  chunk_coords(a.n_ch, (a.c + kKeys - 1) / kKeys, g, kc_chunk, kt);
  const int64_t k0 = g * a.n + kc_chunk * a.c + kt * kKeys;  // global row of the tile's first key
  const int kc = static_cast<int>(min_of(kKeys, a.c - kt * kKeys));
  load_keys(
      a, g, kc, [&](int e) { return k0 + e; }, t.k, t.kpos, t.kpad, t.rho);
  load_rows(a.v, dv, k0, kc, dv, t.v, odd_pitch(dv));
  T acc_k[kMaxOwned], acc_v[kMaxOwned];
#pragma unroll
  for (int k = 0; k < kMaxOwned; ++k) acc_k[k] = acc_v[k] = 0;
  const int owned_k = kc * d, owned_v = kc * dv;

  for (int64_t slot = 0; slot < a.span; ++slot) {
    // The chunk whose window holds this key chunk in `slot`, and the keys' positions in that window.
    const int64_t cq = ((kc_chunk - slot + a.before) % a.n_ch + a.n_ch) % a.n_ch;
    const int64_t wpos0 = slot * a.c + kt * kKeys;
    for (int64_t i0 = 0; i0 < a.c; i0 += tile_rows) {
      const int rows = static_cast<int>(min_of(tile_rows, a.c - i0));
      const int64_t q0 = g * a.n + cq * a.c + i0;
      __syncthreads();  // the previous query tile has been read (the first time: keys loaded)
      load_rows(a.qk, d, q0, rows, d, t.q, d);
      load_rows(a.go, dv, q0, rows, dv, t.go, dv);
      for (int r = tid; r < rows; r += kAttnThreads) {
        t.qpos[r] = a.pos[q0 + r];
        t.m[r] = a.row_max[q0 + r];
        t.inv_l[r] = a.row_inv_sum[q0 + r];
        t.delta[r] = a.row_delta[q0 + r];
      }
      __syncthreads();
      for (int e = tid; e < rows * kKeys; e += kAttnThreads) {
        const int r = e / kKeys, j = e % kKeys;
        T p = 0, ds = 0;
        if (j < kc) {
          bool replaced;
          const T x = a.logit(dot(t.q + r * d, t.k + j * odd_pitch(d), d), t.qpos[r], t.kpos[j], t.kpad[j],
                              q0 + r, wpos0 + j, replaced);
          p = exp_of(x - t.m[r]) * t.inv_l[r];  // replaced logits still carry weight (a fully masked row)
          if (!replaced) ds = p * (dot(t.go + r * dv, t.v + j * odd_pitch(dv), dv) - t.delta[r]);
        }
        t.p[r * pitch + j] = p;
        t.ds[r * pitch + j] = ds;
      }
      __syncthreads();
#pragma unroll
      for (int k = 0; k < kMaxOwned; ++k) {
        const int e = tid + k * kAttnThreads;
        if (e < owned_v) {
          const int j = e / dv, col = e % dv;
          T x = acc_v[k];
          for (int r = 0; r < rows; ++r) x += t.p[r * pitch + j] * t.go[r * dv + col];
          acc_v[k] = x;
        }
        if (e < owned_k) {
          const int j = e / d, col = e % d;
          T x = acc_k[k];
          for (int r = 0; r < rows; ++r) x += t.ds[r * pitch + j] * t.q[r * d + col];
          acc_k[k] = x;
        }
      }
    }
  }
  __syncthreads();  // every key tile read is done: dK goes over the keys
#pragma unroll
  for (int k = 0; k < kMaxOwned; ++k) {
    const int e = tid + k * kAttnThreads;
    if (e < owned_v) a.gv[(k0 + e / dv) * dv + e % dv] = acc_v[k];
    if (e < owned_k) t.dk[(e / d) * odd_pitch(d) + e % d] = acc_k[k];
  }
  __syncthreads();
  for (int j = warp; j < kc; j += kWarps) {
    const T kdot = warp_key_dot(a, t.dk + j * odd_pitch(d), k0 + j);
    if (lane == 0) t.kdot[j] = kdot;
  }
  __syncthreads();
#pragma unroll
  for (int k = 0; k < kMaxOwned; ++k) {
    const int e = tid + k * kAttnThreads;
    if (e < owned_k) {
      const int j = e / d, col = e % d;
      a.gq[(k0 + j) * d + col] += key_path_grad(a, t.rho[j], t.kdot[j], acc_k[k], k0 + j, col);
    }
  }
}

// --- host side
// -----------------------------------------------------------------------------------------------

// The tallest query tile that every kernel can run with (shared memory within budget, accumulators within
// kMaxOwned a thread), no taller than the chunk unless it is the smallest; 0 when none fits.
template <typename T>
int lsh_tile(int64_t chunk_len, int d, int dv) {
  if (kKeys * std::max(d, dv) > kMaxOwned * kAttnThreads) return 0;  // the key kernel's dK and dV
  return pick_tile_rows([&](int rows, size_t budget) {
    if (rows > chunk_len && rows != kTileRows[std::size(kTileRows) - 1]) return false;
    const size_t most =
        std::max({ForwardTiles<T>(nullptr, rows, d, dv).bytes, QueryTiles<T>(nullptr, rows, d, dv).bytes,
                  KeyTiles<T>(nullptr, rows, d, dv).bytes});
    return most <= budget && rows * std::max(d, dv) <= kMaxOwned * kAttnThreads;
  });
}

bool fits(const Tensor& sqk, const Tensor& sv) {
  return sqk.numel() > 0 && sv.numel() > 0 && sqk.size(3) <= INT_MAX && sv.size(3) <= INT_MAX;
}

template <typename T>
bool fused_forward(const Tensor& sqk, const Tensor& sv, const Tensor& spos, const Tensor& padding,
                   const Tensor& bias, const Backend::LshChunks& ch, const Tensor& out, const Tensor& lse) {
  const AttentionKernels kernels = attention_kernels();
  if (kernels == AttentionKernels::Composed || !fits(sqk, sv)) return false;
  Lsh<T> a = make_lsh<T>(sqk, sv, spos, padding, bias, ch);
  a.out = ptr<T>(out);
  a.lse = ptr<T>(lse);
  if (kernels == AttentionKernels::Auto && tensor_core_forward(a)) return true;
  if (kernels != AttentionKernels::SharedTiles && register_tiled_forward(a)) return true;
  const int tile = lsh_tile<T>(a.c, a.d, a.dv);
  if (tile == 0) return false;
  const size_t shared = ForwardTiles<T>(nullptr, tile, a.d, a.dv).bytes;
  allow_shared_bytes(lsh_forward_kernel<T>, shared);
  lsh_forward_kernel<T><<<chunk_grid(a.bh, a.n_ch, a.c, tile), kAttnThreads, shared>>>(a, tile);
  LOOM_CUDA_CHECK_LAUNCH();
  return true;
}

template <typename T>
bool fused_backward(const Tensor& grad_out, const Tensor& grad_lse, const Tensor& sqk, const Tensor& sv,
                    const Tensor& spos, const Tensor& padding, const Tensor& bias,
                    const Backend::LshChunks& ch, const Tensor& out, const Tensor& grad_qk,
                    const Tensor& grad_v) {
  const AttentionKernels kernels = attention_kernels();
  if (kernels == AttentionKernels::Composed || !fits(sqk, sv)) return false;
  Lsh<T> a = make_lsh<T>(sqk, sv, spos, padding, bias, ch);
  a.go = ptr<const T>(grad_out);
  if (grad_lse.defined()) a.glse = ptr<const T>(grad_lse);
  a.fwd_out = ptr<const T>(out);
  a.gq = ptr<T>(grad_qk);
  a.gv = ptr<T>(grad_v);
  Tensor stats = Tensor::empty({3, a.bh * a.n}, sqk.options());
  a.row_max = ptr<T>(stats);
  a.row_inv_sum = a.row_max + a.bh * a.n;
  a.row_delta = a.row_inv_sum + a.bh * a.n;
  if (kernels == AttentionKernels::Auto && tensor_core_backward(a)) return true;
  if (kernels != AttentionKernels::SharedTiles && register_tiled_backward(a)) return true;
  const int tile = lsh_tile<T>(a.c, a.d, a.dv);
  if (tile == 0) return false;
  const size_t query_shared = QueryTiles<T>(nullptr, tile, a.d, a.dv).bytes;
  allow_shared_bytes(lsh_backward_query_kernel<T>, query_shared);
  lsh_backward_query_kernel<T><<<chunk_grid(a.bh, a.n_ch, a.c, tile), kAttnThreads, query_shared>>>(a, tile);
  LOOM_CUDA_CHECK_LAUNCH();
  const size_t key_shared = KeyTiles<T>(nullptr, tile, a.d, a.dv).bytes;
  allow_shared_bytes(lsh_backward_key_kernel<T>, key_shared);
  lsh_backward_key_kernel<T><<<chunk_grid(a.bh, a.n_ch, a.c, kKeys), kAttnThreads, key_shared>>>(a, tile);
  LOOM_CUDA_CHECK_LAUNCH();
  return true;
}

}  // namespace

void CudaBackend::lsh_attention_forward(const Tensor& sqk, const Tensor& sv, const Tensor& spos,
                                        const Tensor& padding, const Tensor& bias, const LshChunks& chunks,
                                        const Tensor& out, const Tensor& lse) {
  bool fused = false;
  {
    DeviceGuard guard(device_);
    LOOM_DISPATCH_FLOATING(sqk.dtype(), "lsh_attention", [&] {
      fused = fused_forward<scalar_t>(sqk, sv, spos, padding, bias, chunks, out, lse);
    });
  }
  if (!fused) Backend::lsh_attention_forward(sqk, sv, spos, padding, bias, chunks, out, lse);
}

void CudaBackend::lsh_attention_backward(const Tensor& grad_out, const Tensor& grad_lse, const Tensor& sqk,
                                         const Tensor& sv, const Tensor& spos, const Tensor& padding,
                                         const Tensor& bias, const LshChunks& chunks, const Tensor& out,
                                         const Tensor& grad_qk, const Tensor& grad_v) {
  bool fused = false;
  {
    DeviceGuard guard(device_);
    LOOM_DISPATCH_FLOATING(sqk.dtype(), "lsh_attention backward", [&] {
      fused = fused_backward<scalar_t>(grad_out, grad_lse, sqk, sv, spos, padding, bias, chunks, out, grad_qk,
                                       grad_v);
    });
  }
  if (!fused)
    Backend::lsh_attention_backward(grad_out, grad_lse, sqk, sv, spos, padding, bias, chunks, out, grad_qk,
                                    grad_v);
}

}  // namespace loom::cuda
