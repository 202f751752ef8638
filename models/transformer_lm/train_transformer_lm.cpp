#include "loom/models/transformer_lm/train_transformer_lm.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numbers>

#include "loom/autograd/grad_mode.h"
#include "loom/core/parallel.h"
#include "loom/models/common/training_log.h"
#include "loom/models/common/training_loop.h"
#include "loom/models/data/text_corpus.h"
#include "loom/nn/checkpoint_io.h"
#include "loom/nn/clip_grad.h"
#include "loom/nn/lr_schedule.h"
#include "loom/nn/optim_adam.h"
#include "loom/nn/safetensors.h"
#include "loom/ops/ops.h"

namespace loom::models {
namespace {

constexpr double kLn2 = std::numbers::ln2;

// B random windows of seq + 1 tokens: inputs [B, seq] and the next tokens [B, seq].
std::pair<Tensor, Tensor> sample_batch(const Tensor& tokens, int64_t batch, int64_t seq, Device device) {
  Tensor starts = randint(0, tokens.size(0) - seq, {batch, 1});
  Tensor window = add(starts, arange(seq + 1).unsqueeze(0));  // [B, seq + 1]
  Tensor picked = index_select(tokens, 0, window.reshape({-1})).reshape({batch, seq + 1}).to(device);
  return {picked.narrow(1, 0, seq).contiguous(), picked.narrow(1, 1, seq).contiguous()};
}

// Bits per character over the first `limit` tokens of `tokens` (all when limit <= 0), read as consecutive
// windows of seq + 1 tokens, every position predicted once.
double evaluate_bpc(TransformerLm& model, const Tensor& tokens, int64_t seq, int64_t limit, Device device) {
  NoGradGuard no_grad;
  bool was_training = model.is_training();
  model.eval();
  int64_t n = tokens.size(0) - 1;
  if (limit > 0) n = std::min(n, limit);
  constexpr int64_t kBatch = 16;
  double nats = 0;
  int64_t counted = 0;
  for (int64_t start = 0; start < n; start += kBatch * seq) {
    int64_t rows = std::min(kBatch, (n - start) / seq);
    if (rows == 0) {  // the tail shorter than one window
      int64_t len = n - start;
      Tensor x = tokens.narrow(0, start, len).unsqueeze(0).to(device);
      Tensor y = tokens.narrow(0, start + 1, len).unsqueeze(0).to(device);
      nats += model.loss(x, y).item<double>() * static_cast<double>(len);
      counted += len;
      break;
    }
    Tensor x = tokens.narrow(0, start, rows * seq).reshape({rows, seq}).to(device);
    Tensor y = tokens.narrow(0, start + 1, rows * seq).reshape({rows, seq}).to(device);
    nats += model.loss(x, y).item<double>() * static_cast<double>(rows * seq);
    counted += rows * seq;
  }
  model.train(was_training);
  return nats / static_cast<double>(counted) / kLn2;
}

}  // namespace

int train_transformer_lm(const TransformerLmTrainOptions& opt) {
  LOOM_CHECK(
      opt.steps > 0 && opt.batch > 0 && opt.seq > 0 && opt.eval_every > 0 && opt.checkpoint_every > 0,
      "train transformer: --steps, --batch, --seq, --eval-every and --checkpoint-every must be positive");
  LOOM_CHECK(opt.lr > 0 && opt.lr_final >= 0 && opt.warmup >= 0 && opt.clip >= 0 && opt.weight_decay >= 0,
             "train transformer: --lr must be positive and --lr-final, --warmup, --clip, --weight-decay "
             "non-negative");
  const Device device = train::open_training_device(opt.device, opt.threads);
  manual_seed(opt.seed);

  auto t0 = std::chrono::steady_clock::now();
  data::TextCorpus corpus = data::load_text_corpus(opt.data, opt.cache_dir);
  std::fprintf(stderr, "%s\n", corpus.summary().c_str());

  TransformerLmConfig cfg = opt.model;
  cfg.vocab_size = corpus.vocab_size();
  cfg.max_seq = std::max(cfg.max_seq, opt.seq);
  TransformerLm model(cfg, {kFloat32, device});
  std::fprintf(stderr, "model: %s, %lld parameters\n", cfg.str().c_str(),
               static_cast<long long>(model.num_parameters()));
  nn::AdamOptions adam;
  adam.lr = opt.lr;
  adam.betas = {0.9, 0.99};
  adam.weight_decay = opt.weight_decay;
  nn::AdamW optimizer(model.named_parameters(), adam);
  // A run shorter than the warmup warms up over the whole run.
  auto schedule =
      nn::cosine_with_warmup_schedule(opt.lr, std::min(opt.warmup, opt.steps), opt.steps, opt.lr_final);

  std::filesystem::create_directories(opt.out_dir);
  std::string ckpt = (std::filesystem::path(opt.out_dir) / "checkpoint.safetensors").string();
  int64_t start_step = 0;
  train::TrainingClock clock(opt.time_budget);
  if (opt.resume) {
    // The configuration is checked before anything is loaded: same shapes can still mean another model.
    auto saved = load_safetensors_with_metadata(ckpt).metadata;
    LOOM_CHECK(saved["config"] == cfg.str(), "resume: checkpoint '", ckpt, "' was trained with ",
               saved["config"], " but this run asks for ", cfg.str());
    auto meta = nn::load_checkpoint(ckpt, model, &optimizer);
    start_step = std::stoll(meta.at("step"));
    clock = train::TrainingClock::resumed(opt.time_budget, meta);
    std::fprintf(stderr, "resumed from %s at step %lld\n", ckpt.c_str(), static_cast<long long>(start_step));
  }
  train::MetricsWriter metrics((std::filesystem::path(opt.out_dir) / "metrics.jsonl").string());
  train::ProgressBar bar(opt.steps);
  auto save = [&](int64_t step) {
    nn::save_checkpoint(ckpt, model, &optimizer,
                        {{"config", cfg.str()},
                         {"step", std::to_string(step)},
                         {train::TrainingClock::kMetadataKey, clock.minutes_text()}});
  };

  model.train();
  double smoothed = NAN;
  train::LoopHooks hooks;
  hooks.train_step = [&](int64_t step) {
    double lr = nn::apply_lr(optimizer, schedule, step + 1);
    auto [x, y] = sample_batch(corpus.train, opt.batch, opt.seq, device);
    Tensor loss = model.loss(x, y);
    double loss_value = loss.item<double>();
    LOOM_CHECK(std::isfinite(loss_value), "train transformer: loss became ", loss_value, " at step ", step,
               "; lower --lr");
    optimizer.zero_grad();
    loss.backward();
    double grad_norm = opt.clip > 0 ? nn::clip_grad_norm_(model.parameters(), opt.clip).item<double>() : 0.0;
    optimizer.step();
    smoothed = std::isnan(smoothed) ? loss_value : 0.95 * smoothed + 0.05 * loss_value;
    const int64_t done = step + 1;
    if (done % 10 == 0) {
      metrics.write(done, "train",
                    {{"loss", loss_value}, {"bpc", loss_value / kLn2}, {"lr", lr}, {"grad_norm", grad_norm}});
    }
    bar.update(done, (done - start_step) * opt.batch * opt.seq,
               detail::concat("train bpc ", std::round(smoothed / kLn2 * 1000) / 1000));
  };
  hooks.validate = [&](int64_t done) {
    double bpc = evaluate_bpc(model, corpus.valid, opt.seq, opt.eval_tokens, device);
    double minutes = train::minutes_since(t0);
    metrics.write(done, "valid", {{"bpc", bpc}, {"minutes", minutes}, {"train_minutes", clock.minutes()}});
    std::fprintf(stderr, "\nstep %lld: valid bpc %.4f (%.1f min)\n", static_cast<long long>(done), bpc,
                 minutes);
  };
  hooks.save = save;
  const train::LoopOutcome outcome = train::run_training_loop(
      {start_step, opt.steps, opt.eval_every, opt.checkpoint_every, opt.stop_after, opt.profile,
       opt.profile > 0 ? opt.out_dir + "/op_profile.txt" : std::string()},
      clock, bar, hooks);
  if (outcome.end == train::LoopEnd::kStoppedAfter) return 0;
  const int64_t last_step = outcome.last_step;
  double test_bpc = evaluate_bpc(model, corpus.test, opt.seq, 0, device);
  double minutes = train::minutes_since(t0);
  metrics.write(last_step, "test",
                {{"bpc", test_bpc}, {"minutes", minutes}, {"train_minutes", clock.minutes()}});
  std::printf("test bpc %.4f after %lld steps (%.1f min)%s\n", test_bpc, static_cast<long long>(last_step),
              minutes, opt.data == "kjv" ? "; gzip -9 on the whole KJV text: 2.334 bpc" : "");
  return 0;
}

}  // namespace loom::models
