#pragma once
// What LSH attention's chunk kernels share (cuda_lsh_attention.cu: shared-memory tiles;
// cuda_lsh_attention_register_tiles.cu: register tiles; cuda_lsh_attention_tensor_cores.cu: tensor cores):
// the problem (Lsh: sorted rows, chunks and windows,
// the logit with its self penalty, bias and replacements), built on the host from the op's tensors, the
// normalised key loader and the blocks' coordinates. cuda_lsh_attention.cu's header comment gives the
// algorithm.
#include <climits>
#include <cmath>
#include <cstdint>
#include <limits>

#include "loom/cuda/attention_tiles.cuh"
#include "loom/cuda/cuda_backend_impl.h"
#include "loom/cuda/launch.cuh"

namespace loom::cuda::lsh_attention {

using namespace attention;

constexpr double kSelfPenalty = 1e5;
constexpr double kMasked = -1e9;
constexpr double kNormEps = 1e-6;

// Carves shared memory into typed arrays, each aligned for its type. With a null base it only measures, so
// the host sizes the launch with the very code that lays the tiles out.
struct Carver {
  unsigned char* base;
  size_t offset = 0;
  template <typename U>
  __host__ __device__ U* take(size_t n) {
    offset = (offset + alignof(U) - 1) / alignof(U) * alignof(U);
    U* at = base ? reinterpret_cast<U*>(base + offset) : nullptr;
    offset += n * sizeof(U);
    return at;
  }
};

template <typename T>
struct Lsh {
  const T *qk = nullptr, *v = nullptr, *bias = nullptr;
  const int64_t* pos = nullptr;
  const bool* pad = nullptr;
  T *out = nullptr, *lse = nullptr;                                    // forward
  const T *go = nullptr, *glse = nullptr, *fwd_out = nullptr;          // backward inputs
  T *gq = nullptr, *gv = nullptr;                                      // backward outputs
  T *row_max = nullptr, *row_inv_sum = nullptr, *row_delta = nullptr;  // step 1 -> step 2, [bh n] each
  int64_t heads = 0, bh = 0, n = 0, c = 0, n_ch = 0, before = 0, span = 0, w = 0, l = 0;
  int d = 0, dv = 0;
  bool causal = false;
  T inv_sqrt_d = 0;

