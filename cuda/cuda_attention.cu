// Fused scaled-dot-product attention on the GPU, FlashAttention-2 style (Dao 2023): no [L, S] score matrix
// ever exists in global memory, only tiles of it in shared memory, so memory grows with L + S, not L * S.
// ops/cpu/cpu_attention.cpp is the same algorithm on the CPU, and its header comment derives the formulas.
// dense_attention.cuh holds the problem struct and per-entry rules both kernel families share.
//
// Every kernel here runs 256 threads on one tile of one (batch, head) matrix and keeps its tiles in shared
// memory (rows padded by one element where threads of a warp walk different rows, which keeps reads free of
// bank conflicts). Threads own fixed entries of the tile they accumulate (entry e = thread + 256 k), so the
// accumulators live in registers; the row statistics of the online softmax take a warp per row.
//
// Forward: a block owns `rows` query rows and walks the keys 32 at a time: scores = scale * Q K^T, excluded
//   entries -inf, each row's running max m and sum l updated, the accumulator rescaled by exp(m_old - m_new),
//   then P V added (P after dropout). Causal rows stop at their diagonal. Writes out = acc / l and
//   logsumexp = m + log l (+inf for a row with no allowed key, whose output is 0).
// Backward: delta_i = dO_i . O_i (a warp per row); then a block per key tile accumulates
//   dV_j += (P * M)^T dO_i and dK_j += scale dS^T Q_i over the query rows that see it, and a block per query
//   tile accumulates dQ_i += scale dS K_j, recomputing P = exp(S - logsumexp) and dS = P * (M * dO V^T -
//   delta) in each. Two kernels recompute the scores twice, but no block writes another's rows, so there are
//   no atomics and every run gives the same bits.
// Dropout multipliers M are drawn from Philox at the weight's index (b L + i) S + j, as loom::dropout and the
// CPU kernel draw them, so both backends drop the same weights.
//
// Dispatch (CudaBackend::attention_forward / _backward, at the end): heads up to 128 wide take the
// register-tiled kernels of cuda_attention_register_tiles.cu, the same algorithm with GEMM-like inner loops;
// the kernels here take the heads those decline. cuda::set_attention_kernels can switch either off, or put
// cuda_attention_tensor_cores.cu's kernels (float32 on tensor cores) first.
//
// Tiles are sized for 48 KiB of shared memory; a head too wide for that at 8 rows (float32 d + dv above
// ~330, float64 above ~165) opts into the device's maximum (227 KiB on an H100: float32 d + dv up to ~1750).
// Wider heads, and heads wider than 16 accumulators a thread allow (a tile of 8 rows of 512 columns), take
// the composed default (Backend::attention_forward), as do empty operands.
#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <limits>
#include <type_traits>

#include "loom/cuda/cuda_backend.h"
#include "loom/cuda/dense_attention.cuh"

namespace loom::cuda {
namespace {

using namespace dense_attention;

std::atomic<AttentionKernels> allowed_kernels{AttentionKernels::Auto};

constexpr int kKeyTile = 32;  // forward: one key per lane in the row softmax

// --- forward
// -------------------------------------------------------------------------------------------------

template <typename T>
__global__ void __launch_bounds__(kAttnThreads) attention_forward_kernel(Problem<T> p, int tile_rows) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const int d = p.d, dv = p.dv, dp = p.dp, dvp = p.dvp, tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  T* sq = reinterpret_cast<T*>(shared_bytes);    // [tile_rows][dp]
  T* sk = sq + tile_rows * dp;                   // [32][dp]
  T* sv = sk + kKeyTile * dp;                    // [32][dvp]
  T* ss = sv + kKeyTile * dvp;                   // [tile_rows][33]: scores, then weights
  T* row_max = ss + tile_rows * (kKeyTile + 1);  // [tile_rows]
  T* row_sum = row_max + tile_rows;
  T* row_scale = row_sum + tile_rows;

