// The CUDA backend's benchmarks (issue 9). Each iteration ends with cuda_synchronize, so the wall time is the
// GPU's; memory counters come from the device allocator's statistics. Without a GPU every benchmark reports
// "no CUDA device" and does nothing. bench/pytorch/gpu_reference.py times the same configurations in PyTorch.
//
//   Matmul/<n>           loom::matmul of two [n, n] float32 matrices on the GPU
//   CublasSgemm/<n>      the same product from cuBLAS called directly (the target: Loom within 5% of it)
//   Attention/<L>        scaled_dot_product_attention forward + backward, [4, 8, L, 64] float32, causal, on
//                        the default kernels: the tensor cores (3xTF32) where the GPU has them and passes
//                        their self-check (the label says which); the figure for PyTorch's float32 SDPA,
//                        which computes on the tensor cores in the same way
//   AttentionRegisterTiles/<L> the same on the FMA register tiles (AttentionKernels::RegisterTiles,
//                        cuda::set_attention_kernels): what the tensor cores gain over them
//   AttentionSharedTiles/<L> the same on the shared-memory tiles: what the register tiles gain over them
//   LshAttention/<L>     lsh_attention forward + backward, qk and v [1, 8, L, 64], chunk 64, 2 rounds,
//                        causal, L / 64 buckets as bench_reformer's (factorised above 128), default kernels
//                        (the label says whether the tensor cores ran); gpu_reference.py times
//                        reformer_lm.py's LSHAttention on the same shapes
//   LshAttentionRegisterTiles/<L>, LshAttentionSharedTiles/<L> likewise
//   MultiDimAttention/<r> multi_dim_attention forward + backward over Bi-BloSA's blocks: [512, r, 300]
//                        float32 (a batch of 32 sequences of 16 blocks), forward mask; counter scores/s, the
//                        (i, j, f) score entries of forward and backward per second
//   ReformerStep/<L>     one training step (forward, loss, backward, AdamW) of bench_reformer's 6-layer model
//   ReformerLongest      that step at L = 2^14, 2^15, ... until the GPU runs out of memory: the longest
//                        trainable L
//   UtActStep            one training step of the Universal Transformer encoder-decoder with ACT (bench_ut's
//                        anchor width: d 128, 4 heads, d_ff 512, batch 32, length 64, max 8 steps)
//   Add/<log2 n>         a + b on float32 tensors of n elements, out of place: 12 bytes an element moved
//   AddUnaligned/<log2 n> the same on views one element into their storage, so every access is scalar: the
//                        gap to Add is what the 16-byte vector path gains
//   Gelu/<log2 n>        gelu(x) on n float32 elements: 8 bytes an element, and erf's arithmetic
// Counters: FLOP/s where the work is known, peak_bytes (device allocator high-water mark above what was live
// before the timed steps), tokens/s.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "loom/loom.h"
#include "loom/models/reformer/reformer_lm.h"
#include "loom/models/universal_transformer/universal_transformer.h"
#include "reformer_bench_config.h"

#ifdef LOOM_WITH_CUDA
#include "loom/cuda/cublas_loader.h"
#include "loom/cuda/cuda_backend.h"
#endif

