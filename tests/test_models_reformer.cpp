// models::ReformerLM: the reversible LSH/local model against the same parameters run as a plain dense
// two-stream network, causal exactness, dropout replay, chunked heads, axial positions, checkpoints, sampling.
#include <gtest/gtest.h>

#include <filesystem>

#include "loom/autograd/grad_mode.h"
#include "loom/core/generator.h"
#include "loom/models/reformer/reformer_lm.h"
#include "loom/nn/axial_position_embedding.h"
#include "loom/nn/checkpoint_io.h"
#include "loom/nn/embedding.h"
#include "loom/ops/ops.h"
#include "support/expect.h"
#include "support/module_copy.h"

namespace loom::models {
namespace {

using test::copy_parameters;
using test::expect_close;
using test::expect_error;

// A tiny causal model: 4 layers alternating local / LSH, chunks of L / 2 looking one chunk back.
ReformerConfig tiny(int64_t L) {
  ReformerConfig c;
  c.vocab_size = 11;
  c.d_model = 8;
  c.d_ff = 12;
  c.layers = 4;
  c.heads = 2;
  c.head_dim = 4;
  c.lsh_chunk = c.local_chunk = L / 2;
  c.max_seq = L;
  c.n_buckets = {4};
  c.dropout = 0;
  return c;
}

Tensor tokens_for(int64_t B, int64_t L, uint64_t seed) {
  manual_seed(seed);
  return randint(0, 11, {B, L});
}

std::vector<std::pair<std::string, Tensor>> grads_of(const nn::Module& m) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [name, p] : m.named_parameters()) out.emplace_back(name, p.grad().defined() ? p.grad().clone() : Tensor());
  return out;
}

// Windows of two chunks of L / 2 (look one back, circular for LSH) cover every earlier position whatever the
// hashing, so the reversible LSH / local model equals the plain network with dense attention (reformer.md
// test 3 lifted to the whole model, plus test 10): same logits, same loss, same parameter gradients.
TEST(ReformerLM, ReversibleLshEqualsPlainDenseNetwork) {
  const int64_t B = 2, L = 16;
  ReformerConfig c = tiny(L);
  manual_seed(1);
  ReformerLM reformer(c, kFloat64);
  ReformerConfig plain_config = c;
  plain_config.reversible = false;
  plain_config.local_chunk = L;  // one chunk: dense causal attention
  ReformerLM plain(plain_config, kFloat64);
  plain.set_full_attention(true);
  copy_parameters(reformer, plain);
  ASSERT_EQ(reformer.lsh_layers.size(), 2u);
  ASSERT_EQ(reformer.local_layers.size(), 2u);

  Tensor x = tokens_for(B, L, 7), y = tokens_for(B, L, 8);
  manual_seed(3);
  Tensor loss_r = reformer.loss(x, y);
  loss_r.backward();
  Tensor loss_p = plain.loss(x, y);
  loss_p.backward();
  expect_close(loss_r, loss_p, 1e-11, 1e-12, "loss");
  {
    NoGradGuard no_grad;
    expect_close(reformer.forward(x), plain.forward(x), 1e-11, 1e-12, "logits");
  }
  auto gr = grads_of(reformer), gp = grads_of(plain);
  ASSERT_EQ(gr.size(), gp.size());
  for (size_t i = 0; i < gr.size(); ++i) {
    ASSERT_TRUE(gr[i].second.defined()) << gr[i].first;
    expect_close(gr[i].second, gp[i].second, 1e-9, 1e-11, gr[i].first);
  }
  // Negative control: with half the window the LSH layers no longer see everything, and the outputs differ.
  ReformerConfig narrow = c;
  narrow.lsh_chunk = narrow.local_chunk = L / 4;
  ReformerLM narrower(narrow, kFloat64);
  copy_parameters(reformer, narrower);
  NoGradGuard no_grad;
  EXPECT_GT(test::max_abs(sub(narrower.forward(x), plain.forward(x))), 1e-6);
}