  int64_t b, tile;
  block_coords((p.l + tile_rows - 1) / tile_rows, b, tile);
  const int64_t i0 = tile * tile_rows;
  const int rows = static_cast<int>(min_of(tile_rows, p.l - i0));
  const int64_t q_base = p.lay.offset(b, kQ), k_base = p.lay.offset(b, kK), v_base = p.lay.offset(b, kV);
  const int64_t mask_base = p.mask ? p.lay.offset(b, kMask) : 0;
  constexpr T kInf = std::numeric_limits<T>::infinity();

  load_operand_rows(p, kQ, q_base, i0, rows, sq);
  for (int r = tid; r < tile_rows; r += kAttnThreads) {
    row_max[r] = -kInf;
    row_sum[r] = 0;
  }
  T acc[kMaxOwned];
#pragma unroll
  for (int k = 0; k < kMaxOwned; ++k) acc[k] = 0;
  const int owned = rows * dv;

  const int64_t key_end = p.causal ? min_of(p.s, i0 + rows) : p.s;
  for (int64_t j0 = 0; j0 < key_end; j0 += kKeyTile) {
    const int bc = static_cast<int>(min_of(kKeyTile, key_end - j0));
    __syncthreads();  // the previous tile's keys, values and weights have been read
    load_operand_rows(p, kK, k_base, j0, bc, sk);
    load_operand_rows(p, kV, v_base, j0, bc, sv);
    __syncthreads();
    for (int e = tid; e < rows * kKeyTile; e += kAttnThreads) {
      const int r = e / kKeyTile, j = e % kKeyTile;
      T score = -kInf;
      if (j < bc && allowed(p, mask_base, i0 + r, j0 + j)) score = p.scale * dot(sq + r * dp, sk + j * dp, d);
      ss[r * (kKeyTile + 1) + j] = score;
    }
    __syncthreads();
    for (int r = warp; r < rows; r += kWarps) {
      const SoftmaxStep<T> step =
          online_softmax_step(ss[r * (kKeyTile + 1) + lane], row_max + r, row_sum + r);
      if (lane == 0) row_scale[r] = step.scale;
      // The sums stay those of the undropped probabilities; only the product with V sees the dropout.
      T weight = step.weight;
      if (p.dropping && weight != T(0)) weight *= keep_multiplier(p, b, i0 + r, j0 + lane);
      ss[r * (kKeyTile + 1) + lane] = weight;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kMaxOwned; ++k) {
      const int e = tid + k * kAttnThreads;
      if (e < owned) {
        const int r = e / dv, c = e % dv;
        const T* weights = ss + r * (kKeyTile + 1);
        T a = acc[k] * row_scale[r];
        for (int j = 0; j < bc; ++j) a += weights[j] * sv[j * dvp + c];
        acc[k] = a;
      }
    }
  }
  __syncthreads();  // the last tile's row_sum and row_max are complete
  T* out = p.out + p.lay.offset(b, kOut);
  const int64_t out_rs = p.lay.row_stride[kOut];
#pragma unroll
  for (int k = 0; k < kMaxOwned; ++k) {
    const int e = tid + k * kAttnThreads;
    if (e < owned) {
      const int r = e / dv, c = e % dv;
      const T sum = row_sum[r];
      out[(i0 + r) * out_rs + c] = sum == T(0) ? T(0) : acc[k] / sum;
    }
  }
  for (int r = tid; r < rows; r += kAttnThreads)
    p.lse[b * p.l + i0 + r] = row_sum[r] == T(0) ? kInf : row_max[r] + log_of(row_sum[r]);
}

// --- backward
// ------------------------------------------------------------------------------------------------

// delta[b L + i] = dO_i . O_i, a warp per row.
template <typename T>
__global__ void attention_delta_kernel(Problem<T> p, T* delta) {
  const int64_t row = blockIdx.x * int64_t{kWarps} + threadIdx.x / 32;
  if (row >= p.batch * p.l) return;
  const int lane = threadIdx.x % 32;
  const int64_t b = row / p.l, i = row % p.l;
  const T* go = p.go + p.lay.offset(b, kGradOut) + i * p.lay.row_stride[kGradOut];
  const T* o = p.out + p.lay.offset(b, kOut) + i * p.lay.row_stride[kOut];
  T acc = 0;
  for (int c = lane; c < p.dv; c += 32) acc += go[c] * o[c];
  acc = warp_sum(acc);
  if (lane == 0) delta[row] = acc;
}

// The shared tiles of both backward kernels: a query tile (Q, dO, logsumexp, delta), a key tile (K, V) and
// the weight and score-gradient tiles between them. Rows have the problem's odd pitches (dp, dvp) and the
// [qrows][krows] tiles an odd pitch krows + 1, so warps walking rows read 32 different banks.
template <typename T>
struct BackwardTiles {
  T *q, *go, *lse, *delta, *k, *v, *w, *ds;
  int krows;

