#pragma once
// Angular locality-sensitive hashing for Reformer's LSH attention (Kitaev et al. 2020, section 2; trax
// `hash_vecs`, HF `_hash_vectors`): h(x) = argmax([x R; -x R]) with a Gaussian R (not orthogonalised).
// Vectors at a small angle land in the same bucket with high probability; h(c x) = h(x) for c > 0 and h(-x) =
// (h(x) + nb / 2) mod nb. No gradient flows through hashing.
#include <cstdint>
#include <vector>

#include "loom/core/tensor.h"

namespace loom {

// Gaussian rotations R [dim, n_hashes, sum(f / 2)] (or [n_heads, dim, n_hashes, sum(f / 2)] when n_heads >
// 0), one column block of width f / 2 per bucket factor f of n_buckets. Drawn with Philox at (seed, offset),
// so the same (seed, offset, dtype) gives the same R on every device. n_buckets is one even count or several
// even factors (factorised buckets: Π f buckets from Σ f / 2 columns).
Tensor lsh_rotations(int64_t dim, int64_t n_hashes, const std::vector<int64_t>& n_buckets, uint64_t seed,
                     uint64_t offset, DType dtype = DType::Float32, int64_t n_heads = 0);

// Buckets int64 [..., n_hashes, L] of x [..., L, d] under rotations [d, n_hashes, K] (shared by every leading
// index) or [H, d, n_hashes, K] (one per head: x is [..., H, L, d]); K = Σ f / 2 over the factors of
// n_buckets. Factor k gives b_k = argmax([x R_k; -x R_k]) in [0, f_k) (first maximum on ties); the bucket is
// b_1 + f_1 b_2 + f_1 f_2 b_3 + ..., in [0, Π f). Computed without recording on the tape.
Tensor lsh_hash(const Tensor& x, const Tensor& rotations, const std::vector<int64_t>& n_buckets);

// trax's default bucket count for length L and chunk length C: n = 2 max(1, L / C); {n} when n <= 128, else
// the factorisation {2^ceil(log2(sqrt(n))), 2 (n / (2 that))} (L = 65536, C = 256 -> {32, 16}).
std::vector<int64_t> lsh_default_buckets(int64_t seq_len, int64_t chunk_len);

// Π f over the factors (the number of distinct buckets lsh_hash can return); checks each is even and > 0.
int64_t lsh_total_buckets(const std::vector<int64_t>& n_buckets, const char* op = "lsh_hash");

}  // namespace loom