  // The chunk in window slot s of chunk ci.
  __device__ int64_t window_chunk(int64_t ci, int64_t s) const {
    return ((ci + s - before) % n_ch + n_ch) % n_ch;
  }
  // The global row of window position wpos of chunk ci of (batch, head) g.
  __device__ int64_t window_row(int64_t g, int64_t ci, int64_t wpos) const {
    return g * n + window_chunk(ci, wpos / c) * c + wpos % c;
  }
  // The masked logit of a query (position qpos, global row qrow) against key window position wpos; `replaced`
  // tells whether it is the -1e9 constant. The self penalty comes before the bias, as on the CPU: in float32
  // at 1e5 the order decides the rounding.
  __device__ T logit(T qk_dot, int64_t qpos, int64_t kpos, bool kpad, int64_t qrow, int64_t wpos,
                     bool& replaced) const {
    replaced = kpad || (causal && kpos > qpos);
    if (replaced) return static_cast<T>(kMasked);
    T x = qk_dot - (kpos == qpos ? static_cast<T>(kSelfPenalty) : T(0));
    if (bias) x -= bias[qrow * w + wpos];
    return x;
  }
};

// rho = (mean(q^2) + eps)^(-1/2) of global row `row`, the key normalisation's factor (keys are
// k = q rho / sqrt(d)), summed by the 32 lanes of the calling warp (every lane gets it).
template <typename T>
__device__ __forceinline__ T warp_key_rho(const Lsh<T>& a, int64_t row) {
  const int lane = threadIdx.x % 32;
  const T* q = a.qk + row * a.d;
  T ss = 0;
  for (int c = lane; c < a.d; c += 32) ss += q[c] * q[c];
  ss = warp_sum(ss);
  return T(1) / sqrt_of(ss / static_cast<T>(a.d) + static_cast<T>(kNormEps));
}

// How load_keys lays a key tile out: `pitch` elements a row, the rows shared by `warps` warps of the block.
// When the template's kPadded is set, a row holds zeros after the key's d values up to `width`, and the rows
// from the keys' count up to `rows` are zeros; otherwise only the keys' d values are written (width = d,
// rows = count), as the FMA kernels, which never read past them, want it.
struct KeyRows {
  int pitch, width, rows, warps;
};

// Loads `count` keys, key e being global row row_of(e): normalised into k as `layout` says, positions,
// padding flags and, when asked, their rho. A warp per key.
template <bool kPadded, typename T, typename RowOf>
__device__ void load_keys(const Lsh<T>& a, int64_t g, int count, RowOf row_of, KeyRows layout, T* k,
                          int64_t* kpos, bool* kpad, T* rho_out) {
  const int lane = threadIdx.x % 32;
  for (int e = threadIdx.x / 32; e < layout.rows; e += layout.warps) {  // uniform across each warp
    T* key = k + e * layout.pitch;
    if constexpr (kPadded) {
      if (e >= count) {
        for (int c = lane; c < layout.width; c += 32) key[c] = T(0);
        continue;
      }
    }
    const int64_t row = row_of(e);
    const T* q = a.qk + row * a.d;
    const T rho = warp_key_rho(a, row);
    const T scale = rho * a.inv_sqrt_d;
    for (int c = lane; c < layout.width; c += 32) key[c] = !kPadded || c < a.d ? q[c] * scale : T(0);
    if (lane == 0) {
      const int64_t p = a.pos[row];
      kpos[e] = p;
      kpad[e] = a.pad && a.pad[(g / a.heads) * a.l + p];
      if (rho_out) rho_out[e] = rho;
    }
  }
}

// The shared-memory-tile and register-tiled kernels' layout: the keys' rows alone, at odd_pitch(d), all
// warps of a 256-thread block.
template <typename T, typename RowOf>
__device__ void load_keys(const Lsh<T>& a, int64_t g, int count, RowOf row_of, T* k, int64_t* kpos,
                          bool* kpad, T* rho_out) {
  load_keys<false>(a, g, count, row_of, KeyRows{odd_pitch(a.d), a.d, count, kWarps}, k, kpos, kpad, rho_out);
}

// The block's place: (batch-head g, chunk, tile of the chunk).
__device__ __forceinline__ void chunk_coords(int64_t n_ch, int64_t tiles, int64_t& g, int64_t& chunk,
                                             int64_t& tile) {
  const int64_t x = blockIdx.x;
  g = x / (n_ch * tiles);
  chunk = x / tiles % n_ch;
  tile = x % tiles;
}

// dO . O - dlse of global row `row`, summed by the 32 lanes of the calling warp (every lane gets it): the
// delta of the softmax gradient, with the rounds' logsumexp gradient folded in.
template <typename T>
__device__ __forceinline__ T warp_row_delta(const Lsh<T>& a, int64_t row) {
  const int lane = threadIdx.x % 32;
  const T* go = a.go + row * a.dv;
  const T* o = a.fwd_out + row * a.dv;
  T x = 0;
  for (int col = lane; col < a.dv; col += 32) x += go[col] * o[col];
  x = warp_sum(x);
  return a.glse ? x - a.glse[row] : x;
}

// dK . q of key `key` (global row), dK being its row of `dk`, summed by the 32 lanes of the calling warp.
template <typename T>
__device__ __forceinline__ T warp_key_dot(const Lsh<T>& a, const T* dk, int64_t key) {
  const int lane = threadIdx.x % 32;
  const T* q = a.qk + key * a.d;
  T x = 0;
  for (int col = lane; col < a.d; col += 32) x += dk[col] * q[col];
  return warp_sum(x);
}

// The key path's share of dQK at (key, col): keys are k = q rho / sqrt(d), rho = (mean(q^2) + eps)^(-1/2), so
// dq += rho / sqrt(d) (dk - q rho^2 (dk . q) / d), with dk_col the key's gradient at col and kdot = dk . q.
template <typename T>
__device__ __forceinline__ T key_path_grad(const Lsh<T>& a, T rho, T kdot, T dk_col, int64_t key, int col) {
  const T coef = rho * rho * kdot / static_cast<T>(a.d);
  return rho * a.inv_sqrt_d * (dk_col - a.qk[key * a.d + col] * coef);
}

// An entry's softmax weight p = exp(x - m) / l, from its logit x and its row's kept statistics (m, 1 / l),
// and its score gradient dS = p (dp - delta): 0 for a replaced logit, a constant that still carries weight
// (a fully masked row).
template <typename T>
struct WeightAndGrad {
  T p, ds;
};
template <typename T>
__device__ __forceinline__ WeightAndGrad<T> weight_and_grad(T x, bool replaced, T m, T inv_sum, T dp,
                                                            T delta) {
  const T p = exp_of(x - m) * inv_sum;
  return {p, replaced ? T(0) : p * (dp - delta)};
}

// ---- host side

template <typename T>
Lsh<T> make_lsh(const Tensor& sqk, const Tensor& sv, const Tensor& spos, const Tensor& padding,
                const Tensor& bias, const Backend::LshChunks& ch) {
  Lsh<T> a;
  a.qk = ptr<const T>(sqk);
  a.v = ptr<const T>(sv);
  if (bias.defined()) a.bias = ptr<const T>(bias);
  a.pos = ptr<const int64_t>(spos);
  if (padding.defined()) {
    a.pad = ptr<const bool>(padding);
    a.l = padding.size(1);
  }
  a.heads = sqk.size(1);
  a.bh = sqk.size(0) * sqk.size(1);
  a.n = sqk.size(2);
  a.d = static_cast<int>(sqk.size(3));
  a.dv = static_cast<int>(sv.size(3));
  a.c = ch.chunk_len;
  a.n_ch = a.n / a.c;
  a.before = ch.n_before;
  a.span = ch.n_before + 1 + ch.n_after;
  a.w = a.span * a.c;
  a.causal = ch.causal;
  a.inv_sqrt_d = static_cast<T>(1.0 / std::sqrt(static_cast<double>(a.d)));
  return a;
}

inline unsigned chunk_grid(int64_t bh, int64_t n_ch, int64_t chunk_len, int tile) {
  const int64_t blocks = bh * n_ch * ((chunk_len + tile - 1) / tile);
  LOOM_CHECK(blocks <= INT_MAX, "lsh_attention: ", blocks, " tiles exceed the CUDA grid's 2^31 - 1 blocks");
  return static_cast<unsigned>(blocks);
}

// The register-tiled kernels (cuda_lsh_attention_register_tiles.cu): launch them for `a` and return true, or
// return false, launching nothing, when the heads are wider than they handle (128) or their tiles do not fit
// the device's shared memory. The backward pass expects a's row statistics (row_max, row_inv_sum, row_delta)
// allocated, and writes them in its query kernel for its key kernel.
template <typename T>
bool register_tiled_forward(const Lsh<T>& a);
template <typename T>
bool register_tiled_backward(const Lsh<T>& a);

// The tensor-core kernels (cuda_lsh_attention_tensor_cores.cu, float32 on sm_80 and later, at float32's
// accuracy): as the register-tiled ones, for heads up to 128 wide; false for float64, on an older GPU, or
// when their tiles do not fit.
bool tensor_core_forward(const Lsh<float>& a);
bool tensor_core_forward(const Lsh<double>& a);
bool tensor_core_backward(const Lsh<float>& a);
bool tensor_core_backward(const Lsh<double>& a);

}  // namespace loom::cuda::lsh_attention
