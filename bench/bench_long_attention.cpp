// Attention over long sequences, 1K to 64K tokens: what each of Loom's attention primitives costs in time and
// in memory as the sequence grows. One example, 2 heads of 64 (d = 64 per head, as the papers), float32,
// non-causal; forward alone and forward + backward (the gradient of sum(out * probe) with respect to every
// input).
//   Dense/fused     scaled_dot_product_attention (tiled, never holds [L, L]): quadratic time, linear memory
//   Dense/unfused   matmul, softmax, matmul: the [L, L] scores held for the backward, quadratic memory
//   LSH             lsh_attention, shared QK, chunk 64 or 128 with one chunk of look-back, 1, 2 or 4 rounds
//   Local           local_attention, chunk 128 with one chunk of look-back
//   BlockSelfAttn   nn::BiBlockSelfAttention (Bi-BloSA, d_in = d = 64, the block length rule r = ceil((2n)^1/3))
// Counters: tokens/s, and peak_bytes: the allocator's high-water mark during the timed iterations above what
// was live before them (the inputs). bench/long_attention_slopes.py turns a JSON run into log-log slopes.
#include <benchmark/benchmark.h>

#include <cmath>

#include "loom/loom.h"

namespace {

constexpr int64_t kHeads = 2, kHeadDim = 64;

struct Inputs {
  loom::Tensor q, k, v, probe;
};

Inputs make_inputs(int64_t len, bool requires_grad) {
  loom::manual_seed(0);
  Inputs in;
  in.q = loom::randn({1, kHeads, len, kHeadDim});
  in.k = loom::randn({1, kHeads, len, kHeadDim});
  in.v = loom::randn({1, kHeads, len, kHeadDim});
  in.probe = loom::randn({1, kHeads, len, kHeadDim});
  if (requires_grad)
    for (loom::Tensor* t : {&in.q, &in.k, &in.v}) t->requires_grad_();
  return in;
}

// Times `step` (one forward, or forward + backward), reporting tokens/s and peak bytes. `clear` drops the
// gradients a step leaves, so that after the warm-up they count in the peak, not in the base.
template <typename Step, typename Clear>
void measure(benchmark::State& state, int64_t len, Step step, Clear clear) {
  step();  // warm the allocator caches
  clear();
  loom::reset_peak_memory();
  const int64_t base = loom::memory_stats().current_bytes;
  for (auto _ : state) benchmark::DoNotOptimize(step().data_ptr());
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(len), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["peak_bytes"] = static_cast<double>(loom::memory_stats().peak_bytes - base);
}

// Runs `attend` once per iteration (and its backward when kBackward).
template <bool kBackward, typename Attend>
void run(benchmark::State& state, Inputs& in, int64_t len, Attend attend) {
  auto clear = [&] {
    for (loom::Tensor* t : {&in.q, &in.k, &in.v}) t->set_grad(loom::Tensor());
  };
  measure(state, len, [&] {
    loom::Tensor out = attend(in);
    if (kBackward) {
      clear();
      out.backward(in.probe);
    }
    return out;
  }, clear);
}

template <bool kBackward>
void BM_DenseFused(benchmark::State& state) {
  const int64_t len = state.range(0);
  Inputs in = make_inputs(len, kBackward);
  run<kBackward>(state, in, len, [](const Inputs& x) { return loom::scaled_dot_product_attention(x.q, x.k, x.v); });
}

template <bool kBackward>
void BM_DenseUnfused(benchmark::State& state) {
  const int64_t len = state.range(0);
  Inputs in = make_inputs(len, kBackward);
  run<kBackward>(state, in, len, [](const Inputs& x) {
    loom::Tensor scores = loom::matmul(loom::div(x.q, std::sqrt(static_cast<double>(kHeadDim))), x.k.transpose(-2, -1));
    return loom::matmul(loom::softmax(scores, -1), x.v);
  });
}

// Args: length, chunk length, rounds. Shared QK: the q tensor is both queries and keys.
template <bool kBackward>
void BM_Lsh(benchmark::State& state) {
  const int64_t len = state.range(0);
  loom::LshAttentionOptions opts;
  opts.chunk_len = state.range(1);
  opts.n_hashes = state.range(2);
  opts.seed = 1;
  opts.has_seed = true;
  Inputs in = make_inputs(len, kBackward);
  run<kBackward>(state, in, len, [&](const Inputs& x) { return loom::lsh_attention(x.q, x.v, opts).out; });
}

template <bool kBackward>
void BM_Local(benchmark::State& state) {
  const int64_t len = state.range(0);
  Inputs in = make_inputs(len, kBackward);
  run<kBackward>(state, in, len, [](const Inputs& x) { return loom::local_attention(x.q, x.k, x.v, 128, 1, 0); });
}

// Bi-BloSA over x [1, L, 64], its own projections included; the backward reaches x and every parameter.
template <bool kBackward>
void BM_BlockSelfAttention(benchmark::State& state) {
  const int64_t len = state.range(0);
  loom::manual_seed(0);
  loom::nn::BiBlockSelfAttention layer(kHeadDim, kHeadDim);
  loom::Tensor x = loom::randn({1, len, kHeadDim});
  loom::Tensor probe = loom::randn({1, len, 2 * kHeadDim});
  if (kBackward) x.requires_grad_();
  // zero_grad drops the parameters' gradients each step: they count in the peak, as the activations do.
  measure(state, len, [&] {
    loom::Tensor out = layer.forward(x);
    if (kBackward) {
      x.set_grad(loom::Tensor());
      layer.zero_grad();
      out.backward(probe);
    }
    return out;
  }, [&] { x.set_grad(loom::Tensor()); });
}

// 1K, 2K, ..., up to `max_len`.
void lengths(benchmark::internal::Benchmark* b, int64_t max_len) {
  for (int64_t len = 1024; len <= max_len; len *= 2) b->Args({len});
  b->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.3);
}

