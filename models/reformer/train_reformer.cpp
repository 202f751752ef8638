#include "loom/models/reformer/train_reformer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numbers>

#include "loom/autograd/grad_mode.h"
#include "loom/core/parallel.h"
#include "loom/models/common/training_log.h"
#include "loom/models/common/training_loop.h"
#include "loom/models/data/duplication_task.h"
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
constexpr const char* kTrain = "train reformer";

// The whole configuration, so that `loom sample` and --resume rebuild exactly the trained model.
nlohmann::json config_to_json(const ReformerConfig& c) {
  return {{"vocab_size", c.vocab_size},
          {"d_model", c.d_model},
          {"d_ff", c.d_ff},
          {"layers", c.layers},
          {"heads", c.heads},
          {"head_dim", c.head_dim},
          {"attention", c.attention},
          {"lsh_chunk", c.lsh_chunk},
          {"lsh_chunks_before", c.lsh_chunks_before},
          {"n_hashes", c.n_hashes},
          {"n_buckets", c.n_buckets},
          {"local_chunk", c.local_chunk},
          {"local_chunks_before", c.local_chunks_before},
          {"max_seq", c.max_seq},
          {"positions", c.positions},
          {"axial_shape", c.axial_shape},
          {"axial_dims", c.axial_dims},
          {"dropout", c.dropout},
          {"activation", c.activation},
          {"eps", c.eps},
          {"ff_chunk", c.ff_chunk},
          {"loss_chunk", c.loss_chunk},
          {"reversible", c.reversible}};
}

ReformerConfig config_from_json(const nlohmann::json& j) {
  ReformerConfig c;
  j.at("vocab_size").get_to(c.vocab_size);
  j.at("d_model").get_to(c.d_model);
  j.at("d_ff").get_to(c.d_ff);
  j.at("layers").get_to(c.layers);
  j.at("heads").get_to(c.heads);
  j.at("head_dim").get_to(c.head_dim);
  j.at("attention").get_to(c.attention);
  j.at("lsh_chunk").get_to(c.lsh_chunk);
  j.at("lsh_chunks_before").get_to(c.lsh_chunks_before);
  j.at("n_hashes").get_to(c.n_hashes);
  j.at("n_buckets").get_to(c.n_buckets);
  j.at("local_chunk").get_to(c.local_chunk);
  j.at("local_chunks_before").get_to(c.local_chunks_before);
  j.at("max_seq").get_to(c.max_seq);
  j.at("positions").get_to(c.positions);
  j.at("axial_shape").get_to(c.axial_shape);
  j.at("axial_dims").get_to(c.axial_dims);
  j.at("dropout").get_to(c.dropout);
  j.at("activation").get_to(c.activation);
  j.at("eps").get_to(c.eps);
  j.at("ff_chunk").get_to(c.ff_chunk);
  j.at("loss_chunk").get_to(c.loss_chunk);
  j.at("reversible").get_to(c.reversible);
  return c;
}

// The corpus's byte vocabulary as a hex string (checkpoint metadata holds text).
std::string hex_of(const std::vector<unsigned char>& bytes) {
  static const char* kDigits = "0123456789abcdef";
  std::string s;
  for (unsigned char b : bytes) {
    s.push_back(kDigits[b >> 4]);
    s.push_back(kDigits[b & 15]);
  }
  return s;
}

std::vector<unsigned char> bytes_of_hex(const std::string& s) {
  LOOM_CHECK(s.size() % 2 == 0, "checkpoint: malformed vocabulary (odd hex length ", s.size(), ")");
  std::vector<unsigned char> out;
  for (size_t i = 0; i < s.size(); i += 2)
    out.push_back(static_cast<unsigned char>(std::stoi(s.substr(i, 2), nullptr, 16)));
  return out;
}

// B random windows of seq + 1 characters: inputs [B, seq] and the next characters [B, seq].
std::pair<Tensor, Tensor> sample_windows(const Tensor& tokens, int64_t batch, int64_t seq, Device device) {
  Tensor starts = randint(0, tokens.size(0) - seq, {batch, 1});
  Tensor window = add(starts, arange(seq + 1).unsqueeze(0));
  Tensor picked = index_select(tokens, 0, window.reshape({-1})).reshape({batch, seq + 1}).to(device);
  return {picked.narrow(1, 0, seq).contiguous(), picked.narrow(1, 1, seq).contiguous()};
}

