#pragma once
// Register tiling for the fused attention kernels (cuda_attention_register_tiles.cu for dense attention,
// cuda_lsh_attention_register_tiles.cu for LSH attention's chunks): every product of attention (Q K^T,
// dO V^T, P V, P^T dO, dS^T Q, dS K) as an outer-product loop, as in a GEMM.
//
// Why: a kernel whose threads compute whole dot products reads both operands of every multiply-add from
// shared memory, and shared memory (one 32-lane access a cycle per SM, against four warps' worth of FP32
// multiply-adds) runs it at about an eighth of the FP32 units' rate. Here each thread keeps a 4 x 4 block of
// scores (and a 4 x kCols block of an output) in registers and per step loads 4 + 4 operands for 16
// multiply-adds: a quarter of the loads per multiply-add.
//
// Tiles are 64 rows by 64 keys, for a block of 256 threads seen as a 16 x 16 grid: thread (tx, ty) =
// (t % 16, t / 16) owns rows ty + 16 a (a < 4) and columns tx + 16 b (b < 4 for keys, b < kCols for
// features) of every tile it computes. The stride of 16 keeps shared memory free of bank conflicts: the 16
// threads of a half warp read 16 consecutive or odd-pitch addresses, and the two rows a warp reads are
// broadcasts. A row's online-softmax statistics are folded across the 16 lanes of its half warp with
// shuffles and stay in registers, since the output rows a thread accumulates are its score rows.
#include <cuda_runtime.h>

#include <limits>

#include "loom/cuda/attention_tiles.cuh"

namespace loom::cuda::register_tiles {

using namespace attention;

constexpr int kSide = 16;               // the block's threads as a kSide x kSide grid
constexpr int kMicro = 4;               // rows of every tile a thread owns, and key columns
constexpr int kTile = kSide * kMicro;   // 64 rows, 64 keys
constexpr int kScorePitch = kTile + 1;  // [64][65] weight and score-gradient tiles
constexpr int kWidest = 128;            // the widest head (kCols = 8)
static_assert(kSide * kSide == kAttnThreads, "one thread per grid cell");

struct ThreadGrid {
  int tx, ty;
  __device__ ThreadGrid() : tx(threadIdx.x % kSide), ty(threadIdx.x / kSide) {}
  __device__ int row(int a) const { return ty + kSide * a; }
  __device__ int col(int b) const { return tx + kSide * b; }
};

template <typename T, int kRows, int kCols>
__device__ __forceinline__ void zero(T (&m)[kRows][kCols]) {
#pragma unroll
  for (int a = 0; a < kRows; ++a)
#pragma unroll
    for (int b = 0; b < kCols; ++b) m[a][b] = 0;
}

// acc[a][b] += sum over k < n of A(row a, k) B(col b, k), with A(r, k) = lhs[r * lhs_row + k * lhs_k] and
// B(c, k) = rhs[c * rhs_col + k * rhs_k] in shared memory. Columns at or past `cols` read column cols - 1
// instead: in bounds, and the caller discards them. Rows are always within the tile's 64.
template <typename T, int kRows, int kCols>
__device__ __forceinline__ void micro_gemm(T (&acc)[kRows][kCols], const ThreadGrid& g, const T* lhs,
                                           int lhs_row, int lhs_k, const T* rhs, int rhs_col, int rhs_k,
                                           int n, int cols) {
  const T* lhs_at[kRows];
  const T* rhs_at[kCols];
#pragma unroll
  for (int a = 0; a < kRows; ++a) lhs_at[a] = lhs + g.row(a) * lhs_row;
#pragma unroll
  for (int b = 0; b < kCols; ++b) rhs_at[b] = rhs + (g.col(b) < cols ? g.col(b) : cols - 1) * rhs_col;
  for (int k = 0; k < n; ++k) {
    T x[kRows], y[kCols];
#pragma unroll
    for (int a = 0; a < kRows; ++a) x[a] = lhs_at[a][k * lhs_k];
#pragma unroll
    for (int b = 0; b < kCols; ++b) y[b] = rhs_at[b][k * rhs_k];
#pragma unroll
    for (int a = 0; a < kRows; ++a)
#pragma unroll
      for (int b = 0; b < kCols; ++b) acc[a][b] += x[a] * y[b];
  }
}

// One key tile of the online softmax (Milakov and Gimelshein 2018) for a thread's kMicro rows: folds the
// scores s (-inf where excluded) into each row's running maximum and sum, across the 16 lanes of the row's
// half warp, turns s into the weights exp(s - new maximum) and returns in `factor` what the row's
// accumulator must be multiplied by, exp(old maximum - new maximum). While none of a row's scores is finite
// its weights stay 0 and its factor 1 (exp(-inf - -inf) would be NaN). Every lane of the warp must call.
template <typename T>
__device__ __forceinline__ void online_softmax_tile(T (&s)[kMicro][kMicro], T (&row_max)[kMicro],
                                                    T (&row_sum)[kMicro], T (&factor)[kMicro]) {
  constexpr T kInf = std::numeric_limits<T>::infinity();
#pragma unroll
  for (int a = 0; a < kMicro; ++a) {
    T tile_max = -kInf;
#pragma unroll
    for (int c = 0; c < kMicro; ++c) tile_max = fmax(tile_max, s[a][c]);
    const T new_max = fmax(row_max[a], group_allreduce<kSide>(tile_max, FMax{}));
    factor[a] = 1;
    T sum = 0;
#pragma unroll
    for (int c = 0; c < kMicro; ++c) {
      s[a][c] = new_max == -kInf ? T(0) : exp_of(s[a][c] - new_max);
      sum += s[a][c];
    }
    if (new_max != -kInf) factor[a] = exp_of(row_max[a] - new_max);
    row_sum[a] = row_sum[a] * factor[a] + group_allreduce<kSide>(sum, Plus{});
    row_max[a] = new_max;
  }
}

// Calls f.template operator()<kCols>() with the feature columns per thread that a head `width` wide needs
// (16 kCols >= width); false, calling nothing, above kWidest.
template <typename F>
bool with_columns(int width, F f) {
  if (width <= 32) {
    f.template operator()<2>();
  } else if (width <= 64) {
    f.template operator()<4>();
  } else if (width <= kWidest) {
    f.template operator()<8>();
  } else {
    return false;
  }
  return true;
}

}  // namespace loom::cuda::register_tiles
