#include "loom/models/char_mlp/train_char_mlp.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <numbers>

#include "loom/core/parallel.h"
#include "loom/models/common/training_log.h"
#include "loom/models/data/text_corpus.h"
#include "loom/nn/safetensors.h"
#include "loom/ops/ops.h"

namespace loom::models {
namespace {

constexpr double kLn2 = std::numbers::ln2;

// B random windows of context + 1 tokens: contexts [B, context] and next tokens [B].
std::pair<Tensor, Tensor> sample_batch(const Tensor& tokens, int64_t batch, int64_t context, Device device) {
  Tensor starts = randint(0, tokens.size(0) - context, {batch, 1});
  Tensor window = add(starts, arange(context + 1).unsqueeze(0));  // [B, context + 1]
  Tensor picked = index_select(tokens, 0, window.reshape({-1})).reshape({batch, context + 1}).to(device);
  return {picked.narrow(1, 0, context).contiguous(), picked.select(1, context).contiguous()};
}

// Bits per character over every position of `tokens` that has a full context.
double evaluate_bpc(const CharMlp& model, const Tensor& tokens, Device device) {
  int64_t context = model.config().context, n = tokens.size(0) - context;
  constexpr int64_t kChunk = 8192;
  double total_nats = 0;
  for (int64_t start = 0; start < n; start += kChunk) {
    int64_t b = std::min(kChunk, n - start);
    Tensor window = add(arange(start, start + b).unsqueeze(1), arange(context + 1).unsqueeze(0));
    Tensor picked = index_select(tokens, 0, window.reshape({-1})).reshape({b, context + 1}).to(device);
    total_nats += model.loss_and_grads(picked.narrow(1, 0, context).contiguous(),
                                       picked.select(1, context).contiguous(), nullptr) *
                  static_cast<double>(b);
  }
  return total_nats / static_cast<double>(n) / kLn2;
}

// Adam (Kingma & Ba) with bias correction; state tensors live beside the parameters.
struct Adam {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  std::vector<Tensor> m, v;
  int64_t step = 0;

  void init(const std::vector<std::pair<std::string, Tensor*>>& params) {
    for (auto& [name, p] : params) {
      m.push_back(zeros_like(*p));
      v.push_back(zeros_like(*p));
    }
  }
  void update(const std::vector<std::pair<std::string, Tensor*>>& params, const std::vector<Tensor*>& grads,
              double lr) {
    ++step;
    double c1 = 1 - std::pow(beta1, static_cast<double>(step)),
           c2 = 1 - std::pow(beta2, static_cast<double>(step));
    for (size_t i = 0; i < params.size(); ++i) {
      const Tensor& g = *grads[i];
      m[i] = add(mul(m[i], beta1), mul(g, 1 - beta1));
      v[i] = add(mul(v[i], beta2), mul(square(g), 1 - beta2));
      Tensor update = div(div(m[i], c1), add(sqrt(div(v[i], c2)), eps));
      Tensor& p = *params[i].second;
      p = sub(p, mul(update, lr));
    }
  }
};

std::string config_string(const CharMlpConfig& c) {
  return detail::concat("vocab=", c.vocab_size, " context=", c.context, " embed=", c.embed_dim,
                        " hidden=", c.hidden);
}

void save_checkpoint(const std::string& path, CharMlp& model, const Adam& adam, int64_t step) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  auto params = model.named_parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    tensors.emplace_back(params[i].first, *params[i].second);
    tensors.emplace_back("adam.m." + params[i].first, adam.m[i]);
    tensors.emplace_back("adam.v." + params[i].first, adam.v[i]);
  }
  PhiloxState rng = default_generator().state();
  save_safetensors(path, tensors,
                   {{"config", config_string(model.config())},
                    {"step", std::to_string(step)},
                    {"rng_seed", std::to_string(rng.seed)},
                    {"rng_offset", std::to_string(rng.offset)}});
}

