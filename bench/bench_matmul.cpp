// Matrix multiply: loom::matmul against a plain cblas_sgemm call on the same data, same threads.
// Counters: FLOP/s (2 n^3 per product). Target: Loom within 5% of raw OpenBLAS from n = 1024.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include "loom/loom.h"

namespace {

void set_flops(benchmark::State& state, int64_t n) {
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * n * n * n, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_LoomMatmul(benchmark::State& state) {
  int64_t n = state.range(0);
  loom::manual_seed(0);
  loom::Tensor a = loom::randn({n, n}), b = loom::randn({n, n});
  for (auto _ : state) {
    loom::Tensor c = loom::matmul(a, b);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  set_flops(state, n);
}

void BM_RawSgemm(benchmark::State& state) {
  int64_t n = state.range(0);
  loom::manual_seed(0);
  loom::Tensor a = loom::randn({n, n}), b = loom::randn({n, n}), c = loom::empty({n, n});
  openblas_set_num_threads(loom::get_num_threads());
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data<float>(), n, b.data<float>(), n, 0.0f,
                c.data<float>(), n);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  set_flops(state, n);
}

// Many small products, as attention heads make: [64 heads] x (128 x 64) @ (64 x 128).
void BM_LoomBatchedMatmul(benchmark::State& state) {
  int64_t batch = state.range(0), m = 128, k = 64;
  loom::Tensor a = loom::randn({batch, m, k}), b = loom::randn({batch, k, m});
  for (auto _ : state) {
    loom::Tensor c = loom::matmul(a, b);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  state.counters["FLOP/s"] =
      benchmark::Counter(2.0 * batch * m * m * k, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(BM_LoomMatmul)->RangeMultiplier(2)->Range(256, 4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_RawSgemm)->RangeMultiplier(2)->Range(256, 4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LoomBatchedMatmul)->Arg(64)->Unit(benchmark::kMicrosecond)->UseRealTime();