// Bits per character over the complete windows of seq + 1 characters in the first `limit` characters of
// tokens (all when limit <= 0), every position predicted once. A tail shorter than one window is not scored
// (the attention layers take only lengths that are multiples of their chunks); it is under seq of millions.
double evaluate_bpc(ReformerLM& model, const Tensor& tokens, int64_t seq, int64_t limit, Device device) {
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  int64_t n = tokens.size(0) - 1;
  if (limit > 0) n = std::min(n, limit);
  const int64_t windows = n / seq;
  LOOM_CHECK(windows > 0, kTrain, ": the evaluation split has ", n + 1,
             " characters, fewer than one window of ", seq + 1);
  const int64_t rows_per_batch = std::max<int64_t>(1, 16384 / seq);
  double nats = 0;
  for (int64_t w = 0; w < windows; w += rows_per_batch) {
    const int64_t rows = std::min(rows_per_batch, windows - w);
    Tensor x = tokens.narrow(0, w * seq, rows * seq).reshape({rows, seq}).to(device);
    Tensor y = tokens.narrow(0, w * seq + 1, rows * seq).reshape({rows, seq}).to(device);
    nats += model.loss(x, y).item<double>() * static_cast<double>(rows * seq);
  }
  model.train(was_training);
  return nats / static_cast<double>(windows * seq) / kLn2;
}

// Duplication batches come from Philox streams of their own, indexed by step, so a resumed run sees the same
// data as an uninterrupted one and every evaluation uses the same held-out sequences.
data::DuplicationBatch duplication_batch(const ReformerTrainOptions& o, uint64_t stream, int64_t index) {
  const uint64_t counters = data::duplication_counters(o.batch, o.w_len);
  return data::make_duplication_batch(
      o.batch, o.w_len, o.symbols,
      PhiloxState{o.seed * 0x9E3779B97F4A7C15ULL + stream, static_cast<uint64_t>(index) * counters});
}

double duplication_accuracy(ReformerLM& model, const ReformerTrainOptions& o, Device device) {
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  double correct = 0;
  for (int64_t i = 0; i < o.eval_batches; ++i) {
    data::DuplicationBatch b = duplication_batch(o, /*stream=*/2, i);
    Tensor predicted = model.forward(b.inputs.to(device)).argmax(-1);
    correct += data::masked_accuracy(predicted, b.targets.to(device));
  }
  model.train(was_training);
  return correct / static_cast<double>(o.eval_batches);
}

// One Table 2 row: the model evaluated with full attention and with 8, 4, 2, 1 hash rounds.
std::vector<std::pair<std::string, double>> duplication_row(ReformerLM& model, const ReformerTrainOptions& o,
                                                            Device device) {
  std::vector<std::pair<std::string, double>> row;
  const int64_t trained_hashes = model.config().n_hashes;
  model.set_full_attention(true);
  row.emplace_back("full", duplication_accuracy(model, o, device));
  model.set_full_attention(false);
  for (int64_t h : {8, 4, 2, 1}) {
    model.set_n_hashes(h);
    row.emplace_back("lsh-" + std::to_string(h), duplication_accuracy(model, o, device));
  }
  model.set_n_hashes(trained_hashes);
  model.set_full_attention(o.train_full_attention);
  return row;
}

std::string decode(const std::vector<unsigned char>& vocab, const Tensor& ids) {
  Tensor host = ids.to(Device("cpu")).contiguous();
  std::string s;
  for (int64_t i = 0; i < host.size(0); ++i)
    s.push_back(static_cast<char>(vocab[static_cast<size_t>(host.data<int64_t>()[i])]));
  return s;
}

// The prompt's characters as token ids; a character outside the vocabulary is an error that names it.
Tensor encode(const std::vector<unsigned char>& vocab, const std::string& text) {
  std::vector<int64_t> lookup(256, -1);
  for (size_t i = 0; i < vocab.size(); ++i) lookup[vocab[i]] = static_cast<int64_t>(i);
  Tensor ids = Tensor::empty({static_cast<int64_t>(text.size())}, kInt64);
  for (size_t i = 0; i < text.size(); ++i) {
    int64_t id = lookup[static_cast<unsigned char>(text[i])];
    LOOM_CHECK(id >= 0, "sample: the prompt's character '", std::string(1, text[i]), "' (byte ",
               static_cast<int>(static_cast<unsigned char>(text[i])), ") is not in the model's vocabulary");
    ids.data<int64_t>()[i] = id;
  }
  return ids;
}

}  // namespace

