// Issue 8: the efficiency claim of Bi-BloSAN (Shen et al., ICLR 2018), measured. Peak training memory and step
// time of three sentence encoders as the sequence grows from 64 to 4096 tokens at a fixed batch
// (shared/research/biblosa.md §5). bench/pytorch/biblosa.py runs the same models in PyTorch, written as the
// reference TF code computes them; bench/biblosa_report.py fits the log-log slopes and writes the table and plot.
//
// The model, built from nn layers directly (not models/biblosa's TextClassifier, so this file depends on nn only):
//   x [B, n, d_e] random embeddings that require no grad (the embedding table's own cost is left out: it does
//   not depend on the encoder) -> encoder -> U [B, n, 2d] -> two-layer Source2Token(2d) -> s [B, 2d]
//   -> Dropout -> Linear(2d, 5) -> cross-entropy against random labels.
// The encoders:
//   biblosa    nn::BiBlockSelfAttention(d_e, d), block length r = BlockSelfAttention::default_block_length(n)
//              = ceil((2n)^1/3), the library rule (spec 2.8)
//   disan      forward and backward nn::DirectionalSelfAttention(d_e, d) over the whole sentence, concatenated
//   multihead  Dropout -> Linear(d_e, 2d) -> nn::MultiheadAttention(2d, 8 heads, attention dropout); with
//              attention dropout on, MultiheadAttention takes its explicit path (the [B, 8, n, n] weights are
//              held for the backward), as PyTorch's does. The reference's sinusoidal positions are left out
//              (an elementwise add of [n, d_e]: no effect on the scaling).
// ReLU as the dense layers' activation (the single-sentence tasks), dropout 0.3 on every dense layer's input
// (keep-prob 0.7, SST's), no padding, float32. One training step = forward, cross-entropy, backward, Adam update.
//
// What to expect: Loom's multi-dimensional attention kernel never stores the [n, n, d] (DiSA) or [m, r, r, d]
// (intra-block) scores, so both use O(B n d) memory; their time is O(B n^2 d) for DiSAN and
// O(B n r d + B (n/r)^2 d) ~ n^4/3 for Bi-BloSA. The TF reference (and bench/pytorch/biblosa.py) materialises
// the score tensors, so there memory follows time: ~n^2 for DiSAN, ~n^4/3 for Bi-BloSA. Multi-head attention
// is O(B h n^2) in both.
//
//   Encoder/<biblosa|disan|multihead>/<n>   n = 64, 128, ..., 4096
//
// Method (measure(), as bench_reformer's): a warm-up step on 16 tokens creates the gradients and Adam's state
// (the model's own footprint), the allocator cache is emptied and glibc trimmed; one untimed step at full length
// is the memory step (split into phases), then the timed iterations follow (1 to 3, fixed per configuration).
// Counters:
//   peak_bytes     Loom allocator high-water mark above what was live before the full-length steps (parameters,
//                  gradients, Adam state, the inputs)
//   peak_rss       growth of the process's peak resident set (VmHWM, reset through /proc/self/clear_refs) over
//                  its resident set before the memory step (comparable with PyTorch's RSS figure)
//   fwd_peak, bwd_peak, opt_peak, fwd_s, bwd_s, opt_s   the memory step's phases
//   step_s         seconds per timed step; tokens/s = B n / step_s
//   block_len      r (biblosa; 0 for the others); batch, d_e, d: the configuration
#include <benchmark/benchmark.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>

#include "loom/loom.h"
#include "step_memory.h"

namespace {

// B and the widths: the whole Loom sweep in a few minutes on 2 cores, and multi-head attention's
// [B, 8, n, n] weights at n = 4096 (0.5 GB each at B = 4) well inside the machine's memory.
constexpr int64_t kBatch = 4, kEmbed = 128, kHidden = 128, kClasses = 5, kHeads = 8, kWarmupLen = 16;
constexpr double kDropout = 0.3;

using loom::Tensor;
namespace nn = loom::nn;

// The encoder, sentence pooling and classifier of the file comment.
class Classifier : public nn::Module {
 public:
  explicit Classifier(const std::string& encoder) : nn::Module("Classifier"), encoder_(encoder) {
    const nn::DenseActivation act = nn::DenseActivation::Relu;
    using loom::AttentionDirection;
    if (encoder == "biblosa") {
      nn::BlockSelfAttentionOptions o;
      o.activation = act;
      o.dropout = kDropout;
      biblosa = register_module("encoder", std::make_shared<nn::BiBlockSelfAttention>(kEmbed, kHidden, o));
    } else if (encoder == "disan") {
      const nn::DirectionalSelfAttentionOptions o{act, kDropout, {}};
      disan_fw = register_module("fw", std::make_shared<nn::DirectionalSelfAttention>(
                                           kEmbed, kHidden, AttentionDirection::Forward, o));
      disan_bw = register_module("bw", std::make_shared<nn::DirectionalSelfAttention>(
                                           kEmbed, kHidden, AttentionDirection::Backward, o));
    } else if (encoder == "multihead") {
      project = register_module("project", std::make_shared<nn::Linear>(kEmbed, 2 * kHidden));
      attention = register_module("attention",
                                  std::make_shared<nn::MultiheadAttention>(2 * kHidden, kHeads, kDropout));
    } else {
      LOOM_FAIL("bench_biblosa: unknown encoder '", encoder, "' (biblosa, disan or multihead)");
    }
    nn::Source2TokenOptions s2t;
    s2t.layers = 2;
    s2t.activation = act;
    s2t.dropout = kDropout;
    pooling = register_module("pooling", std::make_shared<nn::Source2Token>(2 * kHidden, s2t));
    dropout = register_module("dropout", std::make_shared<nn::Dropout>(kDropout));
    classifier = register_module("classifier", std::make_shared<nn::Linear>(2 * kHidden, kClasses));
  }