// Restores parameters, Adam state and the random stream; returns the step to continue from.
int64_t load_checkpoint(const std::string& path, CharMlp& model, Adam& adam) {
  auto [tensors, metadata] = load_safetensors_with_metadata(path);
  LOOM_CHECK(metadata["config"] == config_string(model.config()), "resume: checkpoint '", path,
             "' was trained with ", metadata["config"], " but this run asks for ",
             config_string(model.config()));
  auto params = model.named_parameters();
  auto take = [&](const std::string& name, const Tensor& like) {
    auto it = tensors.find(name);
    LOOM_CHECK(it != tensors.end(), "resume: checkpoint '", path, "' has no tensor '", name, "'");
    LOOM_CHECK(it->second.shape() == like.shape(), "resume: tensor '", name, "' has shape ",
               it->second.shape(), " in the checkpoint but ", like.shape(), " in the model");
    return it->second.to(like.device());
  };
  // Everything is read and checked before anything is assigned, so a bad file leaves the model untouched.
  std::vector<Tensor> p, m, v;
  for (size_t i = 0; i < params.size(); ++i) {
    p.push_back(take(params[i].first, *params[i].second));
    m.push_back(take("adam.m." + params[i].first, *params[i].second));
    v.push_back(take("adam.v." + params[i].first, *params[i].second));
  }
  int64_t step = std::stoll(metadata["step"]);
  for (size_t i = 0; i < params.size(); ++i) *params[i].second = p[i];
  adam.m = m;
  adam.v = v;
  adam.step = step;
  default_generator().set_state({std::stoull(metadata["rng_seed"]), std::stoull(metadata["rng_offset"])});
  return step;
}

}  // namespace

int train_char_mlp(const CharMlpTrainOptions& opt) {
  LOOM_CHECK(opt.steps > 0 && opt.batch > 0 && opt.eval_every > 0 && opt.checkpoint_every > 0,
             "train charmlp: --steps, --batch, --eval-every and --checkpoint-every must be positive");
  LOOM_CHECK(opt.lr > 0 && opt.lr_final >= 0,
             "train charmlp: --lr must be positive and --lr-final non-negative");
  const Device device = train::open_training_device(opt.device, opt.threads);
  manual_seed(opt.seed);

  auto t0 = std::chrono::steady_clock::now();
  data::TextCorpus corpus = data::load_text_corpus(opt.data, opt.cache_dir);
  std::fprintf(stderr, "%s\n", corpus.summary().c_str());

  CharMlpConfig cfg = opt.model;
  cfg.vocab_size = corpus.vocab_size();
  CharMlp model(cfg, device);
  auto params = model.named_parameters();
  Adam adam;
  adam.init(params);

  std::filesystem::create_directories(opt.out_dir);
  std::string ckpt = (std::filesystem::path(opt.out_dir) / "checkpoint.safetensors").string();
  int64_t start_step = 0;
  if (opt.resume) {
    start_step = load_checkpoint(ckpt, model, adam);
    std::fprintf(stderr, "resumed from %s at step %lld\n", ckpt.c_str(), static_cast<long long>(start_step));
  }
  train::MetricsWriter metrics((std::filesystem::path(opt.out_dir) / "metrics.jsonl").string());
  train::ProgressBar bar(opt.steps);

  CharMlpGrads grads;
  double smoothed = NAN;
  for (int64_t step = start_step; step < opt.steps; ++step) {
    double progress = static_cast<double>(step) / static_cast<double>(opt.steps);
    double lr = opt.lr_final + 0.5 * (opt.lr - opt.lr_final) * (1 + std::cos(std::numbers::pi * progress));
    auto [x, y] = sample_batch(corpus.train, opt.batch, cfg.context, device);
    double loss = model.loss_and_grads(x, y, &grads);
    LOOM_CHECK(std::isfinite(loss), "train charmlp: loss became ", loss, " at step ", step, "; lower --lr");
    adam.update(params, grads.list(), lr);
    smoothed = std::isnan(smoothed) ? loss : 0.95 * smoothed + 0.05 * loss;
    int64_t done = step + 1;
    if (done % 50 == 0) metrics.write(done, "train", {{"loss", loss}, {"bpc", loss / kLn2}, {"lr", lr}});
    bar.update(done, (done - start_step) * opt.batch,
               detail::concat("train bpc ", std::round(smoothed / kLn2 * 1000) / 1000));
    if (done % opt.eval_every == 0 || done == opt.steps) {
      double bpc = evaluate_bpc(model, corpus.valid, device);
      double minutes = train::minutes_since(t0);
      metrics.write(done, "valid", {{"bpc", bpc}, {"minutes", minutes}});
      std::fprintf(stderr, "%sstep %lld: valid bpc %.4f (%.1f min)\n", "\n", static_cast<long long>(done),
                   bpc, minutes);
    }
    if (done % opt.checkpoint_every == 0 || done == opt.steps) save_checkpoint(ckpt, model, adam, done);
  }
  bar.finish();
  double test_bpc = evaluate_bpc(model, corpus.test, device);
  double minutes = train::minutes_since(t0);
  metrics.write(opt.steps, "test", {{"bpc", test_bpc}, {"minutes", minutes}});
  std::printf("test bpc %.4f after %lld steps (%.1f min); gzip -9 on the whole KJV text: 2.334 bpc\n",
              test_bpc, static_cast<long long>(opt.steps), minutes);
  return 0;
}

}  // namespace loom::models
