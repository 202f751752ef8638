#pragma once
// The Reformer of bench_reformer (see its file comment), also timed on the GPU by bench_cuda:
// reformer-pytorch's ReformerLM defaults (byte vocabulary, d_model 256, 4 heads of 64, every layer LSH with
// chunk 64 = bucket size, one chunk of look-back, 2 hash rounds, L / 64 buckets factorised above 128,
// feed-forward 4 x 256 with GELU, no dropout, axial positions (L / 64, 64), feed-forward and loss chunks of
// 4096 positions).
#include <cstdint>
#include <vector>

#include "loom/models/reformer/reformer_lm.h"

namespace loom::bench {

constexpr int64_t kReformerVocab = 256, kReformerWidth = 256, kReformerHeads = 4;

// reformer-pytorch's bucket count L / bucket_size, factorised (trax's way) above 128 buckets: hashing into n
// buckets needs an [L, n / 2] projection per head and round, which at L = 2^20 would be terabytes.
inline std::vector<int64_t> reformer_buckets(int64_t len, int64_t chunk) {
  const int64_t n = len / chunk > 2 ? len / chunk : 2;
  if (n <= 128) return {n};
  int64_t f1 = 1;
  while (f1 * f1 < n) f1 *= 2;
  return {f1, n / f1};
}

inline models::ReformerConfig reformer_config(int64_t len, int64_t layers) {
  models::ReformerConfig c;
  c.vocab_size = kReformerVocab;
  c.d_model = kReformerWidth;
  c.d_ff = 4 * kReformerWidth;
  c.layers = layers;
  c.heads = kReformerHeads;
  c.head_dim = 64;
  c.attention = {"lsh"};
  c.lsh_chunk = 64;
  c.lsh_chunks_before = 1;
  c.n_hashes = 2;
  c.n_buckets = reformer_buckets(len, c.lsh_chunk);
  c.max_seq = len;
  c.positions = "axial";
  c.axial_shape = {len / 64, 64};
  c.dropout = 0.0;
  c.activation = "gelu";
  c.eps = 1e-5;
  c.ff_chunk = 4096;
  c.loss_chunk = 4096;
  return c;
}

}  // namespace loom::bench
