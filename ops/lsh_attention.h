#pragma once
// Reformer's LSH self-attention (Kitaev, Kaiser, Levskaya 2020) as one op with one tape entry and a
// hand-written backward, following the mathematics of HF transformers' LSHSelfAttention and current trax
// (efficient_attention.py):
//   1. buckets [B, H, n_hashes, L] = lsh_hash(qk, R) with R drawn per head and shared by the batch (ops/lsh.h);
//      padding positions go to an extra last bucket, so they sort to the end of every round;
//   2. each round's rows are sorted by (bucket, position); rounds are laid end to end (N = n_hashes L rows);
//   3. chunks of chunk_len rows attend to themselves plus n_chunks_before / n_chunks_after neighbouring chunks,
//      circularly over all N rows (the first chunk of round r looks back into round r - 1, and round 0 into the
//      last round); keys are the queries RMS-normalised (eps 1e-6) and divided by sqrt(d) (unit length);
//   4. logits q.k: minus 1e5 where key and query are the same position (always: shared-QK would otherwise
//      attend to itself first); minus log N_ij when allow_duplicate_attention is false (N_ij = how many times
//      key j appears in the windows of query i's copies over all rounds, paper eq. 16); then REPLACED by -1e9
//      (as HF; trax subtracts) where causal and key position > query position, or where the key is padding.
//      The masks are finite, so a row with nothing allowed still gets finite (uniform) weights, never NaN;
//   5. each round's output and logsumexp lse are un-sorted; the rounds are combined with weights
//      softmax over rounds of lse (paper eq. 13-15).
// The backward pass reuses the saved buckets (no hashing) and recomputes each chunk's logits.
#include <cstdint>
#include <vector>

#include "loom/core/tensor.h"

namespace loom {

struct LshAttentionOptions {
  int64_t chunk_len = 64, n_chunks_before = 1, n_chunks_after = 0, n_hashes = 1;
  // One even count or even factors (factorised buckets); empty = lsh_default_buckets(L, chunk_len).
  std::vector<int64_t> n_buckets;
  bool causal = false;
  // false: subtract log(count) of each (i, j) pair's occurrences over rounds and windows (paper; costs an
  // extra [B, H, n_hashes L, W] tensor). true (HF, trax): no correction.
  bool allow_duplicate_attention = true;
  // L <= chunk_len: plain shared-QK attention over the whole sequence with the self-mask, no hashing (HF);
  // the result's buckets are then undefined.
  bool dense_when_short = true;
  // (Batch, head) pairs are processed in blocks of at most this many sorted rows (n_hashes L per pair; at
  // least one pair per block): it bounds the op's transient memory (sorted copies, gradients) to a block's
  // share. The result does not depend on it.
  int64_t block_rows = int64_t{1} << 16;
  // The rotations' Philox stream: (seed, 0) when has_seed, else a fresh draw from the default generator.
  uint64_t seed = 0;
  bool has_seed = false;
};

struct LshAttentionResult {
  Tensor out;      // [B, H, L, dv], laid out contiguously
  Tensor buckets;  // int64 [B, H, n_hashes, L]: the buckets used (padding positions hold the extra bucket)
};

// qk [B, H, L, d] (the shared query/key projection), v [B, H, L, dv]: float32 or float64 on one device.
// padding_mask: bool [B, L], true = padding (optional). buckets: replay a previous result's buckets instead
// of hashing (a reversible layer's recompute); they must be int64 [B, H, n_hashes, L] in [0, nb], nb = Π
// n_buckets (nb itself only at padding). L must be a multiple of chunk_len unless the dense path applies.
// Gradients flow to qk and v.
LshAttentionResult lsh_attention(const Tensor& qk, const Tensor& v, const LshAttentionOptions& opts,
                                 const Tensor& padding_mask = Tensor(), const Tensor& buckets = Tensor());

}  // namespace loom
