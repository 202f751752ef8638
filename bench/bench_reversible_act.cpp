// Reversible stacks against plain ones, and ACT's compact loop against computing every position every step.
//
// Stack/{Reversible,Plain}/<depth>: one training step (forward + backward) of a stack of (F, G) blocks,
// F = G = LayerNorm -> Linear(256, 256) -> GELU -> Linear(256, 256), on [1, 4096, 256] float32 (the memory
// test's configuration). Counters: peak_bytes, the allocator's high-water mark above what was live before the
// step (parameters and their grad buffers included in the base, as in a training loop that keeps them).
//
// Act/{Compact,Dense}/<backward>: one weight-shared pre-norm TransformerBlock (d 256, 4 heads, MLP 1024) as
// the step of ACT with max 8 steps on [2, 512, 256] float32. Halting is injected so that one position in
// seven ponders the full 8 steps and the rest halt after one: mean ponder time 2 of 8, and the loop runs all
// 8 iterations (the batch's slowest position decides). Compact gathers the running positions and computes
// their queries, attention and MLP only (keys and values of every position are still projected each step);
// Dense computes every position at every step (T2T's cost) with the same results. Target: Compact <= 0.5x
// Dense. Counters: ponder (mean N), iterations, peak_bytes.
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "loom/loom.h"

namespace {

std::shared_ptr<loom::nn::Module> branch(int64_t d) {
  return std::make_shared<loom::nn::Sequential>(std::initializer_list<std::shared_ptr<loom::nn::Module>>{
      std::make_shared<loom::nn::LayerNorm>(d), std::make_shared<loom::nn::Linear>(d, d),
      std::make_shared<loom::nn::GELU>(), std::make_shared<loom::nn::Linear>(d, d)});
}

template <bool kReversible>
void BM_Stack(benchmark::State& state) {
  const int64_t depth = state.range(0), d = 256, len = 4096;
  loom::manual_seed(0);
  loom::nn::ReversibleSequence stack;
  for (int64_t i = 0; i < depth; ++i) stack.push_back(branch(d), branch(d));
  for (const loom::Tensor& p : stack.parameters()) p.set_grad(loom::zeros_like(p));
  loom::Tensor x = loom::randn({1, len, d}), c = loom::randn({1, len, d});
  auto step = [&] {
    loom::Tensor xr = x.detach().requires_grad_();
    loom::Tensor y1 = xr, y2 = xr;
    if (kReversible) {
      loom::ReversibleOutput y = stack.forward(xr, xr);
      y1 = y.y1, y2 = y.y2;
    } else {
      for (size_t l = 0; l < stack.size(); ++l) {
        y1 = y1 + stack[l]->f->forward(y2);
        y2 = y2 + stack[l]->g->forward(y1);
      }
    }
    loom::Tensor loss = loom::sum((y1 + y2) * c);
    y1 = y2 = loom::Tensor();
    loss.backward();
    return loss;
  };
  step();  // warm the allocator caches
  loom::reset_peak_memory();
  const int64_t base = loom::memory_stats().current_bytes;
  for (auto _ : state) benchmark::DoNotOptimize(step().data_ptr());
  state.counters["peak_bytes"] = static_cast<double>(loom::memory_stats().peak_bytes - base);
}

template <bool kCompact>
void BM_Act(benchmark::State& state) {
  const bool backward = state.range(0) != 0;
  const int64_t B = 2, L = 512, d = 256, max_steps = 8;
  loom::manual_seed(0);
  loom::nn::TransformerBlockOptions bo;
  bo.d_model = d;
  bo.num_heads = 4;
  auto block = std::make_shared<loom::nn::TransformerBlock>(bo);
  std::vector<double> p(static_cast<size_t>(B * L));
  for (size_t i = 0; i < p.size(); ++i) p[i] = i % 7 == 0 ? 0.1 : 1.0;  // 8 steps (forced at the cap) or 1
  loom::Tensor probs = loom::tensor(p, {B * L}).to(loom::kFloat32);
  loom::ActOptions o;
  o.max_steps = max_steps;
  o.compact = kCompact;
  auto halting = [probs](const loom::Tensor&, const loom::Tensor& rows, int64_t) {
    return loom::index_select(probs, 0, rows);
  };
  loom::Tensor x = loom::randn({B, L, d});
  loom::ActResult last;
  auto run = [&] {
    if (backward)
      for (const loom::Tensor& w : block->parameters()) w.set_grad(loom::Tensor());
    loom::GradModeGuard mode(backward);  // forward only: nothing recorded
    last = loom::adaptive_computation_time(x, loom::nn::transformer_act_step(block), halting, o);
    if (backward) (loom::sum(last.output) + last.ponder_cost).backward();
    return last.output;
  };
  run();
  loom::reset_peak_memory();
  const int64_t base = loom::memory_stats().current_bytes;
  for (auto _ : state) benchmark::DoNotOptimize(run().data_ptr());
  state.counters["peak_bytes"] = static_cast<double>(loom::memory_stats().peak_bytes - base);
  state.counters["ponder"] = loom::mean(last.steps.to(loom::kFloat64)).item<double>();
  state.counters["iterations"] = static_cast<double>(last.iterations);
}

}  // namespace

BENCHMARK(BM_Stack<true>)
    ->Name("Stack/Reversible")
    ->Arg(2)
    ->Arg(6)
    ->Arg(12)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Stack<false>)
    ->Name("Stack/Plain")
    ->Arg(2)
    ->Arg(6)
    ->Arg(12)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Act<true>)
    ->Name("Act/Compact")
    ->ArgName("backward")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Act<false>)
    ->Name("Act/Dense")
    ->ArgName("backward")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
