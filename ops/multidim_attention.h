#pragma once
// The attention primitives of DiSAN (Shen et al., AAAI 2018) and Bi-BloSAN (Shen et al., ICLR 2018), both
// "multi-dimensional": every feature f has its own attention distribution, so the scores are [..., L, L, d]
// rather than [..., L, L] and the weighted sum cannot be a GEMM.
//
// multi_dim_attention: feature-wise token2token attention,
//   score[..., i, j, f] = c * tanh((k[..., j, f] + q[..., i, f] + bias[f]) / c)
//   P = softmax over the keys j that query i may attend to (per feature f)
//   out[..., i, f] = sum_j P[..., i, j, f] * v[..., j, f]
// Row i is the query (output position), column j the key, as in the reference TF code (biblosa.md §1, P10).
// The scores are bounded in (-c, c), so exp needs no max subtraction (P3).
//
// source2token: feature-wise attention pooling of a sequence into one vector,
//   out[..., f] = sum_n softmax_n(scores over the non-padding n)[..., n, f] * values[..., n, f].
#include "loom/core/tensor.h"

namespace loom {

// Which keys j a query i may attend to.
enum class AttentionDirection : uint8_t {
  Forward,     // j < i (strictly earlier tokens)
  Backward,    // j > i (strictly later tokens)
  NoDiagonal,  // j != i (DiSAN's "diag" mask)
  All,         // every key
};
const char* attention_direction_name(AttentionDirection direction);

// q, k, v [..., L, d] of one shape, bias [d]; float32 or float64, one device. padding_mask (optional) is bool,
// broadcastable to [..., L], true marking padding. Key j is allowed for query i when the direction allows it,
// j is not padding and, if mask_queries, i is not padding either (the intra-block attention of Bi-BloSA masks
// queries, DiSA does not). A query with no allowed key outputs exactly 0 and passes zero gradient (never NaN).
// c must lie in (0, 40]: above that exp of the unshifted scores could overflow or underflow in float32.
// Returns [..., L, d], contiguous; one tape entry with gradients for q, k, v and bias. Operands whose
// [..., L] dims flatten into evenly spaced rows (e.g. column slices of one packed projection) are read in place.
Tensor multi_dim_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                           AttentionDirection direction, const Tensor& padding_mask = Tensor(), double c = 5.0,
                           bool mask_queries = true);

// scores, values [..., n, d] of one shape (floating, one dtype and device); padding_mask (optional) bool,
// broadcastable to [..., n], true = padding. Returns [..., d]; a row whose every position is padding gives 0
// (with zero gradients). Composed of masked softmax, mul and sum, so it runs and differentiates on any backend.
Tensor source2token(const Tensor& scores, const Tensor& values, const Tensor& padding_mask = Tensor());

}  // namespace loom