  __device__ BackwardTiles(unsigned char* bytes, int qrows, int krows_, int dp, int dvp) : krows(krows_) {
    q = reinterpret_cast<T*>(bytes);  // [qrows][dp]
    go = q + qrows * dp;              // [qrows][dvp]
    lse = go + qrows * dvp;           // [qrows]
    delta = lse + qrows;              // [qrows]
    k = delta + qrows;                // [krows][dp]
    v = k + krows * dp;               // [krows][dvp]
    w = v + krows * dvp;              // [qrows][krows + 1]: P * M
    ds = w + qrows * (krows + 1);     // [qrows][krows + 1]: P * (M * dP - delta)
  }
  static size_t elements(int qrows, int krows, int dp, int dvp) {
    return static_cast<size_t>(qrows) * (dp + dvp + 2) + static_cast<size_t>(krows) * (dp + dvp) +
           2 * static_cast<size_t>(qrows) * (krows + 1);
  }
};

// Loads query rows [i0, i0 + rows) of matrix b into the tiles.
template <typename T>
__device__ void load_query_tile(const Problem<T>& p, const BackwardTiles<T>& t, int64_t b, int64_t i0,
                                int rows) {
  load_operand_rows(p, kQ, p.lay.offset(b, kQ), i0, rows, t.q);
  load_operand_rows(p, kGradOut, p.lay.offset(b, kGradOut), i0, rows, t.go);
  for (int r = threadIdx.x; r < rows; r += kAttnThreads) {
    t.lse[r] = p.lse[b * p.l + i0 + r];
    t.delta[r] = p.delta ? p.delta[b * p.l + i0 + r] : T(0);
  }
}

template <typename T>
__device__ void load_key_tile(const Problem<T>& p, const BackwardTiles<T>& t, int64_t b, int64_t j0,
                              int cols) {
  load_operand_rows(p, kK, p.lay.offset(b, kK), j0, cols, t.k);
  load_operand_rows(p, kV, p.lay.offset(b, kV), j0, cols, t.v);
}

// Fills t.w and t.ds for query rows [i0, i0 + rows) against keys [j0, j0 + cols) of matrix b (t.ds only when
// `scores_grad`: dV alone needs none).
template <typename T>
__device__ void weight_tiles(const Problem<T>& p, const BackwardTiles<T>& t, int64_t b, int64_t mask_base,
                             int64_t i0, int rows, int64_t j0, int cols, bool scores_grad) {
  const int d = p.d, dv = p.dv, pitch = t.krows + 1;
  for (int e = threadIdx.x; e < rows * t.krows; e += kAttnThreads) {
    const int r = e / t.krows, j = e % t.krows;
    T w = 0, ds = 0;
    if (j < cols && allowed(p, mask_base, i0 + r, j0 + j)) {
      // s - logsumexp <= 0 but for rounding; +inf logsumexp (no allowed key) gives 0.
      const T prob = exp_of(p.scale * dot(t.q + r * p.dp, t.k + j * p.dp, d) - t.lse[r]);
      if (prob != T(0)) {
        const T keep = p.dropping ? keep_multiplier(p, b, i0 + r, j0 + j) : T(1);
        w = prob * keep;
        if (scores_grad) ds = prob * (keep * dot(t.go + r * p.dvp, t.v + j * p.dvp, dv) - t.delta[r]);
      }
    }
    t.w[r * pitch + j] = w;
    t.ds[r * pitch + j] = ds;
  }
}

// dK and dV of one key tile, over every query row that can see it.
template <typename T>
__global__ void __launch_bounds__(kAttnThreads) attention_backward_kv_kernel(Problem<T> p, int tile) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const BackwardTiles<T> t(shared_bytes, tile, tile, p.dp, p.dvp);
  const int d = p.d, dv = p.dv, dp = p.dp, dvp = p.dvp, tid = threadIdx.x, pitch = tile + 1;
  int64_t b, key_tile;
  block_coords((p.s + tile - 1) / tile, b, key_tile);
  const int64_t j0 = key_tile * tile;
  const int cols = static_cast<int>(min_of(tile, p.s - j0));
  const int64_t mask_base = p.mask ? p.lay.offset(b, kMask) : 0;
  load_key_tile(p, t, b, j0, cols);
  T acc_k[kMaxOwned], acc_v[kMaxOwned];
#pragma unroll
  for (int k = 0; k < kMaxOwned; ++k) acc_k[k] = acc_v[k] = 0;
  const int owned_k = p.gk ? cols * d : 0, owned_v = p.gv ? cols * dv : 0;