  // x [B, n, d_e] -> U [B, n, 2d].
  Tensor encode(const Tensor& x) {
    if (biblosa) return biblosa->forward(x);
    if (disan_fw) return loom::cat({disan_fw->forward(x), disan_bw->forward(x)}, -1);
    Tensor h = project->forward(dropout->forward(x));
    return attention->forward(h, h, h);  // training with attention dropout: the explicit path
  }
  Tensor forward(const Tensor& x) override {
    return classifier->forward(dropout->forward(pooling->forward(encode(x), Tensor())));
  }

  std::shared_ptr<nn::BiBlockSelfAttention> biblosa;
  std::shared_ptr<nn::DirectionalSelfAttention> disan_fw, disan_bw;
  std::shared_ptr<nn::Linear> project;
  std::shared_ptr<nn::MultiheadAttention> attention;
  std::shared_ptr<nn::Source2Token> pooling;
  std::shared_ptr<nn::Dropout> dropout;
  std::shared_ptr<nn::Linear> classifier;

 private:
  std::string encoder_;
};

// See the file comment.
void measure(benchmark::State& state, const std::string& encoder) {
  const int64_t len = state.range(0);
  loom::manual_seed(0);
  Classifier model(encoder);
  nn::Adam optimizer(model.named_parameters(), nn::AdamOptions{});  // lr 1e-3 (the reference's exp_SC)
  auto loss_of = [&](const Tensor& x, const Tensor& y) { return loom::cross_entropy(model.forward(x), y); };
  auto step = [&](const Tensor& x, const Tensor& y) {
    Tensor l = loss_of(x, y);
    optimizer.zero_grad();
    l.backward();
    optimizer.step();
    return l;
  };

  const Tensor warm_x = loom::randn({kBatch, kWarmupLen, kEmbed}),
               warm_y = loom::randint(0, kClasses, {kBatch});
  const Tensor x = loom::randn({kBatch, len, kEmbed}), y = loom::randint(0, kClasses, {kBatch});
  step(warm_x, warm_y);  // gradients and Adam state exist from here on: the model's footprint
  const loom::bench::StepMemory m = loom::bench::StepMemory::begin();
  int64_t peak =
      m.phases(
           state, [&] { return loss_of(x, y); }, [&] { optimizer.zero_grad(); }, [&] { optimizer.step(); })
          .second;
  loom::reset_peak_memory();
  double timed = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(step(x, y).data_ptr());
    timed += loom::bench::seconds_since(t0);
  }
  peak = std::max(peak, loom::memory_stats().peak_bytes - m.base);
  m.finish(state, peak);
  const double steps = static_cast<double>(state.iterations());
  state.counters["step_s"] = timed / steps;
  state.counters["tokens/s"] = static_cast<double>(kBatch * len) * steps / timed;
  state.counters["block_len"] =
      encoder == "biblosa" ? static_cast<double>(nn::BlockSelfAttention::default_block_length(len)) : 0.0;
  state.counters["batch"] = kBatch;
  state.counters["d_e"] = kEmbed;
  state.counters["d"] = kHidden;
  state.counters["parameters"] = static_cast<double>(model.num_parameters());
  state.counters["threads"] = loom::get_num_threads();
}

void BM_BiBlosa(benchmark::State& state) { measure(state, "biblosa"); }
void BM_Disan(benchmark::State& state) { measure(state, "disan"); }
void BM_Multihead(benchmark::State& state) { measure(state, "multihead"); }

}  // namespace

// Iterations are fixed: each configuration also runs a warm-up and a memory step. DiSAN's time is quadratic
// (about a minute a step at 4096 tokens on 2 cores), so from 2048 on it times one step. The whole sweep takes
// about 4 minutes on the 2-core machine.
BENCHMARK(BM_BiBlosa)
    ->Name("Encoder/biblosa")
    ->RangeMultiplier(2)
    ->Range(64, 4096)
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Disan)
    ->Name("Encoder/disan")
    ->RangeMultiplier(2)
    ->Range(64, 1024)
    ->Iterations(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Disan)
    ->Name("Encoder/disan")
    ->Arg(2048)
    ->Arg(4096)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Multihead)
    ->Name("Encoder/multihead")
    ->RangeMultiplier(2)
    ->Range(64, 4096)
    ->Iterations(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
