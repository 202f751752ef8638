// Random kernels on the CPU: uniform, normal and dropout from Philox 4x32-10 (core/philox.h).
//
// Every value is a pure function of (seed, offset, i), where i is the element's row-major index, so results
// do not depend on how the work is split and the CUDA backend reproduces them with the same formulas. With
// B(c) = philox_block(seed, offset + c) (four 32-bit words):
//
//   uniform, float32  w = B(i / 4).v[i % 4];  u = philox_uniform(w), in [0, 1) with 24 bits;
//                     out[i] = float(low + (high - low) * double(u))            (arithmetic in double)
//   uniform, float64  b = B(i / 2), k = 2 * (i % 2);  u = 1 - philox_uniform_double(b.v[k], b.v[k + 1]),
//                     in [0, 1) with 53 bits;  out[i] = low + (high - low) * u
//   normal (both)     b = B(i / 2);  u1 = philox_uniform_double(b.v[0], b.v[1]) in (0, 1],
//                     u2 = philox_uniform_double(b.v[2], b.v[3]);  r = sqrt(-2 log u1),  t = 2 pi u2;
//                     out[i] = T(mean + std * r * (i % 2 == 0 ? cos t : sin t))  (Box-Muller, all in double;
//                     elements 2j and 2j + 1 share one counter and are the two outputs of one transform)
//   dropout           w = B(i / 4).v[i % 4];  keep = (w >> 8) >= ceil(p * 2^24), which is exactly
//                     philox_uniform(w) >= p;  out[i] = keep ? in[i] * T(1 / (1 - p)) : 0
//
// Counters used: uniform float32 and dropout (n + 3) / 4, uniform float64 and normal (n + 1) / 2, all within
// the (n + 3) / 4 * 2 + 1 that rand/randn reserve.
//
// The kernels draw Philox blocks in chunks of consecutive counters into a word array, which is already in
// element order for float32 (element i is word i of the chunk), and then convert whole chunks in vectorised
// loops (log/sin/cos from cpu/vec_math.h).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "loom/core/parallel.h"
#include "loom/core/philox.h"
#include "loom/ops/cpu/cpu_backend.h"
#include "loom/ops/cpu/vec_math.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace loom {
namespace {

using VecD = cpu::vec::Vec<double>;
constexpr int64_t kLanesD = cpu::vec::kLanes<double>;

// Philox blocks per chunk (a multiple of the double vector width), and chunks per task.
constexpr int64_t kChunkBlocks = 16;
constexpr int64_t kGrainChunks = 256;

// words[4j + k] = philox_block(seed, offset + first_block + j).v[k] for j < kChunkBlocks.
struct Chunk {
  uint32_t words[4 * kChunkBlocks];
};

#if defined(__AVX2__)
// Eight blocks at once, one per 32-bit lane: the rounds of philox4x32_10 on vectors (the 32 x 32 -> 64-bit
// products of even and odd lanes taken separately), then a 4 x 8 transpose into block order. The scalar
// rounds, as GCC vectorised them, made 4 M float32 `rand` values in 13.9 ms on one thread of this EPYC;
// this makes them in 6.7 ms (dropout of 4 M floats, with its select in whole vectors below: 17.9 -> 7.0 ms).
void philox_8_blocks(uint64_t seed, uint64_t first_counter, uint32_t* words) {
  alignas(32) uint32_t lo32[8], hi32[8];
  for (int j = 0; j < 8; ++j) {
    const uint64_t counter = first_counter + static_cast<uint64_t>(j);
    lo32[j] = static_cast<uint32_t>(counter);
    hi32[j] = static_cast<uint32_t>(counter >> 32);
  }
  __m256i v0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(lo32));
  __m256i v1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(hi32));
  __m256i v2 = _mm256_setzero_si256(), v3 = _mm256_setzero_si256();
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  // hi and lo words of m * a in every lane.
  auto mulhilo = [](__m256i m, __m256i a, __m256i& hi, __m256i& lo) {
    const __m256i even = _mm256_mul_epu32(m, a);                              // lanes 0, 2, ... as 64 bits
    const __m256i odd = _mm256_mul_epu32(m, _mm256_srli_epi64(a, 32));        // lanes 1, 3, ... as 64 bits
    lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  };
  for (int round = 0; round < 10; ++round) {
    __m256i hi0, lo0, hi1, lo1;
    mulhilo(m0, v0, hi0, lo0);
    mulhilo(m1, v2, hi1, lo1);
    const __m256i n0 = _mm256_xor_si256(_mm256_xor_si256(hi1, v1), _mm256_set1_epi32(static_cast<int>(k0)));
    const __m256i n2 = _mm256_xor_si256(_mm256_xor_si256(hi0, v3), _mm256_set1_epi32(static_cast<int>(k1)));
    v0 = n0;
    v1 = lo1;
    v2 = n2;
    v3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  const __m256i t0 = _mm256_unpacklo_epi32(v0, v1), t1 = _mm256_unpackhi_epi32(v0, v1);
  const __m256i t2 = _mm256_unpacklo_epi32(v2, v3), t3 = _mm256_unpackhi_epi32(v2, v3);
  const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);  // blocks 0 1 | 4 5
  const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);  // blocks 2 3 | 6 7
  __m256i* out = reinterpret_cast<__m256i*>(words);
  _mm256_storeu_si256(out + 0, _mm256_permute2x128_si256(u0, u1, 0x20));
  _mm256_storeu_si256(out + 1, _mm256_permute2x128_si256(u2, u3, 0x20));
  _mm256_storeu_si256(out + 2, _mm256_permute2x128_si256(u0, u1, 0x31));
  _mm256_storeu_si256(out + 3, _mm256_permute2x128_si256(u2, u3, 0x31));
}
#endif

