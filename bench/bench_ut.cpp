// One training step of the Universal Transformer's encoder with ACT (issue 7), against the same encoder run
// for a fixed 8 steps and against tensor2tensor's dense ACT loop. bench/pytorch/ut_act.py runs the same model
// in PyTorch 1.13 with T2T's loop (every position computed at every iteration: the anchor, 260 ms).
//
// Model: models::UniversalTransformer, T2T universal_transformer_tiny's width: d 128, 4 heads, transition
// "ffn" 512 (ReLU), pre-norm blocks with LayerNorm eps 1e-6, learned step signal and the sinusoid timing
// signal added before every step, final LayerNorm; ACT with max 8 steps, act_epsilon 0.01, halting bias 1.0,
// ponder weight 0.01; dropout 0 (a deterministic step, and Loom's fused attention path). Batch 32 of length
// 64, random tokens in [2, 256) (no padding). Loss: a token-classification head on the encoder output, logits
// = enc E^T with the shared embedding E [256, 128] (the model's output layer), cross-entropy against random
// targets in [2, 256), plus 0.01 x the encoder's ponder cost (ACT rows). A step is forward, backward and an
// Adam update (lr 1e-3, torch defaults) of the encoder's parameters and the embedding (the decoder's are not
// part of this graph).
//
// Rows:
//   Act/Natural          act_variant "graves" (compact loop: only running positions computed), the halting
//                        unit as initialised (p = sigmoid(w.x + 1)); the counters report the ponder it gives
//                        at the last timed step (Adam moves the unit a little every step)
//   Act/Injected/<m>     the same with halting_override: position i (flattened b * L + l) gets p = 1 / k_i at
//                        every step, so it halts after exactly k_i steps (cum reaches 1 at step k_i). Every
//                        16th position has k = 8 (so each sequence holds 4 positions that run to the cap and
//                        the loop runs all 8 iterations); the others get k = floor((j+1) x) - floor(j x) (j
//                        their index among the non-cap positions, x = (16 m - 8) / 15), which makes the mean
//                        N exactly m (2.5 and 4.5). Mean ponder time N + R is m + mean(1 / k).
//   ActRecomputeKV/Injected/<m>   the same with reuse_halted_key_values off: halted positions' keys and
//   values
//                        recomputed (layer norm and projection) at every step, as before they were cached
//   Fixed/8              recurrence "fixed", 8 steps: every position at every step (T2T's cost, no halting
//   unit) T2T/Natural, T2T/Injected/<m>   act_variant "t2t": T2T's basic ACT bit for bit, dense (every
//   position
//                        computed at every iteration, halted ones kept transforming): the anchor's algorithm
//
// Method (as bench_reformer's measure()): a warm-up step creates the gradients and Adam's state, then one
// untimed step is timed phase by phase, then the timed iterations. Counters:
//   ponder       mean N (steps taken) over positions, from the last step
//   ponder_time  mean N + R (T2T's ponder time, what its act_loss averages)
//   iterations   loop iterations run (the batch's largest N)
//   peak_bytes   Loom allocator high-water mark during the phase-timed and timed steps above what was live
//                before them (parameters, gradients, Adam state, the token tensors)
//   fwd_ms, bwd_ms, opt_ms   the phases of the untimed step; threads
// The step time is the benchmark's real time (ms). LOOM_UT_DUMP=<dir> also saves each row's first forward +
// backward for bench/pytorch/ut_act.py --check (see dump_first_step).
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "loom/loom.h"
#include "loom/models/universal_transformer/universal_transformer.h"
#include "op_profile.h"

