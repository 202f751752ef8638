// Whole training steps on the GPU against the CPU: the Reformer (reversible layers with LSH and local
// attention), the Universal Transformer with ACT (halting, remainders, ponder cost) and Bi-BloSA (masked
// block self-attention) each run one forward/backward pass and one AdamW step on both devices from the same
// parameters and generator state. The losses, every parameter gradient and the updated parameters must agree.
// float64 keeps the comparison tight: the devices differ only in rounding, so a wrong kernel shows at once.
// Then each model's driver (`loom train ut|reformer|biblosa --device cuda`) runs end to end and logs what its
// CPU run logs.
// Without a GPU every test skips with the reason.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "loom/autograd/grad_mode.h"
#include "loom/core/generator.h"
#include "loom/models/biblosa/text_classifier.h"
#include "loom/models/biblosa/train_biblosa.h"
#include "loom/models/reformer/reformer_lm.h"
#include "loom/models/reformer/train_reformer.h"
#include "loom/models/universal_transformer/train_ut.h"
#include "loom/models/universal_transformer/universal_transformer.h"
#include "loom/nn/optim_adam.h"
#include "loom/ops/ops.h"
#include "support/driver_fixture.h"
#include "support/expect.h"
#include "support/module_copy.h"

#ifdef LOOM_WITH_CUDA
#include "loom/cuda/cuda_backend.h"
#endif

namespace loom::models {
namespace {

using test::copy_parameters;
using test::expect_close;

class CudaModels : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_is_available()) {
#ifdef LOOM_WITH_CUDA
      GTEST_SKIP() << "no CUDA device: Loom was built with CUDA, but no GPU is visible";
#else
      GTEST_SKIP() << "no CUDA device: Loom was built without CUDA (configure with -DLOOM_CUDA=ON)";
#endif
    }
  }
};

// One training step of `cpu` and `gpu` (same parameters): loss(model, device) under the same seed, backward,
// and (when `update`) one AdamW step; losses, gradients and updated parameters compared.
void expect_same_training_step(nn::Module& cpu, nn::Module& gpu,
                               const std::function<Tensor(nn::Module&, Device)>& loss, double rtol,
                               double atol, bool update = true) {
  copy_parameters(cpu, gpu);
  manual_seed(11);
  Tensor loss_cpu = loss(cpu, kCPU);
  loss_cpu.backward();
  manual_seed(11);
  Tensor loss_gpu = loss(gpu, kCUDA);
  ASSERT_TRUE(loss_gpu.device().is_cuda());
  loss_gpu.backward();
  expect_close(loss_gpu.to(kCPU), loss_cpu, rtol, atol, "loss");
  auto pc = cpu.named_parameters(), pg = gpu.named_parameters();
  ASSERT_EQ(pc.size(), pg.size());
  int with_grad = 0;
  for (size_t i = 0; i < pc.size(); ++i) {
    ASSERT_EQ(pc[i].first, pg[i].first);
    ASSERT_EQ(pc[i].second.grad().defined(), pg[i].second.grad().defined()) << pc[i].first;
    if (!pc[i].second.grad().defined()) continue;
    ++with_grad;
    EXPECT_TRUE(pg[i].second.grad().device().is_cuda()) << pc[i].first;
    expect_close(pg[i].second.grad().to(kCPU), pc[i].second.grad(), rtol, atol, "grad of " + pc[i].first);
  }
  EXPECT_GT(with_grad, 0);
  if (!update) return;
  nn::AdamW opt_cpu(cpu.named_parameters()), opt_gpu(gpu.named_parameters());
  opt_cpu.step();
  opt_gpu.step();
  for (size_t i = 0; i < pc.size(); ++i)
    expect_close(pg[i].second.to(kCPU), pc[i].second, rtol, atol, "updated " + pc[i].first);
}

// A small Reformer: 4 layers alternating local and LSH attention, reversible, 2 hash rounds, dropout 0.1
// (Philox: the same masks on both devices, replayed in the reversible recompute); its widths, chunks and
// length `scale` times those of the smallest.
ReformerConfig small_reformer(int64_t scale) {
  ReformerConfig c;
  c.vocab_size = 11;
  c.d_model = 16 * scale;
  c.d_ff = 24 * scale;
  c.layers = 4;
  c.heads = 2;
  c.head_dim = 8 * scale;
  c.lsh_chunk = c.local_chunk = 8 * scale;
  c.n_hashes = 2;
  c.max_seq = 32 * scale;
  c.n_buckets = {4};
  c.dropout = 0.1;
  return c;
}

// One training step of small_reformer(scale) in `dtype` on the CPU and on the GPU
// (expect_same_training_step).
void expect_reformer_step_matches_cpu(int64_t scale, DType dtype, double rtol, double atol, bool update) {
  const ReformerConfig c = small_reformer(scale);
  manual_seed(1);
  ReformerLM cpu(c, {dtype, kCPU});
  ReformerLM gpu(c, {dtype, kCUDA});
  manual_seed(2);
  Tensor tokens = randint(0, 11, {2, c.max_seq}), targets = randint(0, 11, {2, c.max_seq});
  expect_same_training_step(
      cpu, gpu,
      [&](nn::Module& m, Device d) { return static_cast<ReformerLM&>(m).loss(tokens.to(d), targets.to(d)); },
      rtol, atol, update);
}