  // Causal: query i sees key j only from i = j on.
  for (int64_t i0 = p.causal ? j0 : 0; i0 < p.l; i0 += tile) {
    const int rows = static_cast<int>(min_of(tile, p.l - i0));
    __syncthreads();  // the previous query tile has been read
    load_query_tile(p, t, b, i0, rows);
    __syncthreads();
    weight_tiles(p, t, b, mask_base, i0, rows, j0, cols, p.gk != nullptr);
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kMaxOwned; ++k) {
      const int e = tid + k * kAttnThreads;
      if (e < owned_v) {
        const int j = e / dv, c = e % dv;
        T a = acc_v[k];
        for (int r = 0; r < rows; ++r) a += t.w[r * pitch + j] * t.go[r * dvp + c];
        acc_v[k] = a;
      }
      if (e < owned_k) {
        const int j = e / d, c = e % d;
        T a = acc_k[k];
        for (int r = 0; r < rows; ++r) a += t.ds[r * pitch + j] * t.q[r * dp + c];
        acc_k[k] = a;
      }
    }
  }
  // Every key row is written, zeros included (keys no query sees).
#pragma unroll
  for (int k = 0; k < kMaxOwned; ++k) {
    const int e = tid + k * kAttnThreads;
    if (e < owned_v) {
      const int j = e / dv, c = e % dv;
      p.gv[p.lay.offset(b, kGradV) + (j0 + j) * p.lay.row_stride[kGradV] + c] = acc_v[k];
    }
    if (e < owned_k) {
      const int j = e / d, c = e % d;
      p.gk[p.lay.offset(b, kGradK) + (j0 + j) * p.lay.row_stride[kGradK] + c] = p.scale * acc_k[k];
    }
  }
}

// dQ of one query tile, over the keys its rows can see.
template <typename T>
__global__ void __launch_bounds__(kAttnThreads) attention_backward_q_kernel(Problem<T> p, int tile) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const BackwardTiles<T> t(shared_bytes, tile, tile, p.dp, p.dvp);
  const int d = p.d, dp = p.dp, tid = threadIdx.x, pitch = tile + 1;
  int64_t b, query_tile;
  block_coords((p.l + tile - 1) / tile, b, query_tile);
  const int64_t i0 = query_tile * tile;
  const int rows = static_cast<int>(min_of(tile, p.l - i0));
  const int64_t mask_base = p.mask ? p.lay.offset(b, kMask) : 0;
  load_query_tile(p, t, b, i0, rows);
  T acc[kMaxOwned];