// With dropout on, the reversible stack must redraw the very same masks (and LSH rotations) when it rebuilds
// each layer in backward: its gradients equal those of the same model on the ordinary tape with the same seed.
TEST(ReformerLM, DropoutIsReplayedExactlyInTheRecompute) {
  const int64_t B = 2, L = 32;
  ReformerConfig c = tiny(L);
  c.lsh_chunk = c.local_chunk = 8;
  c.dropout = 0.2;
  manual_seed(2);
  ReformerLM reversible(c, kFloat64);
  ReformerConfig plain_config = c;
  plain_config.reversible = false;
  ReformerLM plain(plain_config, kFloat64);
  copy_parameters(reversible, plain);
  Tensor x = tokens_for(B, L, 4), y = tokens_for(B, L, 5);
  manual_seed(99);
  Tensor a = reversible.loss(x, y);
  a.backward();
  manual_seed(99);
  Tensor b = plain.loss(x, y);
  b.backward();
  expect_close(a, b, 1e-12, 1e-12, "loss");
  auto ga = grads_of(reversible), gb = grads_of(plain);
  for (size_t i = 0; i < ga.size(); ++i) expect_close(ga[i].second, gb[i].second, 1e-9, 1e-11, ga[i].first);
  // Another seed draws other masks: the loss moves (the dropout is really on).
  manual_seed(100);
  NoGradGuard no_grad;
  EXPECT_GT(std::abs(reversible.loss(x, y).item<double>() - a.item<double>()), 1e-6);
}

// Causal exactness with real hashing (chunks of L / 8): the loss at position i has exactly zero gradient with
// respect to every later position's embedding, and the outputs before a perturbed token do not move when the
// windows cover the past.
TEST(ReformerLM, CausalExactness) {
  const int64_t B = 1, L = 64;
  ReformerConfig c = tiny(L);
  c.lsh_chunk = c.local_chunk = 8;
  c.positions = "learned";
  c.n_hashes = 2;
  manual_seed(5);
  ReformerLM model(c, kFloat64);
  Tensor x = tokens_for(B, L, 6);
  const int64_t i = 37;
  Tensor y = full({B, L}, -100.0, kInt64);
  {
    NoGradGuard no_grad;
    y.narrow(1, i, 1).fill_(3.0);
  }
  model.loss(x, y).backward();
  auto table = std::static_pointer_cast<nn::Embedding>(model.pos);
  Tensor g = table->weight.grad();
  ASSERT_TRUE(g.defined());
  EXPECT_EQ(test::max_abs(g.narrow(0, i + 1, L - i - 1)), 0.0) << "a later position received gradient";
  EXPECT_GT(test::max_abs(g.narrow(0, 0, i + 1)), 0.0);

  // Perturbation, with windows that cover the past (chunk L / 2, one back): logits before the change stay.
  ReformerLM covering(tiny(L), kFloat64);
  NoGradGuard no_grad;
  Tensor x2 = x.clone();
  x2.narrow(1, 40, 1).fill_(static_cast<double>((x.select(1, 40).item<int64_t>() + 1) % 11));
  manual_seed(11);
  Tensor before = covering.forward(x);
  manual_seed(11);
  Tensor after = covering.forward(x2);
  expect_close(after.narrow(1, 0, 40), before.narrow(1, 0, 40), 1e-11, 1e-12, "logits before the change");
  EXPECT_GT(test::max_abs(sub(after.narrow(1, 40, L - 40), before.narrow(1, 40, L - 40))), 1e-6);
}