TEST_F(CudaModels, ReformerTrainingStepMatchesCpu) {
  expect_reformer_step_matches_cpu(1, kFloat64, 1e-8, 1e-10, true);
}

// The same Reformer in float32, on the default kernels: its LSH attention and the dense attention inside its
// local attention run as 3xTF32 on the tensor cores (where the GPU has them and passes their self-check; in
// the emulated backend they do). float32 on both devices, so the tolerance is float32's; no AdamW step, whose
// first update is the gradient's sign and so flips on rounding for gradients near zero.
TEST_F(CudaModels, ReformerFloat32TrainingStepMatchesCpu) {
  expect_reformer_step_matches_cpu(2, kFloat32, 1e-4, 1e-6, /*update=*/false);
}

TEST_F(CudaModels, UniversalTransformerWithActTrainingStepMatchesCpu) {
  UniversalTransformerConfig c;
  c.vocab_size = 13;
  c.d_model = 16;
  c.heads = 2;
  c.d_ff = 32;
  c.max_steps = 5;
  c.dropout = 0.1;
  manual_seed(1);
  UniversalTransformer cpu(c, {kFloat64, kCPU});
  UniversalTransformer gpu(c, {kFloat64, kCUDA});
  // PAD (0) at the ends of the second rows: padding on both sides.
  Tensor src = tensor<int64_t>({5, 3, 9, 2, 11, 1, 4, 7, 8, 1, 0, 0}, {2, 6});
  Tensor tgt = tensor<int64_t>({3, 9, 2, 1, 6, 1, 0, 0}, {2, 4});
  Tensor offsets = tensor<int64_t>({0, 3}, {2});
  UTLoss ponder_cpu, ponder_gpu;
  expect_same_training_step(
      cpu, gpu,
      [&](nn::Module& m, Device d) {
        UTLoss l =
            static_cast<UniversalTransformer&>(m).loss(src.to(d), tgt.to(d), offsets.to(d), offsets.to(d));
        (d.is_cuda() ? ponder_gpu : ponder_cpu) = l;
        return l.total;
      },
      1e-8, 1e-10);
  // The halting decisions themselves: steps per position equal, remainders close.
  EXPECT_TRUE(all(eq(ponder_gpu.encoder.steps.to(kCPU), ponder_cpu.encoder.steps)).item<bool>());
  EXPECT_TRUE(all(eq(ponder_gpu.decoder.steps.to(kCPU), ponder_cpu.decoder.steps)).item<bool>());
  expect_close(ponder_gpu.encoder.remainders.to(kCPU), ponder_cpu.encoder.remainders, 1e-8, 1e-10,
               "encoder remainders");
  EXPECT_GT(ponder_cpu.encoder.iterations, 1);
}

TEST_F(CudaModels, BiBlosaTrainingStepMatchesCpu) {
  TextClassifierConfig c;
  c.encoder = "biblosa";
  c.vocab_size = 20;
  c.num_classes = 3;
  c.embed_dim = 12;
  c.hidden_dim = 8;
  c.block_len = 3;
  c.dropout = 0.1;
  manual_seed(1);
  TextClassifier cpu(c, {kFloat64, kCPU});
  TextClassifier gpu(c, {kFloat64, kCUDA});
  manual_seed(2);
  Tensor ids = randint(1, 20, {3, 10});
  Tensor lengths = tensor<int64_t>({10, 7, 4}, {3, 1});
  Tensor padding = ge(arange(10.0, {kInt64}).view({1, 10}), lengths);
  Tensor labels = tensor<int64_t>({0, 2, 1}, {3});
  expect_same_training_step(
      cpu, gpu,
      [&](nn::Module& m, Device d) {
        return cross_entropy(static_cast<TextClassifier&>(m).forward(ids.to(d), padding.to(d)), labels.to(d));
      },
      1e-8, 1e-10);
}

// The lines of one split ("train", "valid", ...) of two runs' metrics.jsonl agree in `key` within `tol`: as
// many of them, at least one, in the same order.
void expect_same_metrics(const std::filesystem::path& cpu, const std::filesystem::path& gpu,
                         const std::string& split, const std::string& key, double tol) {
  const std::string needle = "\"split\":\"" + split + "\"";
  auto lc = test::lines_with(cpu, needle), lg = test::lines_with(gpu, needle);
  ASSERT_EQ(lc.size(), lg.size()) << split;
  ASSERT_FALSE(lc.empty()) << split;
  for (size_t i = 0; i < lc.size(); ++i)
    EXPECT_NEAR(test::json_field(lg[i], key), test::json_field(lc[i], key), tol) << lc[i] << "\n" << lg[i];
}