// chunk.words = the kChunkBlocks blocks from counter offset + first on.
void fill_chunk(PhiloxState state, int64_t first, Chunk& chunk) {
  const uint64_t counter = state.offset + static_cast<uint64_t>(first);
#if defined(__AVX2__)
  static_assert(kChunkBlocks % 8 == 0);
  for (int64_t j = 0; j < kChunkBlocks; j += 8)
    philox_8_blocks(state.seed, counter + static_cast<uint64_t>(j), chunk.words + 4 * j);
#else
  for (int64_t j = 0; j < kChunkBlocks; ++j) {
    Philox4x32 b = philox_block(state.seed, counter + static_cast<uint64_t>(j));
    for (int k = 0; k < 4; ++k) chunk.words[4 * j + k] = b.v[k];
  }
#endif
}

// Calls emit(chunk, first_block) for each chunk of Philox blocks covering blocks [0, blocks).
template <typename Emit>
void for_each_chunk(PhiloxState state, int64_t blocks, Emit emit) {
  int64_t chunks = (blocks + kChunkBlocks - 1) / kChunkBlocks;
  parallel_for(0, chunks, kGrainChunks, [&](int64_t lo, int64_t hi) {
    Chunk chunk;
    for (int64_t c = lo; c < hi; ++c) {
      const int64_t first = c * kChunkBlocks;
      fill_chunk(state, first, chunk);
      emit(chunk, first);
    }
  });
}

// Copies vals to out[first, first + N), clipped at n.
template <typename T, size_t N>
void store_clipped(T* out, int64_t first, int64_t n, const T (&vals)[N]) {
  std::memcpy(out + first, vals, static_cast<size_t>(std::min<int64_t>(N, n - first)) * sizeof(T));
}

// Runs gen(contiguous tensor) on out itself, or on a contiguous buffer copied into out afterwards (element i
// is out's row-major index either way).
template <typename Gen>
void generate_into(const Tensor& out, Gen gen) {
  if (out.numel() == 0) return;
  if (out.is_contiguous()) {
    gen(out);
    return;
  }
  Tensor buf = Tensor::empty(out.shape(), out.options());
  gen(buf);
  cpu_backend().copy(buf, out);
}

}  // namespace

void CpuBackend::uniform(const Tensor& out, double low, double high, PhiloxState state) {
  generate_into(out, [&](const Tensor& t) {
    const int64_t n = t.numel();
    const double range = high - low;
    if (t.dtype() == DType::Float32) {
      float* o = t.data<float>();
      // (Lambdas in this file capture by value: values reached through references are reloaded on every
      // iteration, since a store through the output could have changed them, which blocks vectorisation.)
      for_each_chunk(state, (n + 3) / 4, [o, n, low, range](const Chunk& c, int64_t block) {
        float vals[4 * kChunkBlocks];
        for (int64_t e = 0; e < 4 * kChunkBlocks; ++e)
          vals[e] = static_cast<float>(low + range * static_cast<double>(philox_uniform(c.words[e])));
        store_clipped(o, 4 * block, n, vals);
      });
      return;
    }
    LOOM_CHECK(t.dtype() == DType::Float64, "uniform: expected a floating dtype, got ",
               dtype_name(t.dtype()));
    double* o = t.data<double>();
    for_each_chunk(state, (n + 1) / 2, [o, n, low, range](const Chunk& c, int64_t block) {
      double vals[2 * kChunkBlocks];
      for (int64_t e = 0; e < 2 * kChunkBlocks; ++e)
        vals[e] = low + range * (1.0 - philox_uniform_double(c.words[2 * e], c.words[2 * e + 1]));
      store_clipped(o, 2 * block, n, vals);
    });
  });
}

