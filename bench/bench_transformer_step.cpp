// One training step of the baseline Transformer language model: forward, loss, backward, AdamW update.
// The configuration matches bench/pytorch/transformer_step.py, which times PyTorch on the same machine:
// byte vocabulary (256), d_model 256, 4 pre-norm blocks, 4 heads, MLP 1024, sequence 512, batch 8, no dropout.
// Counters: tokens/s, FLOP/s (model FLOPs: 6 per parameter-token plus the attention products), and the
// allocator's peak bytes during a step.
#include <benchmark/benchmark.h>

#include "loom/loom.h"
#include "loom/models/transformer_lm/transformer_lm.h"

namespace {

void BM_TransformerTrainStep(benchmark::State& state) {
  const int64_t vocab = 256, d = 256, layers = 4, heads = 4, seq = state.range(0), batch = 8;
  loom::manual_seed(0);
  loom::models::TransformerLmConfig cfg;
  cfg.vocab_size = vocab;
  cfg.d_model = d;
  cfg.layers = layers;
  cfg.heads = heads;
  cfg.max_seq = seq;
  cfg.dropout = 0.0;
  loom::models::TransformerLm model(cfg);
  loom::nn::AdamOptions adam;
  adam.lr = 3e-4;
  loom::nn::AdamW optimizer(model.named_parameters(), adam);
  loom::Tensor x = loom::randint(0, vocab, {batch, seq});
  loom::Tensor y = loom::randint(0, vocab, {batch, seq});
  auto step = [&] {
    loom::Tensor loss = model.loss(x, y);
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
    return loss;
  };
  step();  // warm the allocator caches
  loom::reset_peak_memory();
  int64_t base = loom::memory_stats().current_bytes;
  for (auto _ : state) benchmark::DoNotOptimize(step().data_ptr());
  double tokens = static_cast<double>(batch * seq);
  // Non-embedding parameters (the position table and the token lookup do no multiply-adds) plus the head.
  double params = static_cast<double>(model.num_parameters() - (vocab + seq) * d);
  double attention = 2.0 * 2.0 * static_cast<double>(layers * seq * d);  // QK^T and AV per token, forward
  double flops_per_token = 6 * params + 3 * attention;
  state.counters["tokens/s"] = benchmark::Counter(tokens, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["FLOP/s"] = benchmark::Counter(tokens * flops_per_token, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["peak_bytes"] = static_cast<double>(loom::memory_stats().peak_bytes - base);
}

}  // namespace

BENCHMARK(BM_TransformerTrainStep)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(5.0);
