#pragma once
// Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a counter-based RNG.
// Element i of a random op uses counter (offset + i / 4) and word i % 4 under key = seed, on every backend,
// so CPU and CUDA draw the same numbers and a recomputation that replays (seed, offset) draws them again.
#include <cmath>
#include <cstdint>

#include "loom/core/host_device.h"

namespace loom {

struct Philox4x32 {
  uint32_t v[4];
};

LOOM_HOST_DEVICE void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// Ten rounds on counter c under key k (the Random123 reference constants).
LOOM_HOST_DEVICE Philox4x32 philox4x32_10(Philox4x32 c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u, kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kM0, c.v[0], hi0, lo0);
    philox_mulhilo(kM1, c.v[2], hi1, lo1);
    c = Philox4x32{{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
    k0 += kW0;
    k1 += kW1;
  }
  return c;
}

// The four 32-bit words for 64-bit counter `counter` and 64-bit `seed`.
LOOM_HOST_DEVICE Philox4x32 philox_block(uint64_t seed, uint64_t counter) {
  Philox4x32 c{{static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0u, 0u}};
  return philox4x32_10(c, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// Uniform in [0, 1) with 24 random bits (exactly representable in float32).
LOOM_HOST_DEVICE float philox_uniform(uint32_t word) { return static_cast<float>(word >> 8) * (1.0f / 16777216.0f); }
// Uniform in (0, 1] with 53 random bits from two words, for float64 and for Box-Muller's log.
LOOM_HOST_DEVICE double philox_uniform_double(uint32_t w0, uint32_t w1) {
  uint64_t bits = (static_cast<uint64_t>(w0) << 21) ^ static_cast<uint64_t>(w1 >> 11);
  bits &= (uint64_t{1} << 53) - 1;
  return (static_cast<double>(bits) + 1.0) * (1.0 / 9007199254740992.0);
}

// Dropout's rule on every backend: element i of a draw with probability p is kept iff (w >> 8) >=
// dropout_threshold(p), w being word i % 4 of counter offset + i / 4; that is philox_uniform(w) >= p exactly
// (the product only shifts the exponent). p >= 1 keeps nothing.
inline uint32_t dropout_threshold(double p) {
  return p >= 1.0 ? (1u << 24) : static_cast<uint32_t>(std::ceil(p * 16777216.0));
}

// What dropout multiplies a kept element by: 1 / (1 - p), and 0 for p >= 1 (where nothing is kept).
template <typename T>
T dropout_scale(double p) {
  return p >= 1.0 ? T(0) : static_cast<T>(1.0 / (1.0 - p));
}

}  // namespace loom