void CpuBackend::normal(const Tensor& out, double mean, double std, PhiloxState state) {
  generate_into(out, [&](const Tensor& t) {
    const int64_t n = t.numel();
    LOOM_DISPATCH_FLOATING(t.dtype(), "normal", [&] {
      scalar_t* o = t.data<scalar_t>();
      for_each_chunk(state, (n + 1) / 2, [o, n, mean, std](const Chunk& c, int64_t block) {
        scalar_t vals[2 * kChunkBlocks];
        for (int64_t g = 0; g < kChunkBlocks; g += kLanesD) {
          VecD u1, u2;
          for (int64_t j = 0; j < kLanesD; ++j) {
            const uint32_t* w = c.words + 4 * (g + j);
            u1[j] = philox_uniform_double(w[0], w[1]);
            u2[j] = philox_uniform_double(w[2], w[3]);
          }
          VecD r = cpu::vec::sqrt(-2.0 * cpu::vec::log(u1));
          VecD sin_t, cos_t;
          cpu::vec::sincos_2pi(u2, sin_t, cos_t);
          VecD z0 = mean + std * r * cos_t;
          VecD z1 = mean + std * r * sin_t;
          for (int64_t j = 0; j < kLanesD; ++j) {
            vals[2 * (g + j)] = static_cast<scalar_t>(z0[j]);
            vals[2 * (g + j) + 1] = static_cast<scalar_t>(z1[j]);
          }
        }
        store_clipped(o, 2 * block, n, vals);
      });
    });
  });
}

void CpuBackend::dropout(const Tensor& in, double p, PhiloxState state, const Tensor& out) {
  if (out.numel() == 0) return;
  Tensor src = in.contiguous();
  const int64_t n = src.numel();
  // keep iff (w >> 8) / 2^24 >= p, i.e. (w >> 8) >= ceil(p * 2^24) (exact: the product only shifts the
  // exponent).
  const uint32_t threshold = p >= 1.0 ? (1u << 24) : static_cast<uint32_t>(std::ceil(p * 16777216.0));
  generate_into(out, [&](const Tensor& t) {
    LOOM_DISPATCH_FLOATING(t.dtype(), "dropout", [&] {
      using T = scalar_t;
      const T* x = src.data<T>();
      T* o = t.data<T>();
      const T scale = p >= 1.0 ? T(0) : static_cast<T>(1.0 / (1.0 - p));
      // (w >> 8) and the threshold are below 2^25, so a signed comparison, which AVX2 has, decides the same.
      const int32_t limit = static_cast<int32_t>(threshold);
      for_each_chunk(state, (n + 3) / 4, [x, o, n, scale, limit](const Chunk& c, int64_t block) {
        const int64_t first = 4 * block;
        const int64_t count = std::min<int64_t>(4 * kChunkBlocks, n - first);
        const T* in = x + first;
        T* out = o + first;
        // Whole vectors by hand: GCC left this select scalar and branching (a mispredicted branch per dropped
        // element).
        using V = cpu::vec::Vec<T>;
        using I = typename cpu::vec::Simd<T>::I;
        constexpr int64_t L = cpu::vec::kLanes<T>;
        int64_t e = 0;
        for (; e + L <= count; e += L) {
          V v;
          std::memcpy(&v, in + e, sizeof(v));
          I w;
          for (int64_t k = 0; k < L; ++k) w[k] = static_cast<int32_t>(c.words[e + k] >> 8);
          V r = w >= limit ? v * scale : V{};
          std::memcpy(out + e, &r, sizeof(r));
        }
        for (; e < count; ++e) out[e] = static_cast<int32_t>(c.words[e] >> 8) >= limit ? in[e] * scale : T(0);
      });
    });
  });
}

}  // namespace loom
