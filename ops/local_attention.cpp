// local_attention: argument checks, the look-adjacent key windows (one index_select per operand), the
// position-built bool mask, and the fused scaled_dot_product_attention over chunks.
#include "loom/ops/local_attention.h"

#include <vector>

#include "loom/ops/attention.h"
#include "loom/ops/attention_checks.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/factory.h"
#include "loom/ops/shape_ops.h"

namespace loom {
namespace {

constexpr const char* kOp = "local_attention";

// The distinct chunk offsets of the window -P .. A, modulo n_ch, in window order. When n_ch < P + 1 + A two
// offsets reach the same chunk (e.g. -1 and +1 with two chunks); only the first is kept, so no key counts twice.
std::vector<int64_t> window_offsets(int64_t n_ch, int64_t before, int64_t after) {
  std::vector<int64_t> offsets;
  std::vector<bool> seen(static_cast<size_t>(n_ch), false);
  for (int64_t i = -before; i <= after; ++i) {
    const int64_t r = ((i % n_ch) + n_ch) % n_ch;
    if (seen[static_cast<size_t>(r)]) continue;
    seen[static_cast<size_t>(r)] = true;
    offsets.push_back(i);
  }
  return offsets;
}

// Key positions of every window, [n_ch * W] int64: window c lists chunks (c + offset) mod n_ch, each in order.
Tensor window_positions(int64_t n_ch, int64_t chunk, const std::vector<int64_t>& offsets) {
  std::vector<int64_t> pos;
  pos.reserve(static_cast<size_t>(n_ch * chunk) * offsets.size());
  for (int64_t c = 0; c < n_ch; ++c)
    for (int64_t off : offsets) {
      const int64_t start = (((c + off) % n_ch) + n_ch) % n_ch * chunk;
      for (int64_t t = 0; t < chunk; ++t) pos.push_back(start + t);
    }
  return tensor(pos);
}

}  // namespace

Tensor local_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t chunk_len, int64_t n_chunks_before,
                       int64_t n_chunks_after, bool causal, const Tensor& padding_mask, double scale) {
  detail::check_attention_operand(kOp, "q", q, q);
  detail::check_attention_operand(kOp, "k", k, q);
  detail::check_attention_operand(kOp, "v", v, q);
  LOOM_CHECK(q.dim() == 4 && k.shape() == q.shape() && v.dim() == 4 && v.size(0) == q.size(0) &&
                 v.size(1) == q.size(1) && v.size(2) == q.size(2),
             kOp, ": expected q and k [B, H, L, d] of one shape and v [B, H, L, dv], got shapes ", q.shape(), ", ",
             k.shape(), " and ", v.shape());
  LOOM_CHECK(chunk_len > 0, kOp, ": chunk_len must be positive, got ", chunk_len);
  LOOM_CHECK(n_chunks_before >= 0 && n_chunks_after >= 0, kOp,
             ": n_chunks_before and n_chunks_after must be >= 0, got ", n_chunks_before, " and ", n_chunks_after);
  const int64_t B = q.size(0), H = q.size(1), L = q.size(2), d = q.size(3), dv = v.size(3);
  if (padding_mask.defined()) {
    LOOM_CHECK(padding_mask.dtype() == DType::Bool, kOp, ": padding_mask must be bool (true = padding), got ",
               describe(padding_mask));
    LOOM_CHECK(padding_mask.device() == q.device(), kOp, ": padding_mask is on ", padding_mask.device(),
               " but q is on ", q.device());
    LOOM_CHECK(padding_mask.dim() == 2 && padding_mask.size(0) == B && padding_mask.size(1) == L, kOp,
               ": padding_mask must be [B, L] = [", B, ", ", L, "], got shape ", padding_mask.shape(),
               " for q of shape ", q.shape());
  }

  // Short sequences: one chunk covering everything is plain attention (HF's do_standard_self_attention).
  if (L <= chunk_len) {
    Tensor mask = padding_mask.defined() ? padding_mask.view({B, 1, 1, L}) : Tensor();
    return scaled_dot_product_attention(q, k, v, mask, causal, scale);
  }
  LOOM_CHECK(L % chunk_len == 0, kOp, ": sequence length ", L, " (q of shape ", q.shape(),
             ") is not a multiple of chunk_len ", chunk_len, "; pad the sequence to a multiple of it");

  const int64_t n_ch = L / chunk_len;
  const std::vector<int64_t> offsets = window_offsets(n_ch, n_chunks_before, n_chunks_after);
  const int64_t W = static_cast<int64_t>(offsets.size()) * chunk_len;
  Tensor kpos = window_positions(n_ch, chunk_len, offsets).to(q.device());  // [n_ch * W]

  // Windows of keys and values, [B, H, n_ch, W, .]: the only O(L * W) tensors besides the mask.
  Tensor kw = index_select(k, 2, kpos).view({B, H, n_ch, W, d});
  Tensor vw = index_select(v, 2, kpos).view({B, H, n_ch, W, dv});
  Tensor qc = q.reshape({B, H, n_ch, chunk_len, d});  // a view for contiguous and head-split q alike

  // The bool mask (true = excluded) from positions: causal [n_ch, C, W], padding [B, 1, n_ch, 1, W].
  Tensor mask;
  if (causal) {
    Tensor qpos = arange(0, static_cast<double>(L), 1, TensorOptions(DType::Int64, q.device()));
    mask = gt(kpos.view({n_ch, 1, W}), qpos.view({n_ch, chunk_len, 1}));
  }
  if (padding_mask.defined()) {
    Tensor pad = index_select(padding_mask, 1, kpos).view({B, 1, n_ch, 1, W});
    mask = mask.defined() ? logical_or(mask, pad) : pad;
  }
  Tensor out = scaled_dot_product_attention(qc, kw, vw, mask, /*is_causal=*/false, scale);
  return out.reshape({B, H, L, dv});  // a view: the output is laid out like qc, hence like q
}

}  // namespace loom