namespace {

using loom::Tensor;
const loom::Device kGpu = loom::kCUDA;

bool skip_without_gpu(benchmark::State& state) {
  if (loom::cuda_is_available()) return false;
  state.SkipWithError("no CUDA device (no GPU visible, or Loom built without CUDA)");
  return true;
}

// Runs step() once untimed, resets the device's peak, then times it; sets peak_bytes.
template <typename Step>
void timed(benchmark::State& state, Step step) {
  step();
  loom::cuda_synchronize(kGpu);
  loom::reset_peak_memory(kGpu);
  const int64_t base = loom::memory_stats(kGpu).current_bytes;
  for (auto _ : state) {
    step();
    loom::cuda_synchronize(kGpu);
  }
  state.counters["peak_bytes"] = static_cast<double>(loom::memory_stats(kGpu).peak_bytes - base);
}

void flops(benchmark::State& state, double per_iteration) {
  state.counters["FLOP/s"] = benchmark::Counter(per_iteration, benchmark::Counter::kIsIterationInvariantRate);
}

// Which fused attention kernels a benchmark pins (cuda::set_attention_kernels; this enum exists without
// CUDA).
enum class Kernels { Auto, RegisterTiles, SharedTiles };

// While it lives, the fused attention kernels are pinned to `kernels`; Auto afterwards.
struct PinnedAttentionKernels {
  explicit PinnedAttentionKernels([[maybe_unused]] Kernels kernels) {
#ifdef LOOM_WITH_CUDA
    using loom::cuda::AttentionKernels;
    loom::cuda::set_attention_kernels(kernels == Kernels::SharedTiles     ? AttentionKernels::SharedTiles
                                      : kernels == Kernels::RegisterTiles ? AttentionKernels::RegisterTiles
                                                                          : AttentionKernels::Auto);
#endif
  }
  // Which kernels the run's float32 attention took, for the benchmark's label.
  static std::string label(Kernels kernels) {
    if (kernels == Kernels::SharedTiles) return "shared tiles";
    if (kernels == Kernels::RegisterTiles) return "register tiles";
#ifdef LOOM_WITH_CUDA
    if (loom::cuda::tensor_cores_enabled(0)) return "tensor cores";
#endif
    return "register tiles (no tensor cores)";
  }
  ~PinnedAttentionKernels() {
#ifdef LOOM_WITH_CUDA
    loom::cuda::set_attention_kernels(loom::cuda::AttentionKernels::Auto);
#endif
  }
};

void BM_Matmul(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const int64_t n = state.range(0);
  loom::manual_seed(0);
  Tensor a = loom::randn({n, n}, {loom::kFloat32, kGpu}), b = loom::randn({n, n}, {loom::kFloat32, kGpu});
  timed(state, [&] { benchmark::DoNotOptimize(loom::matmul(a, b).data_ptr()); });
  flops(state, 2.0 * n * n * n);
}

void BM_CublasSgemm(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
#ifdef LOOM_WITH_CUDA
  const int64_t n = state.range(0);
  loom::manual_seed(0);
  Tensor a = loom::randn({n, n}, {loom::kFloat32, kGpu}), b = loom::randn({n, n}, {loom::kFloat32, kGpu});
  Tensor c = Tensor::empty({n, n}, {loom::kFloat32, kGpu});
  const loom::cuda::CublasApi& api = loom::cuda::cublas_api();
  cublasHandle_t handle = nullptr;
  if (api.create(&handle) != CUBLAS_STATUS_SUCCESS) {
    state.SkipWithError("cublasCreate failed");
    return;
  }
  const float one = 1, zero = 0;
  const int ni = static_cast<int>(n);
  // Row-major C = A B is column-major C^T = B^T A^T: B first.
  auto gemm = [&] {
    api.sgemm_strided_batched(
        handle, CUBLAS_OP_N, CUBLAS_OP_N, ni, ni, ni, &one, static_cast<const float*>(b.data_ptr()), ni, 0,
        static_cast<const float*>(a.data_ptr()), ni, 0, &zero, static_cast<float*>(c.data_ptr()), ni, 0, 1);
  };
  timed(state, gemm);
  flops(state, 2.0 * n * n * n);
  // The handle is left alive, as Loom's own: destroying it after the runtime is gone would fail.
#endif
}

void attention_step(benchmark::State& state, Kernels kernels) {
  if (skip_without_gpu(state)) return;
  const int64_t len = state.range(0);
  loom::manual_seed(0);
  const loom::TensorOptions o{loom::kFloat32, kGpu};
  Tensor q = loom::randn({4, 8, len, 64}, o).requires_grad_(),
         k = loom::randn({4, 8, len, 64}, o).requires_grad_(),
         v = loom::randn({4, 8, len, 64}, o).requires_grad_(), probe = loom::randn({4, 8, len, 64}, o);
  const PinnedAttentionKernels pinned(kernels);
  timed(state, [&] {
    for (Tensor* t : {&q, &k, &v}) t->set_grad(Tensor());
    loom::scaled_dot_product_attention(q, k, v, Tensor(), /*is_causal=*/true).backward(probe);
  });
  // Forward 2 L^2 d (scores) + 2 L^2 d (values), backward twice that, halved by the causal mask.
  flops(state, 3.0 * 4.0 * 4 * 8 * static_cast<double>(len) * len * 64 / 2);
  state.SetLabel(PinnedAttentionKernels::label(kernels));
}

void BM_Attention(benchmark::State& state) { attention_step(state, Kernels::Auto); }
void BM_AttentionRegisterTiles(benchmark::State& state) { attention_step(state, Kernels::RegisterTiles); }
void BM_AttentionSharedTiles(benchmark::State& state) { attention_step(state, Kernels::SharedTiles); }

void BM_MultiDimAttention(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const int64_t blocks = 512, len = state.range(0), d = 300;
  loom::manual_seed(0);
  const loom::TensorOptions o{loom::kFloat32, kGpu};
  Tensor q = loom::randn({blocks, len, d}, o).requires_grad_(),
         k = loom::randn({blocks, len, d}, o).requires_grad_(),
         v = loom::randn({blocks, len, d}, o).requires_grad_(), bias = loom::randn({d}, o).requires_grad_(),
         probe = loom::randn({blocks, len, d}, o);
  timed(state, [&] {
    for (Tensor* t : {&q, &k, &v, &bias}) t->set_grad(Tensor());
    loom::multi_dim_attention(q, k, v, bias, loom::AttentionDirection::Forward).backward(probe);
  });
  state.counters["scores/s"] = benchmark::Counter(static_cast<double>(blocks) * len * len * d,
                                                  benchmark::Counter::kIsIterationInvariantRate);
}

void lsh_attention_step(benchmark::State& state, Kernels kernels) {
  if (skip_without_gpu(state)) return;
  const int64_t len = state.range(0);
  loom::manual_seed(0);
  const loom::TensorOptions o{loom::kFloat32, kGpu};
  Tensor qk = loom::randn({1, 8, len, 64}, o).requires_grad_(),
         v = loom::randn({1, 8, len, 64}, o).requires_grad_(), probe = loom::randn({1, 8, len, 64}, o);
  loom::LshAttentionOptions opts;
  opts.chunk_len = 64;
  opts.n_hashes = 2;
  opts.n_buckets = loom::bench::reformer_buckets(len, opts.chunk_len);  // the PyTorch reference's count
  opts.causal = true;
  opts.seed = 1;
  opts.has_seed = true;
  const PinnedAttentionKernels pinned(kernels);
  timed(state, [&] {
    qk.set_grad(Tensor());
    v.set_grad(Tensor());
    loom::lsh_attention(qk, v, opts).out.backward(probe);
  });
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(len), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(PinnedAttentionKernels::label(kernels));
}

void BM_LshAttention(benchmark::State& state) { lsh_attention_step(state, Kernels::Auto); }
void BM_LshAttentionRegisterTiles(benchmark::State& state) {
  lsh_attention_step(state, Kernels::RegisterTiles);
}
void BM_LshAttentionSharedTiles(benchmark::State& state) { lsh_attention_step(state, Kernels::SharedTiles); }

struct ReformerTrainer {
  loom::models::ReformerLM model;
  loom::nn::AdamW optimizer;
  explicit ReformerTrainer(int64_t len)
      : model(loom::bench::reformer_config(len, 6), {loom::kFloat32, kGpu}),
        optimizer(model.named_parameters(), 1e-4) {}
  void step(const Tensor& x, const Tensor& y) {
    optimizer.zero_grad();
    model.loss(x, y).backward();
    optimizer.step();
  }
};

void BM_ReformerStep(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const int64_t len = state.range(0);
  loom::manual_seed(0);
  ReformerTrainer t(len);
  Tensor x = loom::randint(0, 256, {1, len}).to(kGpu), y = loom::randint(0, 256, {1, len}).to(kGpu);
  timed(state, [&] { t.step(x, y); });
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(len), benchmark::Counter::kIsIterationInvariantRate);
}

