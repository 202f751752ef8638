#pragma once
// Fused scaled-dot-product attention (torch.nn.functional.scaled_dot_product_attention):
//   out = softmax(scale * q @ k^T, masked) @ v
// as one op and one tape entry. The CPU and CUDA kernels never materialise the [L, S] score matrix
// (FlashAttention-2 tiling); the backward pass recomputes it tile by tile from the per-row logsumexp saved by
// the forward.
#include "loom/core/tensor.h"

namespace loom {

// q [..., L, D], k [..., S, D], v [..., S, Dv] with the same leading (batch, head) dims; float32 or float64,
// one device. attn_mask (optional) is bool, broadcastable to [..., L, S], true marking a key a query may NOT
// attend to (as loom::softmax's mask; e.g. [L, S], or a key padding mask [B, 1, 1, S]). is_causal also
// excludes key j for query i when j > i (top-left aligned when L != S, as PyTorch). scale 0 means 1 /
// sqrt(D). A query row with no allowed key outputs zeros (never NaN) and passes no gradient. Returns [..., L,
// Dv].
//
// dropout_p > 0 applies dropout to the attention weights, as PyTorch's dropout_p (the caller passes 0 outside
// training): out = dropout(softmax(...), dropout_p) @ v, drawn from the default generator exactly as
// loom::dropout on the contiguous [..., L, S] weights would be, so the fused op and the composed ops give the
// same numbers from the same generator state; the backward pass regenerates the mask instead of storing it.
// (Unlike PyTorch, dropout_p comes last, so that existing calls keep their meaning.)
//
// Inputs may be strided views (e.g. heads split out of a packed projection) as long as their last dim is
// contiguous; the output is laid out in memory like q (a q viewed as [B, H, L, D] from [B, L, H, D] gives an
// output whose permute(0, 2, 1, 3) is contiguous, so merging heads costs no copy).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& attn_mask = Tensor(), bool is_causal = false,
                                    double scale = 0, double dropout_p = 0);

// Self-attention straight from a packed projection qkv [..., L, 3, H, D] (x @ [Wq; Wk; Wv]^T viewed so):
// scaled_dot_product_attention on q, k, v = qkv.select(-3, i).transpose(-3, -2), i = 0, 1, 2, returning
// [..., H, L, D] laid out as [..., L, H, D]; attn_mask broadcasts to [..., H, L, L]. The same values, but as one
// op over the one packed tensor, its backward writes dq, dk and dv into a single packed gradient, where three
// separate views would each scatter theirs into a zero-filled copy of the projection and then be summed.
Tensor scaled_dot_product_attention_packed(const Tensor& qkv, const Tensor& attn_mask = Tensor(),
                                           bool is_causal = false, double scale = 0, double dropout_p = 0);

// Attention from queries q [..., H, L, D] to keys and values packed as one projection kv [..., S, 2, H, D]
// (x @ [Wk; Wv]^T viewed so, as MultiheadAttention::split_key_value makes it): scaled_dot_product_attention
// on q, k, v = kv.select(-3, i).transpose(-3, -2), i = 0, 1. The same values; the backward writes dk and dv
// into one packed gradient instead of two zero-filled copies of the projection that are then summed.
Tensor scaled_dot_product_attention_kv_packed(const Tensor& q, const Tensor& kv,
                                              const Tensor& attn_mask = Tensor(), bool is_causal = false,
                                              double scale = 0, double dropout_p = 0);

}  // namespace loom