namespace {

constexpr int64_t kBatch = 32, kLength = 64, kVocab = 256, kMaxSteps = 8, kCapEvery = 16;
constexpr int64_t kFirstToken = 2;  // tokens and targets avoid PAD 0 and EOS 1

struct Row {
  const char* name;
  std::string recurrence;  // "act" | "fixed"
  std::string variant;     // "graves" | "t2t"
  int64_t ponder10;        // injected mean N x 10; 0 = the halting unit as initialised
  bool reuse_halted_key_values = true;
};

// Steps k_i per flattened position for an injected mean N of m = ponder10 / 10 (see the file comment).
std::vector<int64_t> injected_steps(int64_t ponder10, int64_t n_positions) {
  const int64_t num = 16 * ponder10 - 80;  // 10 x (16 m - 8); x = num / 150
  LOOM_CHECK(num > 0 && num % 10 == 0 && n_positions % kCapEvery == 0, "bench_ut: injected ponder ", ponder10,
             "/10 must be a multiple of 1/16 above 0.5, and the positions a multiple of ", kCapEvery);
  std::vector<int64_t> k(static_cast<size_t>(n_positions));
  int64_t j = 0;
  for (int64_t i = 0; i < n_positions; ++i) {
    if (i % kCapEvery == 0) {
      k[static_cast<size_t>(i)] = kMaxSteps;
    } else {
      k[static_cast<size_t>(i)] = ((j + 1) * num / 10) / 15 - (j * num / 10) / 15;
      ++j;
    }
    LOOM_CHECK(k[static_cast<size_t>(i)] >= 1 && k[static_cast<size_t>(i)] <= kMaxSteps, "bench_ut: injected ponder ",
               ponder10, "/10 gives ", k[static_cast<size_t>(i)], " steps at position ", i);
  }
  return k;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// LOOM_UT_DUMP=<dir>: before anything else, one forward + backward from the initial weights, saved with the
// weights and tokens to <dir>/<row, / as _>.safetensors ("param.<name>", "grad.<name>", src, tgt, loss, ponder,
// iterations), for bench/pytorch/ut_act.py --check (the PyTorch reference is the same model). Leaves no gradients.
void dump_first_step(const std::string& dir, std::string row, const loom::nn::Optimizer::NamedParameters& params,
                     const std::function<loom::Tensor()>& forward, const loom::models::UTPonder& ponder,
                     const loom::Tensor& src, const loom::Tensor& tgt) {
  for (char& ch : row)
    if (ch == '/') ch = '_';
  loom::Tensor loss = forward();
  loss.backward();
  std::vector<std::pair<std::string, loom::Tensor>> out;
  for (const auto& [name, p] : params) {
    out.emplace_back("param." + name, p.detach());
    if (p.grad().defined()) out.emplace_back("grad." + name, p.grad());
    p.set_grad(loom::Tensor());
  }
  out.emplace_back("src", src);
  out.emplace_back("tgt", tgt);
  out.emplace_back("loss", loss.detach());
  out.emplace_back("ponder", loom::mean(ponder.steps.to(loom::kFloat64)));
  out.emplace_back("iterations", loom::tensor(std::vector<int64_t>{ponder.iterations}, {1}));
  loom::save_safetensors(dir + "/" + row + ".safetensors", out);
}

void BM_UtStep(benchmark::State& state, Row row) {
  loom::manual_seed(0);
  loom::models::UniversalTransformerConfig c = loom::models::UniversalTransformerConfig::tiny(kVocab);
  c.recurrence = row.recurrence;
  c.act_variant = row.variant;
  c.max_steps = kMaxSteps;
  c.fixed_steps = kMaxSteps;
  c.act_epsilon = 0.01;
  c.dropout = 0.0;
  auto model = std::make_shared<loom::models::UniversalTransformer>(c);
  model->reuse_halted_key_values = row.reuse_halted_key_values;
  if (row.ponder10 > 0) {
    std::vector<double> p;
    for (int64_t k : injected_steps(row.ponder10, kBatch * kLength)) p.push_back(1.0 / static_cast<double>(k));
    loom::Tensor probs = loom::tensor(p, {kBatch * kLength}).to(loom::kFloat32);
    model->halting_override = [probs](bool, const loom::Tensor& rows, int64_t) {
      return loom::index_select(probs, 0, rows);
    };
  }
  loom::nn::Optimizer::NamedParameters params;
  for (auto& [name, p] : model->named_parameters())
    if (name.rfind("decoder.", 0) != 0) params.emplace_back(name, p);
  loom::nn::Adam adam(params, loom::nn::AdamOptions{});

  const loom::Tensor src = loom::randint(kFirstToken, kVocab, {kBatch, kLength});
  const loom::Tensor tgt = loom::randint(kFirstToken, kVocab, {kBatch * kLength});
  const bool act = row.recurrence == "act";
  loom::models::UTPonder ponder;
  auto forward = [&] {
    loom::models::UTEncoderOutput enc = model->encode(src);
    loom::Tensor logits = loom::linear(enc.output, model->embedding).reshape({kBatch * kLength, kVocab});
    loom::Tensor loss = loom::cross_entropy(logits, tgt);
    if (act) loss = loss + enc.ponder.cost * c.ponder_weight;
    ponder = enc.ponder;
    return loss;
  };
  auto step = [&] {
    loom::Tensor loss = forward();
    adam.zero_grad();
    loss.backward();
    adam.step();
    return loss;
  };

  if (const char* dir = std::getenv("LOOM_UT_DUMP"))
    dump_first_step(dir, row.name, params, forward, ponder, src, tgt);
  step();  // gradients and Adam's state exist from here on
  loom::empty_cache();
  loom::reset_peak_memory();
  const int64_t base = loom::memory_stats().current_bytes;
  {
    auto t0 = std::chrono::steady_clock::now();
    loom::Tensor loss = forward();
    state.counters["fwd_ms"] = ms_since(t0);
    t0 = std::chrono::steady_clock::now();
    adam.zero_grad();
    loss.backward();
    state.counters["bwd_ms"] = ms_since(t0);
    t0 = std::chrono::steady_clock::now();
    adam.step();
    state.counters["opt_ms"] = ms_since(t0);
  }
  for (auto _ : state) benchmark::DoNotOptimize(step().data_ptr());
  loom::bench::profile_step_if_asked(row.name, [&] { step(); });
  state.counters["peak_bytes"] = static_cast<double>(loom::memory_stats().peak_bytes - base);
  state.counters["ponder"] = loom::mean(ponder.steps.to(loom::kFloat64)).item<double>();
  state.counters["ponder_time"] = loom::mean(ponder.times.to(loom::kFloat64)).item<double>();
  state.counters["iterations"] = static_cast<double>(ponder.iterations);
  state.counters["threads"] = loom::get_num_threads();
}

// One list names and registers every row (Google Benchmark 1.7's State does not know its own name, which
// dump_first_step needs).
const Row kRows[] = {
    {"Act/Natural", "act", "graves", 0},
    {"Act/Injected/2.5", "act", "graves", 25},
    {"Act/Injected/4.5", "act", "graves", 45},
    {"Fixed/8", "fixed", "graves", 0},
    {"ActRecomputeKV/Injected/2.5", "act", "graves", 25, false},
    {"ActRecomputeKV/Injected/4.5", "act", "graves", 45, false},
    {"T2T/Natural", "act", "t2t", 0},
    {"T2T/Injected/2.5", "act", "t2t", 25},
    {"T2T/Injected/4.5", "act", "t2t", 45},
};

const bool kRegistered = [] {
  for (const Row& row : kRows)
    benchmark::RegisterBenchmark(row.name, BM_UtStep, row)->Unit(benchmark::kMillisecond)->UseRealTime();
  return true;
}();

}  // namespace