// Doubles L from 2^14 until a step fails with the allocator's out-of-memory error; reports the longest that
// trained (and that step's seconds and peak).
void BM_ReformerLongest(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  int64_t longest = 0;
  double seconds = 0, peak = 0;
  for (auto _ : state) {
    for (int64_t len = int64_t{1} << 14; len <= (int64_t{1} << 24); len *= 2) {
      try {
        loom::manual_seed(0);
        ReformerTrainer t(len);
        Tensor x = loom::randint(0, 256, {1, len}).to(kGpu), y = loom::randint(0, 256, {1, len}).to(kGpu);
        loom::cuda_synchronize(kGpu);
        loom::reset_peak_memory(kGpu);
        const auto start = std::chrono::steady_clock::now();
        t.step(x, y);
        loom::cuda_synchronize(kGpu);
        seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        peak = static_cast<double>(loom::memory_stats(kGpu).peak_bytes);
        longest = len;
      } catch (const loom::Error& e) {
        state.SetLabel(std::string("stopped at L = ") + std::to_string(len) + ": " + e.what());
        break;
      }
    }
  }
  state.counters["longest_len"] = static_cast<double>(longest);
  state.counters["longest_step_s"] = seconds;
  state.counters["longest_peak_bytes"] = peak;
}

void BM_UtActStep(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  loom::models::UniversalTransformerConfig c = loom::models::UniversalTransformerConfig::tiny(13);
  c.max_steps = 8;
  c.act_epsilon = 0.01;
  c.dropout = 0.1;
  loom::manual_seed(0);
  loom::models::UniversalTransformer model(c, {loom::kFloat32, kGpu});
  loom::nn::AdamW optimizer(model.named_parameters(), 1e-3);
  Tensor src = loom::randint(2, 12, {32, 64}).to(kGpu), tgt = loom::randint(2, 12, {32, 64}).to(kGpu);
  double ponder = 0;
  timed(state, [&] {
    optimizer.zero_grad();
    loom::models::UTLoss loss = model.loss(src, tgt);
    loss.total.backward();
    optimizer.step();
    ponder = loom::mean(loss.encoder.times).to(loom::kCPU).item<float>();
  });
  state.counters["encoder_ponder"] = ponder;
  state.counters["tokens/s"] = benchmark::Counter(32.0 * 64, benchmark::Counter::kIsIterationInvariantRate);
}

