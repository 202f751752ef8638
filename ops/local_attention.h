#pragma once
// Local (chunked) self-attention, Reformer's "SelfAttention(chunk_len, n_chunks_before)" (trax) and
// LocalSelfAttention (Hugging Face): the sequence is cut into chunks of chunk_len in their original order, and
// every query of chunk c attends to the keys of chunks c - n_chunks_before .. c + n_chunks_after, taken
// circularly (trax/HF look_adjacent: in non-causal mode chunk 0 looks back at the last chunk). Cost and memory
// are O(L * W), W = (n_chunks_before + 1 + n_chunks_after) * chunk_len keys per query, never O(L^2).
#include <cstdint>

#include "loom/core/tensor.h"

namespace loom {

// q, k [B, H, L, d], v [B, H, L, dv] (float32 or float64, one device); padding_mask (optional) bool [B, L],
// true marking a padding position, which no query may attend to. Scores are scale * q . k, scale 0 meaning
// 1 / sqrt(d) (HF divides the keys by sqrt(d): the same). causal excludes key position kpos > query position
// qpos, compared as exact original positions, so the circular wrap never leaks the future; there is no self-mask
// (unlike LSH attention). Returns [B, H, L, dv], laid out in memory like q.
//
// - L <= chunk_len: plain full attention over the sequence (as HF).
// - L % chunk_len != 0: an error naming the shapes (pad the sequence first).
// - n_ch = L / chunk_len < n_chunks_before + 1 + n_chunks_after: the circular window would list a chunk twice;
//   each chunk is attended once (HF would count such keys twice; trax never meets the case at its configs).
// - A query whose every key is masked (a window of padding only) outputs zeros and passes no gradient, where
//   HF's "replace masked logits with -1e9, then softmax" gives uniform weights over the window. Every other row
//   agrees with HF to rounding (exp(-1e9 - max) is exactly 0 in float32 and float64).
//
// One fused scaled_dot_product_attention over [B, H, n_ch, chunk_len, .] queries and the gathered windows
// [B, H, n_ch, W, .] of keys and values, with a bool mask [B | 1, 1, n_ch, chunk_len, W] built from positions.
Tensor local_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t chunk_len,
                       int64_t n_chunks_before = 1, int64_t n_chunks_after = 0, bool causal = false,
                       const Tensor& padding_mask = Tensor(), double scale = 0);

}  // namespace loom
