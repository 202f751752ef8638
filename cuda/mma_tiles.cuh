#pragma once
// Tiles for the tensor-core attention kernels (cuda_attention_tensor_cores.cu for dense attention,
// cuda_lsh_attention_tensor_cores.cu for LSH attention's chunks): every product of attention as a warp GEMM
// of tensor_cores.cuh's 16 x 8 x 8 steps at float32's accuracy.
//
// A block is 4 warps over 64-row tiles and each warp owns 16 rows of every product, as FlashAttention-2
// splits them, so a row's softmax statistics live in one warp: in the 4 lanes of a quad, as the accumulator
// fragments place a row. Accumulators are float acc[tiles][4], tile nt holding columns 8 nt .. 8 nt + 7 of
// the warp's 16 rows; Lane::row and Lane::col say which entry is where. Operands come from shared-memory
// tiles whose rows are zero past the operand's width up to the next multiple of 8 (and past the tile's rows),
// so padded mma steps add nothing.
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>

#include "loom/cuda/attention_tiles.cuh"
#include "loom/cuda/tensor_cores.cuh"

namespace loom::cuda::mma_tiles {

using namespace tensor_cores;
using attention::FMax;

constexpr int kWarpRows = kMmaRows;              // rows of every product a warp owns
constexpr int kBlockWarps = 4;                   //
constexpr int kBlockThreads = 32 * kBlockWarps;  // 128
constexpr int kRows = kWarpRows * kBlockWarps;   // 64 rows (queries or keys) a block, 64 keys a tile
constexpr int kScoreTiles = kRows / kMmaCols;    // 8 accumulator tiles per 16 x 64 score block
constexpr int kWidestHead = 128;                 //
constexpr int kScoreRowPitch = kRows + 4;        // [64][68] weight and score-gradient tiles
constexpr float kInf = std::numeric_limits<float>::infinity();

// A width rounded up to whole mma steps.
__host__ __device__ constexpr int padded(int width) {
  return (width + kMmaDepth - 1) / kMmaDepth * kMmaDepth;
}
// Row pitch of an operand tile: padded width + 4, so the 32 lanes of a fragment load (lane reads row g,
// column t: g * pitch + t) hit 32 different banks. Fragments read down columns (B(k, n) stored [k][n]) see
// two-way conflicts at this pitch.
__host__ __device__ constexpr int pitch_of(int width) { return padded(width) + 4; }

struct Lane {
  int warp, g, t;  // the warp, and the lane's group (lane / 4) and place in it (lane % 4)
  __device__ Lane() : warp(threadIdx.x / 32), g(threadIdx.x % 32 / 4), t(threadIdx.x % 4) {}
  // The first of the warp's 16 rows of every product.
  __device__ int first_row() const { return warp * kWarpRows; }
  // Row (within the warp's 16) and column (within an 8-wide accumulator tile) of accumulator entry i.
  __device__ int row(int i) const { return g + 8 * (i / 2); }
  __device__ int col(int i) const { return 2 * t + i % 2; }
};

// Rows row_of(r) (r < n) of a matrix with row stride rs into a [kRows][pitch_of(width)] tile: zeros past n
// rows and past the width, up to the padded width.
template <typename RowOf>
__device__ __forceinline__ void load_padded(const float* src, int64_t rs, RowOf row_of, int n, int width,
                                            float* dst) {
  const int pw = padded(width), pitch = pitch_of(width);
  for (int e = threadIdx.x; e < kRows * pw; e += kBlockThreads) {
    const int r = e / pw, c = e % pw;
    dst[r * pitch + c] = r < n && c < width ? src[row_of(r) * rs + c] : 0.0f;
  }
}

template <int kTiles>
__device__ __forceinline__ void zero(float (&acc)[kTiles][4]) {
#pragma unroll
  for (int nt = 0; nt < kTiles; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[nt][i] = 0;
}

// acc[nt] += A B(:, 8 nt .. 8 nt + 7) for nt < tiles, over depth k < `depth` (a multiple of 8): A is the
// warp's 16 rows from row r0 of a [row][k] tile, B(k, n) = kKMajor ? b[k * b_pitch + n] : b[n * b_pitch + k].
template <bool kKMajor, int kTiles>
__device__ __forceinline__ void warp_gemm(float (&acc)[kTiles][4], const Lane& l, const float* a, int a_pitch,
                                          int r0, const float* b, int b_pitch, int depth, int tiles) {
  for (int k0 = 0; k0 < depth; k0 += kMmaDepth) {
    const float* at = a + (r0 + l.g) * a_pitch + k0 + l.t;
    const Split af[4] = {split(at[0]), split(at[8 * a_pitch]), split(at[4]), split(at[8 * a_pitch + 4])};
#pragma unroll
    for (int nt = 0; nt < kTiles; ++nt) {
      if (nt >= tiles) break;  // uniform across the warp, as mma needs
      const int n = kMmaCols * nt + l.g, k = k0 + l.t;
      Split bf[2];
      if constexpr (kKMajor) {
        bf[0] = split(b[k * b_pitch + n]);
        bf[1] = split(b[(k + 4) * b_pitch + n]);
      } else {
        bf[0] = split(b[n * b_pitch + k]);
        bf[1] = split(b[n * b_pitch + k + 4]);
      }
      mma_3xtf32(acc[nt], af, bf);
    }
  }
}

// The warp's raw products with a 64-column tile: s = A B^T over `width` (A the warp's 16 rows of a [row][k]
// tile, B a [column][k] tile, both at pitch_of(width)) and, when `grads`, dp = C D^T over `grad_width`
// likewise.
__device__ __forceinline__ void score_products(float (&s)[kScoreTiles][4], float (&dp)[kScoreTiles][4],
                                               const Lane& l, const float* a, const float* b, int width,
                                               const float* c, const float* d, int grad_width, bool grads) {
  zero(s);
  zero(dp);
  const int r0 = l.first_row(), pitch = pitch_of(width), grad_pitch = pitch_of(grad_width);
  warp_gemm<false>(s, l, a, pitch, r0, b, pitch, padded(width), kScoreTiles);
  if (grads) warp_gemm<false>(dp, l, c, grad_pitch, r0, d, grad_pitch, padded(grad_width), kScoreTiles);
}

// One 64-key tile of the online softmax (Milakov and Gimelshein 2018) for the lane's two rows (h = 0: row g,
// entries 0 and 1 of every tile; h = 1: row g + 8, entries 2 and 3): folds the scores s (-inf where
// excluded) into each row's running maximum and sum across the 4 lanes of its quad, turns s into the weights
// exp(s - new maximum) and returns in `factor` what the row's accumulator must be multiplied by. While none
// of a row's scores is finite its weights stay 0 and its factor 1. Every lane of the warp must call.
__device__ __forceinline__ void online_softmax_tile(float (&s)[kScoreTiles][4], float (&row_max)[2],
                                                    float (&row_sum)[2], float (&factor)[2]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float tile_max = -kInf;
#pragma unroll
    for (int nt = 0; nt < kScoreTiles; ++nt)
      tile_max = fmaxf(tile_max, fmaxf(s[nt][2 * h], s[nt][2 * h + 1]));
    const float new_max = fmaxf(row_max[h], group_allreduce<4>(tile_max, FMax{}));
    float sum = 0;
#pragma unroll
    for (int nt = 0; nt < kScoreTiles; ++nt)
#pragma unroll
      for (int e = 2 * h; e < 2 * h + 2; ++e) {
        s[nt][e] = new_max == -kInf ? 0.0f : expf(s[nt][e] - new_max);
        sum += s[nt][e];
      }
    factor[h] = new_max == -kInf ? 1.0f : expf(row_max[h] - new_max);
    row_sum[h] = row_sum[h] * factor[h] + group_allreduce<4>(sum, Plus{});
    row_max[h] = new_max;
  }
}

// acc's rows (h = i / 2) times factor[h].
template <int kTiles>
__device__ __forceinline__ void scale_rows(float (&acc)[kTiles][4], const float (&factor)[2]) {
#pragma unroll
  for (int nt = 0; nt < kTiles; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[nt][i] *= factor[i / 2];
}

// Output column tiles for a head `width` wide (at most kWidestHead): f.template operator()<kTiles>() with
// 8 kTiles >= width.
template <typename F>
void with_tiles(int width, F f) {
  if (width <= 32) {
    f.template operator()<4>();
  } else if (width <= 64) {
    f.template operator()<8>();
  } else {
    f.template operator()<16>();
  }
}

}  // namespace loom::cuda::mma_tiles
