#pragma once
// What the dense fused attention kernels share (cuda_attention.cu: shared-memory tiles, any head width;
// cuda_attention_register_tiles.cu: register tiles, heads up to 128): the problem a launch solves (pointers,
// sizes, the operands' batch strides, the mask, dropout's Philox state), built on the host from the op's
// tensors, and the per-entry rules every kernel applies the same way (which keys a query sees, and dropout's
// keep multiplier).
#include <climits>
#include <cstdint>

#include "loom/core/philox.h"
#include "loom/cuda/attention_tiles.cuh"
#include "loom/cuda/cuda_backend_impl.h"
#include "loom/cuda/launch.cuh"

namespace loom::cuda::dense_attention {

using namespace attention;

// The operands whose leading (batch) dims may have any strides, in the order Layout stores them.
enum Operand { kQ, kK, kV, kOut, kMask, kGradOut, kGradQ, kGradK, kGradV, kOperands };

// Where matrix b of each operand starts and how far apart its rows are. Leading dims are stored innermost
// first, so b is decomposed as a row-major index over them.
struct Layout {
  int lead = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims][kOperands] = {};
  int64_t row_stride[kOperands] = {};

  __device__ int64_t offset(int64_t b, int op) const {
    int64_t off = 0;
    for (int d = 0; d < lead; ++d) {
      off += (b % sizes[d]) * strides[d][op];
      b /= sizes[d];
    }
    return off;
  }
};

template <typename T>
struct Problem {
  const T *q = nullptr, *k = nullptr, *v = nullptr, *go = nullptr, *delta = nullptr;
  const bool* mask = nullptr;
  T *out = nullptr, *lse = nullptr, *gq = nullptr, *gk = nullptr, *gv = nullptr;
  int64_t batch = 0, l = 0, s = 0;
  int d = 0, dv = 0;
  int dp = 0, dvp = 0;  // shared-memory row pitches: odd, so a warp walking rows hits 32 different banks
  int64_t mask_col_stride = 0;
  T scale = 0;
  bool causal = false;
  bool dropping = false;
  uint32_t threshold = 0;
  T keep_scale = 0;
  PhiloxState state;
  Layout lay;
};

// Whether query i may see key j of matrix b (mask_base: the mask's offset for b).
template <typename T>
__device__ __forceinline__ bool allowed(const Problem<T>& p, int64_t mask_base, int64_t i, int64_t j) {
  if (p.causal && j > i) return false;
  return !(p.mask && p.mask[mask_base + i * p.lay.row_stride[kMask] + j * p.mask_col_stride]);
}

// Dropout's multiplier for weight (i, j) of matrix b: word idx % 4 of Philox counter offset + idx / 4.
template <typename T>
__device__ __forceinline__ T keep_multiplier(const Problem<T>& p, int64_t b, int64_t i, int64_t j) {
  const uint64_t idx = static_cast<uint64_t>((b * p.l + i) * p.s + j);
  const Philox4x32 block = philox_block(p.state.seed, p.state.offset + idx / 4);
  uint32_t word;
  switch (idx % 4) {
    case 0:
      word = block.v[0];
      break;
    case 1:
      word = block.v[1];
      break;
    case 2:
      word = block.v[2];
      break;
    default:
      word = block.v[3];
      break;
  }
  return (word >> 8) >= p.threshold ? p.keep_scale : T(0);
}

// Rows [first, first + n) of operand `op` (kQ, kK, kV or kGradOut) of the matrix that starts at `base`
// (p.lay.offset(mat, op), which callers hoist out of their tile loops) into shared memory, with the
// operand's width and odd row pitch.
template <typename T>
__device__ __forceinline__ void load_operand_rows(const Problem<T>& p, int op, int64_t base, int64_t first,
                                                  int n, T* dst) {
  const T* src = op == kQ ? p.q : op == kK ? p.k : op == kV ? p.v : p.go;
  const bool key_width = op == kQ || op == kK;
  load_rows(src + base, p.lay.row_stride[op], first, n, key_width ? p.d : p.dv, dst,
            key_width ? p.dp : p.dvp);
}

// ---- host side

inline int64_t row_stride(const Tensor& t) { return t.size(-2) <= 1 ? 0 : t.stride(-2); }

template <typename T>
Problem<T> make_problem(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool causal,
                        double scale, const AttentionDropout& dropout, const Tensor& out, const Tensor& lse,
                        const Tensor& grad_out, const Tensor& gq, const Tensor& gk, const Tensor& gv) {
  Problem<T> p;
  p.l = q.size(-2);
  p.s = k.size(-2);
  p.d = static_cast<int>(q.size(-1));
  p.dv = static_cast<int>(v.size(-1));
  p.dp = odd_pitch(p.d);
  p.dvp = odd_pitch(p.dv);
  p.batch = q.numel() / (p.l * p.d);
  p.scale = static_cast<T>(scale);
  p.causal = causal;
  p.dropping = dropout.active();
  p.threshold = dropout_threshold(dropout.p);
  p.keep_scale = dropout_scale<T>(dropout.p);
  p.state = dropout.state;
  const Tensor* operands[kOperands] = {&q, &k, &v, &out, &mask, &grad_out, &gq, &gk, &gv};
  const int lead = static_cast<int>(q.dim()) - 2;
  p.lay.lead = lead;
  for (int d = 0; d < lead; ++d) p.lay.sizes[d] = q.size(lead - 1 - d);
  for (int op = 0; op < kOperands; ++op) {
    const Tensor& t = *operands[op];
    if (!t.defined()) continue;
    for (int d = 0; d < lead; ++d) p.lay.strides[d][op] = t.stride(lead - 1 - d);
    p.lay.row_stride[op] = row_stride(t);
  }
  p.q = ptr<const T>(q);
  p.k = ptr<const T>(k);
  p.v = ptr<const T>(v);
  if (mask.defined()) {
    p.mask = ptr<const bool>(mask);
    p.mask_col_stride = mask.stride(-1);
  }
  p.out = ptr<T>(out);
  p.lse = ptr<T>(lse);
  if (grad_out.defined()) p.go = ptr<const T>(grad_out);
  if (gq.defined()) p.gq = ptr<T>(gq);
  if (gk.defined()) p.gk = ptr<T>(gk);
  if (gv.defined()) p.gv = ptr<T>(gv);
  return p;
}

inline unsigned grid_for(int64_t batch, int64_t len, int tile) {
  const int64_t blocks = batch * ((len + tile - 1) / tile);
  LOOM_CHECK(blocks <= INT_MAX, "scaled_dot_product_attention: ", blocks,
             " tiles exceed the CUDA grid's 2^31 - 1 blocks");
  return static_cast<unsigned>(blocks);
}

// The register-tiled kernels (cuda_attention_register_tiles.cu): launch them for `p` and return true, or
// return false, launching nothing, when the heads are wider than they handle (128) or their tiles do not fit
// the device's shared memory. The backward pass expects p.delta (dO . O per row) when it asks for dQ or dK.
template <typename T>
bool register_tiled_forward(const Problem<T>& p);
template <typename T>
bool register_tiled_backward(const Problem<T>& p);

// The tensor-core kernels (cuda_attention_tensor_cores.cu, float32 on sm_80 and later, at float32's
// accuracy): as the register-tiled ones, for heads up to 128 wide; false for float64, on an older GPU, or
// when their tiles do not fit.
bool tensor_core_forward(const Problem<float>& p);
bool tensor_core_forward(const Problem<double>& p);
bool tensor_core_backward(const Problem<float>& p);
bool tensor_core_backward(const Problem<double>& p);

}  // namespace loom::cuda::dense_attention
