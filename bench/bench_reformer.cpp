// One training step (forward, cross-entropy, backward, AdamW update) of ReformerLM over sequence length and
// depth, against the dense TransformerLm baseline (issue 6). bench/pytorch/reformer_lm.py runs the same model in
// PyTorch, written after reformer-pytorch's ReformerLM, whose defaults this configuration mirrors:
//   byte vocabulary (256), d_model 256, 4 heads of 64, every layer LSH (shared QK, causal, chunk 64 = bucket
//   size, one chunk of look-back, 2 hash rounds, L / 64 buckets: reformer-pytorch's count, factorised above 128
//   so that hashing stays O(L)), feed-forward 4 x 256 with GELU, no dropout, LayerNorm eps 1e-5, axial
//   positions over the grid (L / 64, 64) (reformer-pytorch's default shape; Loom concatenates 64 + 192
//   columns where reformer-pytorch sums two 256-wide tables), reversible stack, batch 1.
//   Memory knobs: feed-forward chunk 4096 positions and loss-head chunk 4096 positions (both off at 4K).
// Known architectural difference: ReformerLM ends with concat(y1, y2) -> LayerNorm(512) -> Linear(512, 256)
// (trax / HF); reformer-pytorch averages the two streams -> LayerNorm(256) -> Linear(256, 256).
//
//   Reformer/Length/<L>   6 layers, L = 4K, 16K, 64K
//   Reformer/Depth/<n>    n = 2 .. 12 layers at 4K
//   Dense/Length/<L>      models::TransformerLm, 6 layers, d 256, 4 heads, MLP 1024, learned positions; its
//                         attention is the fused causal kernel (never holds [L, L]); 1K .. 8K
//   Reformer/Long/<L>     one step at 2^17 .. 2^20 (Iterations(1)): the longest trainable length
//   Part/{LSHLayer,FeedForward}/<L>   one branch alone, forward + backward: where the memory goes
//
// Method (measure()): a warm-up step on a short sequence creates the gradients and AdamW's state (the model's
// own footprint), the allocator cache is emptied and glibc trimmed; then one untimed step at full length is the
// memory step, split into phases, and the timed iterations follow (for Long, the memory step is the timed one).
// Counters:
//   peak_bytes      Loom allocator high-water mark above what was live before the full-length steps
//                   (parameters, gradients, AdamW state, the token tensors)
//   peak_rss        growth of the process's peak resident set (VmHWM, reset through /proc/self/clear_refs)
//                   over its resident set before the memory step: allocator slack and cached blocks included
//   rss_before      that resident set (the footprint: libraries, parameters, gradients, AdamW state)
//   fwd_peak, bwd_peak, opt_peak   the allocator's peak above the base within each phase of the memory step
//   fwd_s, bwd_s, opt_s            seconds of each phase of the memory step
//   tokens/s
#include <benchmark/benchmark.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <string>

#include "loom/loom.h"
#include "loom/models/reformer/reformer_lm.h"
#include "loom/models/transformer_lm/transformer_lm.h"
#include "loom/nn/chunked_feed_forward.h"
#include "loom/nn/lsh_attention.h"
#include "op_profile.h"
#include "reformer_bench_config.h"
#include "step_memory.h"

namespace {

constexpr int64_t kVocab = loom::bench::kReformerVocab, kWidth = loom::bench::kReformerWidth,
                  kHeads = loom::bench::kReformerHeads, kWarmupLen = 256;

using loom::bench::reformer_config;

// A model, its optimizer and a step split into phases.
struct Trainer {
  std::function<loom::Tensor(const loom::Tensor&, const loom::Tensor&)> loss;
  std::shared_ptr<loom::nn::Module> model;
  std::unique_ptr<loom::nn::AdamW> optimizer;

