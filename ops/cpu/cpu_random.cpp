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
#include "loom/ops/cpu/cpu_philox.h"
#include "loom/ops/cpu/vec_math.h"

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

// chunk.words = the kChunkBlocks blocks from counter offset + first on.
void fill_chunk(PhiloxState state, int64_t first, Chunk& chunk) {
  cpu::philox_blocks(state.seed, state.offset + static_cast<uint64_t>(first), kChunkBlocks, chunk.words);
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
  const uint32_t threshold = dropout_threshold(p);
  generate_into(out, [&](const Tensor& t) {
    LOOM_DISPATCH_FLOATING(t.dtype(), "dropout", [&] {
      using T = scalar_t;
      const T* x = src.data<T>();
      T* o = t.data<T>();
      const T scale = dropout_scale<T>(p);
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