int train_reformer(const ReformerTrainOptions& opt) {
  LOOM_CHECK(opt.task == "lm" || opt.task == "duplication", kTrain,
             ": --task must be 'lm' or 'duplication', got '", opt.task, "'");
  LOOM_CHECK(
      opt.steps > 0 && opt.batch > 0 && opt.seq > 0 && opt.eval_every > 0 && opt.checkpoint_every > 0 &&
          opt.eval_batches > 0,
      kTrain,
      ": --steps, --batch, --seq, --eval-every, --eval-batches and --checkpoint-every must be positive");
  LOOM_CHECK(opt.lr > 0 && opt.lr_final >= 0 && opt.warmup >= 0 && opt.clip >= 0 && opt.weight_decay >= 0,
             kTrain, ": --lr must be positive and --lr-final, --warmup, --clip, --weight-decay non-negative");
  LOOM_CHECK(opt.eval_hashes >= 0 && opt.temperature >= 0 && opt.sample_chars >= 0, kTrain,
             ": --eval-hashes, --temperature and --sample-chars must be non-negative");
  const Device device = train::open_training_device(opt.device, opt.threads);
  manual_seed(opt.seed);
  const auto t0 = std::chrono::steady_clock::now();
  const bool lm = opt.task == "lm";

  ReformerConfig cfg = opt.model;
  data::TextCorpus corpus;
  int64_t seq = opt.seq;
  if (lm) {
    corpus = data::load_text_corpus(opt.data, opt.cache_dir);
    std::fprintf(stderr, "%s\n", corpus.summary().c_str());
    cfg.vocab_size = corpus.vocab_size();
  } else {
    LOOM_CHECK(opt.w_len >= 1 && opt.symbols >= 1, kTrain, ": --w-len and --symbols must be positive, got ",
               opt.w_len, " and ", opt.symbols);
    cfg.vocab_size = opt.symbols + 1;
    seq = 2 * opt.w_len + 2;
    std::fprintf(
        stderr, "task duplication: sequences 0 w 0 w with |w| = %lld over %lld symbols (length %lld)\n",
        static_cast<long long>(opt.w_len), static_cast<long long>(opt.symbols), static_cast<long long>(seq));
  }
  cfg.max_seq = seq;
  ReformerLM model(cfg, {kFloat32, device});
  const int64_t multiple = model.length_multiple();
  LOOM_CHECK(seq % multiple == 0 || seq <= std::min(cfg.lsh_chunk, cfg.local_chunk), kTrain,
             ": the sequence length ", seq, " must be a multiple of the attention chunks (", multiple, ")",
             lm ? "; change --seq" : "; change --w-len (length 2 |w| + 2) or the chunks");
  if (opt.train_full_attention) model.set_full_attention(true);
  std::fprintf(stderr, "model: %s, %lld parameters%s\n", model.config().str().c_str(),
               static_cast<long long>(model.num_parameters()),
               opt.train_full_attention ? " (LSH layers trained as full attention)" : "");

  nn::AdamOptions adam;
  adam.lr = opt.lr;
  adam.betas = {0.9, 0.98};
  adam.eps = 1e-9;
  adam.weight_decay = opt.weight_decay;
  nn::AdamW optimizer(model.named_parameters(), adam);
  auto schedule =
      nn::cosine_with_warmup_schedule(opt.lr, std::min(opt.warmup, opt.steps), opt.steps, opt.lr_final);

  std::filesystem::create_directories(opt.out_dir);
  const std::string ckpt = (std::filesystem::path(opt.out_dir) / "checkpoint.safetensors").string();
  const std::string arch = model.config().str();
  const std::string vocab_hex = lm ? hex_of(corpus.vocab) : "";
  int64_t start_step = 0;
  train::TrainingClock clock(opt.time_budget);
  if (opt.resume) {
    LOOM_CHECK(std::filesystem::exists(ckpt), kTrain, ": --resume but there is no checkpoint at '", ckpt,
               "'");
    // The architecture and task are checked before anything is loaded: the same shapes can be another model.
    auto saved = load_safetensors_with_metadata(ckpt).metadata;
    LOOM_CHECK(saved["model"] == "reformer" && saved["task"] == opt.task, kTrain, ": checkpoint '", ckpt,
               "' holds a '", saved["model"], "' model for task '", saved["task"], "', not a reformer for '",
               opt.task, "'");
    LOOM_CHECK(saved["config"] == arch, "resume: checkpoint '", ckpt, "' was trained with ", saved["config"],
               " but this run asks for ", arch);
    LOOM_CHECK(saved["vocab"] == vocab_hex, "resume: checkpoint '", ckpt,
               "' was trained on another vocabulary (different --data)");
    auto meta = nn::load_checkpoint(ckpt, model, &optimizer);
    start_step = std::stoll(meta.at("step"));
    clock = train::TrainingClock::resumed(opt.time_budget, meta);
    std::fprintf(stderr, "resumed from %s at step %lld\n", ckpt.c_str(), static_cast<long long>(start_step));
  }
  train::MetricsWriter metrics((std::filesystem::path(opt.out_dir) / "metrics.jsonl").string());
  train::ProgressBar bar(opt.steps);
  auto save = [&](int64_t step) {
    nn::save_checkpoint(ckpt, model, &optimizer,
                        {{"model", "reformer"},
                         {"task", opt.task},
                         {"config", arch},
                         {"config_json", config_to_json(model.config()).dump()},
                         {"vocab", vocab_hex},
                         {"step", std::to_string(step)},
                         {train::TrainingClock::kMetadataKey, clock.minutes_text()}});
  };
  // Evaluation may use more hash rounds than training (the paper's advice); training resumes with its own.
  auto with_eval_hashes = [&](auto&& fn) {
    const int64_t trained = model.config().n_hashes;
    if (opt.eval_hashes > 0) model.set_n_hashes(opt.eval_hashes);
    auto result = fn();
    model.set_n_hashes(trained);
    return result;
  };

  model.train();
  double smoothed = NAN;
  train::LoopHooks hooks;
  hooks.train_step = [&](int64_t step) {
    const double lr = nn::apply_lr(optimizer, schedule, step + 1);
    Tensor x, y;
    if (lm) {
      std::tie(x, y) = sample_windows(corpus.train, opt.batch, seq, device);
    } else {
      data::DuplicationBatch b = duplication_batch(opt, /*stream=*/1, step);
      x = b.inputs.to(device);
      y = b.targets.to(device);
    }
    Tensor loss = model.loss(x, y);
    const double loss_value = loss.item<double>();
    LOOM_CHECK(std::isfinite(loss_value), kTrain, ": loss became ", loss_value, " at step ", step,
               "; lower --lr");
    optimizer.zero_grad();
    loss.backward();
    const double grad_norm =
        opt.clip > 0 ? nn::clip_grad_norm_(model.parameters(), opt.clip).item<double>() : 0.0;
    optimizer.step();
    smoothed = std::isnan(smoothed) ? loss_value : 0.95 * smoothed + 0.05 * loss_value;
    const int64_t done = step + 1;
    if (done % 10 == 0) {
      std::map<std::string, double> m{{"loss", loss_value}, {"lr", lr}, {"grad_norm", grad_norm}};
      if (lm) m["bpc"] = loss_value / kLn2;
      metrics.write(done, "train", m);
    }
    bar.update(done, (done - start_step) * opt.batch * seq,
               lm ? detail::concat("train bpc ", std::round(smoothed / kLn2 * 1000) / 1000)
                  : detail::concat("train loss ", std::round(smoothed * 1000) / 1000));
  };
  hooks.validate = [&](int64_t done) {
    const double minutes = train::minutes_since(t0);
    if (lm) {
      double bpc =
          with_eval_hashes([&] { return evaluate_bpc(model, corpus.valid, seq, opt.eval_tokens, device); });
      metrics.write(done, "valid", {{"bpc", bpc}, {"minutes", minutes}, {"train_minutes", clock.minutes()}});
      std::fprintf(stderr, "\nstep %lld: valid bpc %.4f (%.1f min)\n", static_cast<long long>(done), bpc,
                   minutes);
    } else {
      double acc = duplication_accuracy(model, opt, device);
      metrics.write(done, "valid",
                    {{"accuracy", acc}, {"minutes", minutes}, {"train_minutes", clock.minutes()}});
      std::fprintf(stderr, "\nstep %lld: accuracy on the second copy %.4f (%.1f min)\n",
                   static_cast<long long>(done), acc, minutes);
    }
  };
  hooks.save = save;
  const train::LoopOutcome outcome = train::run_training_loop(
      {start_step, opt.steps, opt.eval_every, opt.checkpoint_every, opt.stop_after, opt.profile,
       opt.profile > 0 ? opt.out_dir + "/op_profile.txt" : std::string()},
      clock, bar, hooks);
  if (outcome.end == train::LoopEnd::kStoppedAfter) return 0;
  const int64_t last_step = outcome.last_step;

  if (!lm) {
    auto row = duplication_row(model, opt, device);
    std::map<std::string, double> m;
    std::printf(
        "duplication accuracy (trained with %s):",
        opt.train_full_attention ? "full attention" : ("LSH-" + std::to_string(cfg.n_hashes)).c_str());
    for (const auto& [name, acc] : row) {
      m[name] = acc;
      std::printf(" %s %.1f%%", name.c_str(), 100 * acc);
    }
    std::printf(" (%.1f min)\n", train::minutes_since(t0));
    m["minutes"] = train::minutes_since(t0);
    m["train_minutes"] = clock.minutes();
    metrics.write(last_step, "test", m);
    return 0;
  }
  const double test_bpc = with_eval_hashes([&] { return evaluate_bpc(model, corpus.test, seq, 0, device); });
  const double minutes = train::minutes_since(t0);
  metrics.write(last_step, "test",
                {{"bpc", test_bpc}, {"minutes", minutes}, {"train_minutes", clock.minutes()}});
  std::printf("test bpc %.4f after %lld steps (%.1f min)\n", test_bpc, static_cast<long long>(last_step),
              minutes);
  if (opt.sample_chars > 0) {
    std::string prompt = opt.prompt;
    if (prompt.empty()) {  // the first line of the test split
      std::string test_text =
          decode(corpus.vocab, corpus.test.narrow(0, 0, std::min<int64_t>(200, corpus.test.size(0))));
      prompt = test_text.substr(0, std::min(test_text.find('\n') + 1, test_text.size()));
    }
    Tensor ids = with_eval_hashes(
        [&] { return sample(model, encode(corpus.vocab, prompt), opt.sample_chars, opt.temperature); });
    std::printf("sample (temperature %.2f):\n%s\n", opt.temperature, decode(corpus.vocab, ids).c_str());
  }
  return 0;
}