// Chunked feed-forward and chunked loss head give the unchunked loss and gradients (reformer.md test 13).
TEST(ReformerLM, ChunkedFeedForwardAndLossEqualUnchunked) {
  const int64_t B = 2, L = 32;
  ReformerConfig c = tiny(L);
  c.lsh_chunk = c.local_chunk = 8;
  manual_seed(8);
  ReformerLM model(c, kFloat64);
  Tensor x = tokens_for(B, L, 9), y = tokens_for(B, L, 10);
  manual_seed(1);
  Tensor whole = model.loss(x, y);
  whole.backward();
  auto g_whole = grads_of(model);
  model.zero_grad();
  model.set_ff_chunk(5);
  model.set_loss_chunk(7);
  manual_seed(1);
  // Targets as a temporary: the chunked head reruns in backward, after loss() returned, so it must hold its own
  // handle to them; a reference to the argument would dangle here (a sanitizer build, -DLOOM_SANITIZE=ON, is
  // where that shows).
  Tensor chunked = model.loss(x, y.clone());
  chunked.backward();
  expect_close(chunked, whole, 1e-12, 1e-13, "loss");
  auto g_chunked = grads_of(model);
  for (size_t i = 0; i < g_whole.size(); ++i)
    expect_close(g_chunked[i].second, g_whole[i].second, 1e-10, 1e-12, g_whole[i].first);
}

// Ignored targets (-100) do not count: the loss is the mean over the rest.
TEST(ReformerLM, LossIgnoresMaskedTargets) {
  const int64_t B = 1, L = 16;
  manual_seed(3);
  ReformerLM model(tiny(L), kFloat64);
  Tensor x = tokens_for(B, L, 1), y = tokens_for(B, L, 2);
  NoGradGuard no_grad;
  Tensor logp = log_softmax(model.forward(x), -1);
  double want = 0;
  Tensor masked = y.clone();
  for (int64_t t = 0; t < L; ++t) {
    if (t < 9) {
      masked.narrow(1, t, 1).fill_(-100.0);
      continue;
    }
    want -= logp.select(0, 0).select(0, t).select(0, y.select(1, t).item<int64_t>()).item<double>();
  }
  EXPECT_NEAR(model.loss(x, masked).item<double>(), want / (L - 9), 1e-12);
  expect_error([&] { model.loss(x, full({B, L}, -100.0, kInt64)); }, "every target");
}

TEST(AxialPositionEmbedding, ConcatenatesTheFactorRowsAndSumsTheirGradients) {
  manual_seed(4);
  nn::AxialPositionEmbedding axial({3, 4}, {2, 5}, kFloat64);
  Tensor e = axial.forward(12);
  ASSERT_EQ(e.shape(), Shape({12, 7}));
  for (int64_t p = 0; p < 12; ++p) {
    expect_close(e.select(0, p).narrow(0, 0, 2), axial.weights[0].select(0, p / 4), 0, 0, "E1 part");
    expect_close(e.select(0, p).narrow(0, 2, 5), axial.weights[1].select(0, p % 4), 0, 0, "E2 part");
  }
  // d(sum of w * e)/dE1[i] = sum over j of w[i * 4 + j][:2]
  Tensor w = test::normal({10, 7}, 3);
  sum(mul(axial.forward(10), w)).backward();
  Tensor g1 = axial.weights[0].grad(), g2 = axial.weights[1].grad();
  for (int64_t i = 0; i < 3; ++i) {
    Tensor want = zeros({2}, kFloat64);
    for (int64_t j = 0; j < 4 && i * 4 + j < 10; ++j) want = add(want, w.select(0, i * 4 + j).narrow(0, 0, 2));
    expect_close(g1.select(0, i), want, 1e-14, 1e-14, "dE1");
  }
  for (int64_t j = 0; j < 4; ++j) {
    Tensor want = zeros({5}, kFloat64);
    for (int64_t i = 0; i < 3 && i * 4 + j < 10; ++i) want = add(want, w.select(0, i * 4 + j).narrow(0, 2, 5));
    expect_close(g2.select(0, j), want, 1e-14, 1e-14, "dE2");
  }
  expect_error([&] { axial.forward(13); }, {"AxialPositionEmbedding", "13", "[3, 4]"});
  expect_error([] { nn::AxialPositionEmbedding({3, 4}, {2}); }, "same length");
}