  void make_optimizer() {
    loom::nn::AdamOptions adam;
    adam.lr = 1e-4;
    adam.weight_decay = 0.01;
    optimizer = std::make_unique<loom::nn::AdamW>(model->named_parameters(), adam);
  }
  loom::Tensor step(const loom::Tensor& x, const loom::Tensor& y) {
    loom::Tensor l = loss(x, y);
    optimizer->zero_grad();
    l.backward();
    optimizer->step();
    return l;
  }
};

Trainer reformer(int64_t len, int64_t layers) {
  auto m = std::make_shared<loom::models::ReformerLM>(reformer_config(len, layers));
  Trainer t;
  t.model = m;
  t.loss = [m](const loom::Tensor& x, const loom::Tensor& y) { return m->loss(x, y); };
  t.make_optimizer();
  return t;
}

Trainer dense(int64_t len, int64_t layers) {
  loom::models::TransformerLmConfig c;
  c.vocab_size = kVocab;
  c.d_model = kWidth;
  c.layers = layers;
  c.heads = kHeads;
  c.max_seq = len;
  c.dropout = 0.0;
  auto m = std::make_shared<loom::models::TransformerLm>(c);
  Trainer t;
  t.model = m;
  t.loss = [m](const loom::Tensor& x, const loom::Tensor& y) { return m->loss(x, y); };
  t.make_optimizer();
  return t;
}

// See the file comment. timed_memory_step: the memory step is the (single) timed iteration.
void measure(benchmark::State& state, Trainer& t, int64_t len, bool timed_memory_step) {
  loom::manual_seed(0);
  const loom::Tensor warm_x = loom::randint(0, kVocab, {1, kWarmupLen}), warm_y = loom::randint(0, kVocab, {1, kWarmupLen});
  const loom::Tensor x = loom::randint(0, kVocab, {1, len}), y = loom::randint(0, kVocab, {1, len});
  t.step(warm_x, warm_y);  // gradients and AdamW state exist from here on: the model's footprint
  const loom::bench::StepMemory m = loom::bench::StepMemory::begin();
  auto phases = [&] {
    return m.phases(
        state, [&] { return t.loss(x, y); }, [&] { t.optimizer->zero_grad(); }, [&] { t.optimizer->step(); });
  };
  int64_t peak = 0;
  if (timed_memory_step) {
    for (auto _ : state) {
      auto [l, phase_peak] = phases();
      benchmark::DoNotOptimize(l.data_ptr());
      peak = phase_peak;
    }
  } else {
    peak = phases().second;
    loom::reset_peak_memory();
    for (auto _ : state) benchmark::DoNotOptimize(t.step(x, y).data_ptr());
    peak = std::max(peak, loom::memory_stats().peak_bytes - m.base);
  }
  m.finish(state, peak);
  loom::bench::profile_step_if_asked("length " + std::to_string(len), [&] { t.step(x, y); });
  state.counters["threads"] = loom::get_num_threads();
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(len), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_ReformerLength(benchmark::State& state) {
  Trainer t = reformer(state.range(0), 6);
  measure(state, t, state.range(0), false);
}

void BM_ReformerDepth(benchmark::State& state) {
  Trainer t = reformer(4096, state.range(0));
  measure(state, t, 4096, false);
}

void BM_ReformerLong(benchmark::State& state) {
  Trainer t = reformer(state.range(0), 6);
  measure(state, t, state.range(0), true);
}

void BM_DenseLength(benchmark::State& state) {
  Trainer t = dense(state.range(0), 6);
  measure(state, t, state.range(0), false);
}

// Where the memory goes: one layer's branch alone, forward + backward on x [1, L, 256] (gradients to x and the
// branch's parameters), with the model's options. Counters: peak_bytes above the inputs and parameters.
template <typename Layer>
void part(benchmark::State& state, Layer& layer, int64_t len) {
  loom::manual_seed(0);
  loom::Tensor x = loom::randn({1, len, kWidth}).requires_grad_(), probe = loom::randn({1, len, kWidth});
  auto step = [&] {
    x.set_grad(loom::Tensor());
    layer.zero_grad();
    loom::Tensor out = layer.forward(x);
    out.backward(probe);
    return out;
  };
  step();
  x.set_grad(loom::Tensor());
  layer.zero_grad();
  loom::reset_peak_memory();
  const int64_t base = loom::memory_stats().current_bytes;
  for (auto _ : state) benchmark::DoNotOptimize(step().data_ptr());
  state.counters["peak_bytes"] = static_cast<double>(loom::memory_stats().peak_bytes - base);
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(len), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_PartLsh(benchmark::State& state) {
  const int64_t len = state.range(0);
  const loom::models::ReformerConfig c = reformer_config(len, 1);
  loom::nn::LSHSelfAttention layer(loom::models::lsh_attention_options(c));
  part(state, layer, len);
}

void BM_PartFeedForward(benchmark::State& state) {
  const int64_t len = state.range(0);
  const loom::models::ReformerConfig c = reformer_config(len, 1);
  loom::nn::ChunkedFeedForward layer(loom::models::feed_forward_options(c));
  part(state, layer, len);
}

}  // namespace

BENCHMARK(BM_PartLsh)->Name("Part/LSHLayer")->Arg(16384)->Arg(65536)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_PartFeedForward)->Name("Part/FeedForward")->Arg(16384)->Arg(65536)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

// Iterations are fixed: a step takes seconds, and each configuration runs a warm-up and a memory step first.
BENCHMARK(BM_ReformerLength)->Name("Reformer/Length")->Arg(1024)->Arg(4096)->Iterations(5)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ReformerLength)->Name("Reformer/Length")->Arg(16384)->Iterations(3)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ReformerLength)->Name("Reformer/Length")->Arg(65536)->Iterations(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ReformerDepth)
    ->Name("Reformer/Depth")
    ->Arg(2)->Arg(4)->Arg(6)->Arg(8)->Arg(12)
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_DenseLength)->Name("Dense/Length")->Arg(1024)->Arg(2048)->Arg(4096)->Iterations(3)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_DenseLength)->Name("Dense/Length")->Arg(8192)->Iterations(2)->Unit(benchmark::kMillisecond)->UseRealTime();
// Very long sequences: one step each, for the peak (and the time of that one step). Run them one per process
// (--benchmark_filter=Reformer/Long/262144/) so that peak_rss is that length's alone, under a memory limit
// (ulimit -v): the step needs about 15 KB per token, so 2^20 fits in 16 GB (15.7 GB above the footprint, 16.7 GB
// resident).
BENCHMARK(BM_ReformerLong)
    ->Name("Reformer/Long")
    ->Arg(1 << 17)->Arg(1 << 18)->Arg(3 << 17)->Arg(1 << 19)->Arg(1 << 20)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