int sample_reformer(const ReformerSampleOptions& opt) {
  LOOM_CHECK(opt.chars >= 0 && opt.temperature >= 0 && opt.hashes >= 0,
             "sample reformer: --chars, --temperature "
             "and --hashes must be non-negative");
  Device device(opt.device);
  if (opt.threads > 0) set_num_threads(opt.threads);
  const std::string ckpt = (std::filesystem::path(opt.run_dir) / "checkpoint.safetensors").string();
  LOOM_CHECK(std::filesystem::exists(ckpt), "sample reformer: no checkpoint at '", ckpt,
             "' (train one with `loom train reformer --out ", opt.run_dir, "`)");
  auto meta = load_safetensors_with_metadata(ckpt).metadata;
  LOOM_CHECK(meta["model"] == "reformer" && meta["task"] == "lm", "sample reformer: '", ckpt, "' holds a '",
             meta["model"], "' model for task '", meta["task"],
             "'; sampling needs a reformer language model");
  ReformerConfig cfg;
  try {
    cfg = config_from_json(nlohmann::json::parse(meta.at("config_json")));
  } catch (const nlohmann::json::exception& e) {
    LOOM_CHECK(false, "sample reformer: '", ckpt, "' has a malformed configuration: ", e.what());
  }
  std::vector<unsigned char> vocab = bytes_of_hex(meta["vocab"]);
  LOOM_CHECK(static_cast<int64_t>(vocab.size()) == cfg.vocab_size, "sample reformer: '", ckpt,
             "' has a vocabulary of ", vocab.size(), " characters for a model of ", cfg.vocab_size);
  ReformerLM model(cfg, {kFloat32, device});
  nn::load_checkpoint(ckpt, model, nullptr, /*restore_rng=*/false);
  if (opt.hashes > 0) model.set_n_hashes(opt.hashes);
  manual_seed(opt.seed);
  const std::string prompt = opt.prompt.empty() ? std::string("\n") : opt.prompt;
  Tensor ids = sample(model, encode(vocab, prompt), opt.chars, opt.temperature);
  std::printf("%s\n", decode(vocab, ids).c_str());
  return 0;
}

}  // namespace loom::models