#pragma unroll
  for (int k = 0; k < kMaxOwned; ++k) acc[k] = 0;
  const int owned = rows * d;

  const int64_t key_end = p.causal ? min_of(p.s, i0 + rows) : p.s;
  for (int64_t j0 = 0; j0 < key_end; j0 += tile) {
    const int cols = static_cast<int>(min_of(tile, key_end - j0));
    __syncthreads();  // the previous key tile has been read (and, the first time, the query tile written)
    load_key_tile(p, t, b, j0, cols);
    __syncthreads();
    weight_tiles(p, t, b, mask_base, i0, rows, j0, cols, true);
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kMaxOwned; ++k) {
      const int e = tid + k * kAttnThreads;
      if (e < owned) {
        const int r = e / d, c = e % d;
        T a = acc[k];
        for (int j = 0; j < cols; ++j) a += t.ds[r * pitch + j] * t.k[j * dp + c];
        acc[k] = a;
      }
    }
  }
  T* gq = p.gq + p.lay.offset(b, kGradQ);
  const int64_t rs = p.lay.row_stride[kGradQ];
#pragma unroll
  for (int k = 0; k < kMaxOwned; ++k) {
    const int e = tid + k * kAttnThreads;
    if (e < owned) gq[(i0 + e / d) * rs + e % d] = p.scale * acc[k];
  }
}

// --- host side
// -----------------------------------------------------------------------------------------------

size_t forward_shared_bytes(int rows, int d, int dv, size_t element) {
  const size_t dp = odd_pitch(d), dvp = odd_pitch(dv);
  return element *
         (static_cast<size_t>(rows) * (dp + kKeyTile + 1 + 3) + static_cast<size_t>(kKeyTile) * (dp + dvp));
}

template <typename T>
size_t backward_shared_bytes(int rows, int d, int dv) {
  return sizeof(T) * BackwardTiles<T>::elements(rows, rows, odd_pitch(d), odd_pitch(dv));
}

// The tallest tile (rows) whose shared memory fits and whose accumulators (`width` columns per row) fit
// kMaxOwned per thread; 0 when none does.
template <typename Bytes>
int pick_tile(int width, Bytes bytes) {
  return pick_tile_rows([&](int rows, size_t budget) {
    return bytes(rows) <= budget && rows * width <= kMaxOwned * kAttnThreads;
  });
}

// A head wider than one block's accumulators can never be tiled (and stays clear of int overflow).
bool tileable(int64_t d, int64_t dv) {
  return d <= kMaxOwned * kAttnThreads && dv <= kMaxOwned * kAttnThreads;
}

template <typename T>
int forward_tile(int d, int dv) {
  return pick_tile(dv, [&](int rows) { return forward_shared_bytes(rows, d, dv, sizeof(T)); });
}

template <typename T>
int backward_tile(int d, int dv) {
  return pick_tile(std::max(d, dv), [&](int rows) { return backward_shared_bytes<T>(rows, d, dv); });
}

bool degenerate(const Tensor& q, const Tensor& k, const Tensor& v) {
  return q.numel() == 0 || k.numel() == 0 || v.numel() == 0;
}

template <typename T>
bool fused_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool causal,
                   double scale, const AttentionDropout& dropout, const Tensor& out, const Tensor& lse) {
  const AttentionKernels kernels = allowed_kernels.load();
  if (kernels == AttentionKernels::Composed || !tileable(q.size(-1), v.size(-1))) return false;
  Problem<T> p = make_problem<T>(q, k, v, mask, causal, scale, dropout, out, lse, Tensor(), Tensor(),
                                 Tensor(), Tensor());
  if (kernels == AttentionKernels::Auto && tensor_core_forward(p)) return true;
  if ((kernels == AttentionKernels::Auto || kernels == AttentionKernels::RegisterTiles) &&
      register_tiled_forward(p))
    return true;
  const int tile = forward_tile<T>(p.d, p.dv);
  if (tile == 0) return false;
  const size_t shared = forward_shared_bytes(tile, p.d, p.dv, sizeof(T));
  allow_shared_bytes(attention_forward_kernel<T>, shared);
  attention_forward_kernel<T><<<grid_for(p.batch, p.l, tile), kAttnThreads, shared>>>(p, tile);
  LOOM_CUDA_CHECK_LAUNCH();
  return true;
}

