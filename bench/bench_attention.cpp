// Causal self-attention of one layer: the fused scaled_dot_product_attention (tiled, online softmax, no [L,
// L] scores) against the composed path MultiheadAttention uses for weights (matmul, masked softmax, matmul).
// Args: batch, sequence length; 4 heads of 64, float32. Forward alone, and forward + backward; and forward +
// backward with attention dropout 0.1 (the fused op regenerates its mask in the kernels, the composed path
// drops explicit weights), also at a Universal Transformer training shape (batch 64, length 48).
// Counters: FLOP/s of the causal products (forward 2 B H L^2 D: QK^T and PV, each halved by the mask; forward
// + backward 3.5 times that, FlashAttention's convention, which does not count the backward's recomputation),
// and peak_bytes: the allocator's high-water mark above what was live before the loop.
#include <benchmark/benchmark.h>

#include <cmath>

#include "loom/loom.h"

namespace {

constexpr int64_t kHeads = 4, kHeadDim = 64;

struct Inputs {
  loom::Tensor q, k, v, grad, causal;
};

Inputs make_inputs(int64_t batch, int64_t len, bool requires_grad) {
  loom::manual_seed(0);
  Inputs in;
  in.q = loom::randn({batch, kHeads, len, kHeadDim});
  in.k = loom::randn({batch, kHeads, len, kHeadDim});
  in.v = loom::randn({batch, kHeads, len, kHeadDim});
  in.grad = loom::randn({batch, kHeads, len, kHeadDim});
  in.causal = loom::gt(loom::arange(static_cast<double>(len)).view({1, len}),
                       loom::arange(static_cast<double>(len)).view({len, 1}));
  if (requires_grad)
    for (loom::Tensor* t : {&in.q, &in.k, &in.v}) t->requires_grad_();
  return in;
}

constexpr double kDropout = 0.1;

loom::Tensor fused(const Inputs& in, double dropout) {
  return loom::scaled_dot_product_attention(in.q, in.k, in.v, {}, true, 0, dropout);
}

loom::Tensor unfused(const Inputs& in, double dropout) {
  loom::Tensor scores = loom::matmul(loom::div(in.q, std::sqrt(static_cast<double>(kHeadDim))), in.k.transpose(-2, -1));
  loom::Tensor weights = loom::softmax(scores, -1, in.causal);
  return loom::matmul(dropout > 0 ? loom::dropout(weights, dropout) : weights, in.v);
}

template <bool kFused, bool kBackward, bool kWithDropout = false>
void BM_CausalAttention(benchmark::State& state) {
  const int64_t batch = state.range(0), len = state.range(1);
  Inputs in = make_inputs(batch, len, kBackward);
  const double dropout = kWithDropout ? kDropout : 0.0;
  auto step = [&] {
    loom::Tensor out = kFused ? fused(in, dropout) : unfused(in, dropout);
    if (kBackward) {
      for (loom::Tensor* t : {&in.q, &in.k, &in.v}) t->set_grad(loom::Tensor());
      out.backward(in.grad);
    }
    return out;
  };
  step();  // warm the allocator caches
  for (loom::Tensor* t : {&in.q, &in.k, &in.v}) t->set_grad(loom::Tensor());  // counted in the peak, not the base
  loom::reset_peak_memory();
  const int64_t base = loom::memory_stats().current_bytes;
  for (auto _ : state) benchmark::DoNotOptimize(step().data_ptr());
  double forward = 2.0 * static_cast<double>(batch * kHeads * len * len * kHeadDim);
  state.counters["FLOP/s"] =
      benchmark::Counter(kBackward ? 3.5 * forward : forward, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["peak_bytes"] = static_cast<double>(loom::memory_stats().peak_bytes - base);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->Args({8, 512})->Args({1, 2048})->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
}

void dropout_shapes(benchmark::internal::Benchmark* b) {
  b->Args({64, 48})->Args({8, 512})->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
}

// Small problems with 4 heads of 32, not causal: `queries` rows against `keys` keys per sequence, forward +
// backward of the fused op (dropout off, then 0.1). The Universal Transformer's ACT step attends from the few
// positions still running (4 of 64 per sequence late in the loop) to all of them, and its training batches
// are 64 sequences of up to 41 tokens; tiles this small are where the kernels' thread count matters (one
// worker below 32K multiply-adds per tile product). Args: batch, queries, keys. Counter: FLOP/s of the
// forward's two products (4 B H queries keys D), times 3.5 as above.
template <bool kWithDropout>
void BM_SmallHeads(benchmark::State& state) {
  constexpr int64_t kSmallHeadDim = 32;
  const int64_t batch = state.range(0), queries = state.range(1), keys = state.range(2);
  loom::manual_seed(0);
  loom::Tensor q = loom::randn({batch, kHeads, queries, kSmallHeadDim}).requires_grad_();
  loom::Tensor k = loom::randn({batch, kHeads, keys, kSmallHeadDim}).requires_grad_();
  loom::Tensor v = loom::randn({batch, kHeads, keys, kSmallHeadDim}).requires_grad_();
  loom::Tensor grad = loom::randn({batch, kHeads, queries, kSmallHeadDim});
  auto step = [&] {
    loom::Tensor out =
        loom::scaled_dot_product_attention(q, k, v, {}, false, 0, kWithDropout ? kDropout : 0.0);
    for (loom::Tensor* t : {&q, &k, &v}) t->set_grad(loom::Tensor());
    out.backward(grad);
    return out;
  };
  step();
  for (auto _ : state) benchmark::DoNotOptimize(step().data_ptr());
  const double forward = 4.0 * static_cast<double>(batch * kHeads * queries * keys * kSmallHeadDim);
  state.counters["FLOP/s"] = benchmark::Counter(3.5 * forward, benchmark::Counter::kIsIterationInvariantRate);
}

void small_shapes(benchmark::internal::Benchmark* b) {
  b->Args({32, 4, 64})->Args({32, 16, 64})->Args({32, 64, 64})->Args({64, 16, 16})->Args({64, 41, 41});
  b->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
}

}  // namespace

BENCHMARK(BM_SmallHeads<false>)->Name("SmallHeads/forward_backward")->Apply(small_shapes);
BENCHMARK(BM_SmallHeads<true>)->Name("SmallHeadsDropout/forward_backward")->Apply(small_shapes);
BENCHMARK(BM_CausalAttention<true, false>)->Name("Fused/forward")->Apply(shapes);
BENCHMARK(BM_CausalAttention<false, false>)->Name("Unfused/forward")->Apply(shapes);
BENCHMARK(BM_CausalAttention<true, true>)->Name("Fused/forward_backward")->Apply(shapes);
BENCHMARK(BM_CausalAttention<false, true>)->Name("Unfused/forward_backward")->Apply(shapes);
BENCHMARK(BM_CausalAttention<true, true, true>)->Name("FusedDropout/forward_backward")->Apply(dropout_shapes);
BENCHMARK(BM_CausalAttention<false, true, true>)
    ->Name("UnfusedDropout/forward_backward")
    ->Apply(dropout_shapes);