TEST(ReformerLM, ConfigAndInputErrorsNameTheProblem) {
  ReformerConfig c = tiny(16);
  c.attention = {"lsh", "dense"};
  expect_error([&] { ReformerLM m(c); }, {"'dense'", "lsh"});
  c = tiny(16);
  c.axial_dims = {4, 5};
  expect_error([&] { ReformerLM m(c); }, {"axial dims", "sum to 9", "d_model = 8"});
  c = tiny(16);
  c.vocab_size = 0;
  expect_error([&] { ReformerLM m(c); }, "must be positive");
  ReformerLM m(tiny(16));
  expect_error([&] { m.forward(zeros({1, 12}, kInt64)); }, {"sequence length 12", "multiple", "8"});
  expect_error([&] { m.forward(zeros({1, 32}, kInt64)); }, {"32", "max_seq = 16"});
  expect_error([&] { m.forward(zeros({1, 16})); }, "int64 tokens");
  expect_error([&] { m.loss(zeros({1, 16}, kInt64), zeros({1, 8}, kInt64)); }, "targets");
}

TEST(ReformerLM, CheckpointRoundTrip) {
  const int64_t L = 16;
  manual_seed(12);
  ReformerLM a(tiny(L));
  manual_seed(13);
  ReformerLM b(tiny(L));
  std::string path = (std::filesystem::temp_directory_path() / "loom_reformer_ckpt.safetensors").string();
  nn::save_checkpoint(path, a, nullptr, {{"config", a.config().str()}});
  auto meta = nn::load_checkpoint(path, b);
  EXPECT_EQ(meta.at("config"), a.config().str());
  Tensor x = tokens_for(2, L, 3);
  NoGradGuard no_grad;
  manual_seed(1);
  Tensor ya = a.forward(x);
  manual_seed(1);
  Tensor yb = b.forward(x);
  EXPECT_TRUE(test::identical(ya, yb));
  std::filesystem::remove(path);
}

// Greedy sampling picks the argmax of the model's own next-token logits; temperature sampling is reproducible
// from the seed.
TEST(ReformerLM, SamplingFollowsTheLogits) {
  const int64_t L = 16;
  manual_seed(21);
  ReformerLM model(tiny(L));
  Tensor prompt = tokens_for(1, 5, 22).reshape({5});
  manual_seed(1);
  Tensor greedy = sample(model, prompt, 3, 0.0);
  ASSERT_EQ(greedy.size(0), 8);
  EXPECT_TRUE(test::identical(greedy.narrow(0, 0, 5), prompt));
  // The first sampled token: argmax of the logits at the prompt's last position (prompt padded to 8).
  {
    NoGradGuard no_grad;
    Tensor padded = zeros({1, 8}, kInt64);
    padded.narrow(1, 0, 5).copy_(prompt.unsqueeze(0));
    Tensor pad = ones({1, 8}, DType::Bool);
    pad.narrow(1, 0, 5).fill_(0.0);
    manual_seed(1);
    Tensor logits = model.forward(padded, pad);
    EXPECT_EQ(greedy.select(0, 5).item<int64_t>(), logits.select(1, 4).argmax(-1).item<int64_t>());
  }
  manual_seed(5);
  Tensor s1 = sample(model, prompt, 20, 1.0);
  manual_seed(5);
  Tensor s2 = sample(model, prompt, 20, 1.0);
  EXPECT_TRUE(test::identical(s1, s2));
  EXPECT_EQ(s1.size(0), 25);  // the context window slides once the sequence outgrows max_seq
  expect_error([&] { sample(model, prompt, 3, -1.0); }, "temperature");
}

}  // namespace
}  // namespace loom::models