template <typename T>
bool fused_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
                    const Tensor& out, const Tensor& lse, const Tensor& mask, bool causal, double scale,
                    const AttentionDropout& dropout, const Tensor& gq, const Tensor& gk, const Tensor& gv) {
  const AttentionKernels kernels = allowed_kernels.load();
  if (kernels == AttentionKernels::Composed || !tileable(q.size(-1), v.size(-1))) return false;
  Problem<T> p = make_problem<T>(q, k, v, mask, causal, scale, dropout, out, lse, grad_out, gq, gk, gv);
  Tensor delta;
  if (gq.defined() || gk.defined()) {
    const int64_t rows = p.batch * p.l;
    delta = Tensor::empty({rows}, q.options());
    const int64_t blocks = (p.batch * p.l + kWarps - 1) / kWarps;
    LOOM_CHECK(blocks <= INT_MAX, "scaled_dot_product_attention backward: ", p.batch * p.l,
               " rows exceed the CUDA grid");
    attention_delta_kernel<T><<<static_cast<unsigned>(blocks), kAttnThreads>>>(p, ptr<T>(delta));
    LOOM_CUDA_CHECK_LAUNCH();
    p.delta = ptr<const T>(delta);
  }
  if (kernels == AttentionKernels::Auto && tensor_core_backward(p)) return true;
  if ((kernels == AttentionKernels::Auto || kernels == AttentionKernels::RegisterTiles) &&
      register_tiled_backward(p))
    return true;
  const int tile = backward_tile<T>(p.d, p.dv);
  if (tile == 0) return false;  // (rare: a head too wide for every tile, yet within tileable's bound)
  const size_t shared = backward_shared_bytes<T>(tile, p.d, p.dv);
  if (gk.defined() || gv.defined()) {
    allow_shared_bytes(attention_backward_kv_kernel<T>, shared);
    attention_backward_kv_kernel<T><<<grid_for(p.batch, p.s, tile), kAttnThreads, shared>>>(p, tile);
    LOOM_CUDA_CHECK_LAUNCH();
  }
  if (gq.defined()) {
    allow_shared_bytes(attention_backward_q_kernel<T>, shared);
    attention_backward_q_kernel<T><<<grid_for(p.batch, p.l, tile), kAttnThreads, shared>>>(p, tile);
    LOOM_CUDA_CHECK_LAUNCH();
  }
  return true;
}

}  // namespace

void set_attention_kernels(AttentionKernels kernels) { allowed_kernels.store(kernels); }
AttentionKernels attention_kernels() { return allowed_kernels.load(); }

void CudaBackend::attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                                    bool causal, double scale, const AttentionDropout& dropout,
                                    const Tensor& out, const Tensor& logsumexp) {
  bool fused = false;
  if (!degenerate(q, k, v)) {
    DeviceGuard guard(device_);
    LOOM_DISPATCH_FLOATING(q.dtype(), "scaled_dot_product_attention", [&] {
      fused = fused_forward<scalar_t>(q, k, v, mask, causal, scale, dropout, out, logsumexp);
    });
  }
  if (!fused) Backend::attention_forward(q, k, v, mask, causal, scale, dropout, out, logsumexp);
}

void CudaBackend::attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k,
                                     const Tensor& v, const Tensor& out, const Tensor& logsumexp,
                                     const Tensor& mask, bool causal, double scale,
                                     const AttentionDropout& dropout, const Tensor& grad_q,
                                     const Tensor& grad_k, const Tensor& grad_v) {
  if (!grad_q.defined() && !grad_k.defined() && !grad_v.defined()) return;
  bool fused = false;
  if (!degenerate(q, k, v)) {
    DeviceGuard guard(device_);
    LOOM_DISPATCH_FLOATING(q.dtype(), "scaled_dot_product_attention backward", [&] {
      fused = fused_backward<scalar_t>(grad_out, q, k, v, out, logsumexp, mask, causal, scale, dropout,
                                       grad_q, grad_k, grad_v);
    });
  }
  if (!fused)
    Backend::attention_backward(grad_out, q, k, v, out, logsumexp, mask, causal, scale, dropout, grad_q,
                                grad_k, grad_v);
}

}  // namespace loom::cuda