void lsh_shapes(benchmark::internal::Benchmark* b) {
  for (int64_t chunk : {64, 128})
    for (int64_t rounds : {1, 2, 4})
      for (int64_t len = 1024; len <= 65536; len *= 2) b->Args({len, chunk, rounds});
  b->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.3);
}

}  // namespace

// Dense attention is quadratic in time: 16K tokens already take seconds a step, so the sweep stops there (and at
// 8K for the unfused form, whose [L, L] scores, probabilities and their gradients reach gigabytes).
BENCHMARK(BM_DenseFused<false>)->Name("Dense/fused/forward")->Apply([](auto* b) { lengths(b, 16384); });
BENCHMARK(BM_DenseFused<true>)->Name("Dense/fused/forward_backward")->Apply([](auto* b) { lengths(b, 16384); });
BENCHMARK(BM_DenseUnfused<false>)->Name("Dense/unfused/forward")->Apply([](auto* b) { lengths(b, 8192); });
BENCHMARK(BM_DenseUnfused<true>)->Name("Dense/unfused/forward_backward")->Apply([](auto* b) { lengths(b, 8192); });
BENCHMARK(BM_Lsh<false>)->Name("LSH/forward")->ArgNames({"len", "chunk", "rounds"})->Apply(lsh_shapes);
BENCHMARK(BM_Lsh<true>)->Name("LSH/forward_backward")->ArgNames({"len", "chunk", "rounds"})->Apply(lsh_shapes);
BENCHMARK(BM_Local<false>)->Name("Local/forward")->Apply([](auto* b) { lengths(b, 65536); });
BENCHMARK(BM_Local<true>)->Name("Local/forward_backward")->Apply([](auto* b) { lengths(b, 65536); });
BENCHMARK(BM_BlockSelfAttention<false>)->Name("BlockSelfAttn/forward")->Apply([](auto* b) { lengths(b, 65536); });
BENCHMARK(BM_BlockSelfAttention<true>)->Name("BlockSelfAttn/forward_backward")->Apply([](auto* b) { lengths(b, 65536); });