// Elementwise kernels are bound by memory bandwidth: bytes_per_second against the GPU's (4.8 TB/s on an H200)
// is the figure of merit.
void elementwise(benchmark::State& state, int64_t offset, double bytes_per_element,
                 Tensor (*op)(const Tensor&, const Tensor&)) {
  if (skip_without_gpu(state)) return;
  const int64_t n = int64_t{1} << state.range(0);
  loom::manual_seed(0);
  Tensor a = loom::randn({n + offset}, {loom::kFloat32, kGpu}).slice(0, offset, n + offset);
  Tensor b = loom::randn({n + offset}, {loom::kFloat32, kGpu}).slice(0, offset, n + offset);
  timed(state, [&] { benchmark::DoNotOptimize(op(a, b).data_ptr()); });
  state.SetBytesProcessed(
      static_cast<int64_t>(state.iterations() * bytes_per_element * static_cast<double>(n)));
}
Tensor add_op(const Tensor& a, const Tensor& b) { return a + b; }
Tensor gelu_op(const Tensor& a, const Tensor&) { return loom::gelu(a); }

void BM_Add(benchmark::State& state) { elementwise(state, 0, 12, add_op); }
void BM_AddUnaligned(benchmark::State& state) { elementwise(state, 1, 12, add_op); }
void BM_Gelu(benchmark::State& state) { elementwise(state, 0, 8, gelu_op); }

}  // namespace

BENCHMARK(BM_Add)->Name("Add")->Arg(20)->Arg(24)->Arg(27)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AddUnaligned)
    ->Name("AddUnaligned")
    ->Arg(20)
    ->Arg(24)
    ->Arg(27)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Gelu)->Name("Gelu")->Arg(20)->Arg(24)->Arg(27)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Matmul)->Name("Matmul")->Arg(1024)->Arg(2048)->Arg(4096)->Arg(8192)->UseRealTime()->Unit(
    benchmark::kMillisecond);
BENCHMARK(BM_CublasSgemm)
    ->Name("CublasSgemm")
    ->Arg(1024)
    ->Arg(2048)
    ->Arg(4096)
    ->Arg(8192)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Attention)
    ->Name("Attention")
    ->Arg(1024)
    ->Arg(2048)
    ->Arg(4096)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_AttentionRegisterTiles)
    ->Name("AttentionRegisterTiles")
    ->Arg(1024)
    ->Arg(2048)
    ->Arg(4096)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_AttentionSharedTiles)
    ->Name("AttentionSharedTiles")
    ->Arg(1024)
    ->Arg(2048)
    ->Arg(4096)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MultiDimAttention)
    ->Name("MultiDimAttention")
    ->Arg(16)
    ->Arg(32)
    ->Arg(64)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LshAttention)
    ->Name("LshAttention")
    ->Arg(4096)
    ->Arg(16384)
    ->Arg(65536)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LshAttentionRegisterTiles)
    ->Name("LshAttentionRegisterTiles")
    ->Arg(4096)
    ->Arg(16384)
    ->Arg(65536)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LshAttentionSharedTiles)
    ->Name("LshAttentionSharedTiles")
    ->Arg(4096)
    ->Arg(16384)
    ->Arg(65536)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ReformerStep)
    ->Name("ReformerStep")
    ->Arg(4096)
    ->Arg(16384)
    ->Arg(65536)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_UtActStep)->Name("UtActStep")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ReformerLongest)
    ->Name("ReformerLongest")
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kSecond);