// `loom train ut --device cuda` end to end (training, teacher-forced and decoded evaluation, ponder maps,
// checkpoints): the same logged losses and accuracies as the CPU run of the same command, up to float32
// rounding.
TEST_F(CudaModels, UtDriverOnCudaFollowsTheCpuRun) {
  auto run = [](const std::string& device) {
    const std::filesystem::path dir = test::scratch_dir("loom_cuda_ut_driver_", device);
    UTTrainOptions o;
    o.task = "copy";
    o.out_dir = (dir / "run").string();
    o.steps = 20;
    o.batch = 16;
    o.lr = 3e-3;
    o.warmup = 5;
    o.eval_every = 20;
    o.checkpoint_every = 10;
    o.train_size = 200;
    o.train_length = 6;
    o.eval_size = 16;
    o.eval_length = 12;
    o.decode_examples = 4;
    o.ponder_maps = 1;
    o.model.d_model = 32;
    o.model.heads = 4;
    o.model.d_ff = 64;
    o.model.max_steps = 4;
    o.model.dropout = 0.1;
    o.device = device;
    EXPECT_EQ(train_ut(o), 0) << device;
    return dir / "run" / "metrics.jsonl";
  };
  const auto cpu = run("cpu"), gpu = run("cuda");
  expect_same_metrics(cpu, gpu, "train", "loss", 1e-3);
  expect_same_metrics(cpu, gpu, "test", "char_accuracy", 1e-3);
}

// `loom train reformer --device cuda` end to end (reversible LSH and local layers, dropout, validation and
// test passes, checkpoints): the same losses and bits-per-character as the CPU run.
TEST_F(CudaModels, ReformerDriverOnCudaFollowsTheCpuRun) {
  auto run = [](const std::string& device) {
    const std::filesystem::path dir = test::scratch_dir("loom_cuda_reformer_driver_", device);
    ReformerTrainOptions o;
    o.data = test::write_small_corpus(dir);
    o.cache_dir = o.out_dir = (dir / "run").string();
    o.device = device;
    o.steps = 16;
    o.batch = 2;
    o.seq = 64;
    o.lr = 3e-3;
    o.warmup = 4;
    o.eval_every = 8;
    o.eval_tokens = 1024;
    o.checkpoint_every = 8;
    o.sample_chars = 0;
    o.model.d_model = 16;
    o.model.d_ff = 32;
    o.model.layers = 2;
    o.model.heads = 2;
    o.model.head_dim = 8;
    o.model.lsh_chunk = o.model.local_chunk = 16;
    o.model.n_hashes = 2;
    o.model.dropout = 0.1;
    EXPECT_EQ(train_reformer(o), 0) << device;
    return dir / "run" / "metrics.jsonl";
  };
  const auto cpu = run("cpu"), gpu = run("cuda");
  expect_same_metrics(cpu, gpu, "train", "loss", 1e-3);
  expect_same_metrics(cpu, gpu, "valid", "bpc", 1e-3);
  expect_same_metrics(cpu, gpu, "test", "bpc", 1e-3);
}

// `loom train biblosa --device cuda` end to end on a labelled file (masked block self-attention, dropout,
// per-epoch dev and test passes, checkpoints): the same training losses as the CPU run.
TEST_F(CudaModels, BiblosaDriverOnCudaFollowsTheCpuRun) {
  auto run = [](const std::string& device) {
    const std::filesystem::path dir = test::scratch_dir("loom_cuda_biblosa_driver_", device);
    // Three classes, each text naming its class with one keyword among filler words.
    const std::string data = (dir / "labelled.tsv").string();
    {
      std::ofstream out(data);
      const char* labels[] = {"fruit", "tool", "music"};
      const char* keys[] = {"apple", "hammer", "violin"};
      const char* filler[] = {"the", "a", "of", "bright", "old", "green", "small", "quiet", "and", "with"};
      for (int i = 0; i < 300; ++i) {
        const int c = i % 3, len = 4 + (i * 5) % 9, at = (i * 7) % len;
        out << labels[c] << '\t';
        for (int k = 0; k < len; ++k)
          out << (k ? " " : "") << (k == at ? keys[c] : filler[(i * 3 + k * 7) % 10]);
        out << '\n';
      }
    }
    BiblosaTrainOptions o;
    o.data = data;
    o.out_dir = (dir / "run").string();
    o.device = device;
    o.epochs = 2;
    o.batch = 16;
    o.max_len = 20;
    o.lr = 1e-2;
    o.checkpoint_every = 10;
    o.model.embed_dim = 12;
    o.model.hidden_dim = 8;
    o.model.dropout = 0.1;
    EXPECT_EQ(train_biblosa(o), 0) << device;
    return dir / "run" / "metrics.jsonl";
  };
  const auto cpu = run("cpu"), gpu = run("cuda");
  expect_same_metrics(cpu, gpu, "train", "loss", 1e-3);
  ASSERT_EQ(test::lines_with(gpu, "\"split\":\"test\"").size(), 1u);
}

}  // namespace
}  // namespace loom::models
