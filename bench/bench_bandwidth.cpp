// Bandwidth-bound ops against a plain copy loop over the same bytes, all on Loom's thread pool.
// Counters: bytes/s (bytes read + written per iteration). Target: each op at 70% or more of the copy loop.
#include <benchmark/benchmark.h>

#include <cstring>

#include "loom/loom.h"

namespace {

void set_bytes(benchmark::State& state, int64_t bytes) {
  state.counters["bytes/s"] = benchmark::Counter(static_cast<double>(bytes), benchmark::Counter::kIsIterationInvariantRate);
}

// The reference: memcpy of n floats split over the same threads Loom uses (read n, write n).
void BM_CopyLoop(benchmark::State& state) {
  int64_t n = state.range(0);
  loom::Tensor src = loom::rand({n}), dst = loom::empty({n});
  const float* s = src.data<float>();
  float* d = dst.data<float>();
  for (auto _ : state) {
    loom::parallel_for(0, n, 1 << 16, [&](int64_t lo, int64_t hi) {
      std::memcpy(d + lo, s + lo, static_cast<size_t>(hi - lo) * sizeof(float));
    });
    benchmark::ClobberMemory();
  }
  set_bytes(state, 2 * n * 4);
}

// The same traffic through Loom: contiguous clone (read n, write n).
void BM_Clone(benchmark::State& state) {
  int64_t n = state.range(0);
  loom::Tensor x = loom::rand({n});
  for (auto _ : state) {
    loom::Tensor y = x.clone();
    benchmark::DoNotOptimize(y.data_ptr());
  }
  set_bytes(state, 2 * n * 4);
}

void BM_Add(benchmark::State& state) {
  int64_t n = state.range(0);
  loom::Tensor a = loom::rand({n}), b = loom::rand({n});
  for (auto _ : state) {
    loom::Tensor c = loom::add(a, b);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  set_bytes(state, 3 * n * 4);
}

// Rows of 1024, as attention rows are.
void BM_Softmax(benchmark::State& state) {
  int64_t n = state.range(0), d = 1024;
  loom::Tensor x = loom::randn({n / d, d});
  for (auto _ : state) {
    loom::Tensor y = loom::softmax(x, -1);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  set_bytes(state, 2 * n * 4);
}

void BM_LayerNorm(benchmark::State& state) {
  int64_t n = state.range(0), d = 1024;
  loom::Tensor x = loom::randn({n / d, d}), w = loom::ones({d}), b = loom::zeros({d});
  for (auto _ : state) {
    loom::Tensor y = loom::layer_norm(x, {d}, w, b);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  set_bytes(state, 2 * n * 4);
}

// Training-mode dropout, p = 0.1: a Philox block per 4 elements on top of the traffic (read n, write n).
void BM_Dropout(benchmark::State& state) {
  int64_t n = state.range(0);
  loom::Tensor x = loom::randn({n});
  for (auto _ : state) {
    loom::Tensor y = loom::dropout(x, 0.1, true);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  set_bytes(state, 2 * n * 4);
}

// where over a random mask (half the elements from each side): read the mask (1 byte) and both sides, write
// the result, 13 bytes an element. A branch per element would mispredict half the time.
void BM_Where(benchmark::State& state) {
  int64_t n = state.range(0);
  loom::Tensor mask = loom::gt(loom::rand({n}), 0.5), a = loom::rand({n}), b = loom::rand({n});
  for (auto _ : state) {
    loom::Tensor y = loom::where(mask, a, b);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  set_bytes(state, 13 * n);
}

}  // namespace

// 16M floats = 64 MiB per operand: far beyond the caches, so these measure DRAM bandwidth.
#define LOOM_BANDWIDTH_BENCH(fn) BENCHMARK(fn)->Arg(1 << 24)->Unit(benchmark::kMillisecond)->UseRealTime()
LOOM_BANDWIDTH_BENCH(BM_CopyLoop);
LOOM_BANDWIDTH_BENCH(BM_Clone);
LOOM_BANDWIDTH_BENCH(BM_Add);
LOOM_BANDWIDTH_BENCH(BM_Softmax);
LOOM_BANDWIDTH_BENCH(BM_LayerNorm);
LOOM_BANDWIDTH_BENCH(BM_Dropout);
LOOM_BANDWIDTH_BENCH(BM_Where);
