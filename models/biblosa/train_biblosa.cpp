#include "loom/models/biblosa/train_biblosa.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "loom/autograd/grad_mode.h"
#include "loom/core/parallel.h"
#include "loom/models/common/training_log.h"
#include "loom/models/data/spam_assassin.h"
#include "loom/models/data/word_vocab.h"
#include "loom/models/data/wordnet_glosses.h"
#include "loom/nn/block_attention.h"
#include "loom/nn/checkpoint_io.h"
#include "loom/nn/clip_grad.h"
#include "loom/nn/optim_adam.h"
#include "loom/nn/safetensors.h"
#include "loom/ops/ops.h"

namespace loom::models {
namespace {

constexpr const char* kTrain = "train biblosa";
constexpr const char* kPredict = "predict biblosa";
constexpr int64_t kEvalBatch = 256;

nlohmann::json config_to_json(const TextClassifierConfig& c) {
  return {{"encoder", c.encoder},
          {"vocab_size", c.vocab_size},
          {"num_classes", c.num_classes},
          {"embed_dim", c.embed_dim},
          {"hidden_dim", c.hidden_dim},
          {"block_len", c.block_len},
          {"heads", c.heads},
          {"activation", c.activation},
          {"dropout", c.dropout},
          {"pair", c.pair},
          {"reference_parity", c.reference_parity}};
}

TextClassifierConfig config_from_json(const nlohmann::json& j) {
  TextClassifierConfig c;
  j.at("encoder").get_to(c.encoder);
  j.at("vocab_size").get_to(c.vocab_size);
  j.at("num_classes").get_to(c.num_classes);
  j.at("embed_dim").get_to(c.embed_dim);
  j.at("hidden_dim").get_to(c.hidden_dim);
  j.at("block_len").get_to(c.block_len);
  j.at("heads").get_to(c.heads);
  j.at("activation").get_to(c.activation);
  j.at("dropout").get_to(c.dropout);
  j.at("pair").get_to(c.pair);
  j.at("reference_parity").get_to(c.reference_parity);
  return c;
}

// Checkpoint metadata is JSON, which must be valid UTF-8, while words of e-mails can be any bytes (Latin-1
// mail): the lines are joined by '\n' and every byte outside printable ASCII, and the backslash, is written
// as \xHH.
std::string encode_lines(const std::vector<std::string>& items) {
  static const char* kHex = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) s.push_back('\n');
    for (unsigned char c : items[i]) {
      if (c >= 0x20 && c < 0x7f && c != '\\') {
        s.push_back(static_cast<char>(c));
      } else {
        s += "\\x";
        s.push_back(kHex[c >> 4]);
        s.push_back(kHex[c & 15]);
      }
    }
  }
  return s;
}

std::vector<std::string> decode_lines(const std::string& s, const std::string& what) {
  auto hex = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    LOOM_CHECK(false, kPredict, ": malformed ", what, " in the checkpoint's metadata (bad escape)");
    return 0;
  };
  std::vector<std::string> out(1);
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n') {
      out.emplace_back();
    } else if (s[i] == '\\') {
      LOOM_CHECK(i + 3 < s.size() && s[i + 1] == 'x', kPredict, ": malformed ", what,
                 " in the checkpoint's metadata (bad escape)");
      out.back().push_back(static_cast<char>(hex(s[i + 2]) * 16 + hex(s[i + 3])));
      i += 3;
    } else {
      out.back().push_back(s[i]);
    }
  }
  return out;
}

// A `label<TAB>text` file: labels are the distinct strings before the tab, numbered in order of appearance.
data::TextClassificationData load_labelled_file(const std::string& path, double train_fraction,
                                                uint64_t seed) {
  std::ifstream in(path);
  LOOM_CHECK(in.good(), kTrain, ": --data '", path,
             "' is neither 'wordnet', 'spam' nor a readable file of `label<TAB>text` lines");
  data::TextClassificationData d;
  d.name = std::filesystem::path(path).filename().string();
  std::map<std::string, int64_t> ids;
  int64_t line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const size_t tab = line.find('\t');
    LOOM_CHECK(tab != std::string::npos && tab > 0, kTrain, ": '", path, "' line ", line_no,
               " is not `label<TAB>text`");
    const std::string label = line.substr(0, tab);
    auto [it, added] = ids.emplace(label, static_cast<int64_t>(d.class_names.size()));
    if (added) d.class_names.push_back(label);
    d.texts.push_back(line.substr(tab + 1));
    d.labels.push_back(it->second);
    d.sources.push_back(path + ":" + std::to_string(line_no));
  }
  LOOM_CHECK(d.size() >= 2 && d.num_classes() >= 2, kTrain, ": '", path,
             "' needs at least two texts and two "
             "labels, found ",
             d.size(), " texts and ", d.num_classes(), " labels");
  data::split_random(d, train_fraction, seed);
  return d;
}

data::TextClassificationData load_data(const BiblosaTrainOptions& o) {
  LOOM_CHECK(o.split == "random" || o.split == "time", kTrain, ": --split must be 'random' or 'time', got '",
             o.split, "'");
  LOOM_CHECK(o.split == "random" || o.data == "spam", kTrain, ": --split time exists only for --data spam");
  if (o.data == "wordnet") {
    data::WordNetGlossOptions w;
    w.train_fraction = o.train_fraction > 0 ? o.train_fraction : 0.9;
    w.seed = o.data_seed;
    return data::load_wordnet_glosses(w);
  }
  if (o.data == "spam") {
    data::SpamAssassinOptions s;
    s.split = o.split == "time" ? data::SpamSplit::Time : data::SpamSplit::Random;
    s.train_fraction = o.train_fraction > 0 ? o.train_fraction : 0.8;
    s.seed = o.data_seed;
    return data::load_spam_assassin(s);
  }
  return load_labelled_file(o.data, o.train_fraction > 0 ? o.train_fraction : 0.9, o.data_seed);
}

// Encoded texts with their labels.
struct Examples {
  std::vector<std::vector<int64_t>> ids;
  std::vector<int64_t> labels;
  int64_t size() const { return static_cast<int64_t>(ids.size()); }
};

Examples encode(const data::TextClassificationData& d, const std::vector<int64_t>& indices,
                const data::TextVocab& vocab, int64_t max_len) {
  Examples e;
  for (int64_t i : indices) {
    e.ids.push_back(vocab.encode(d.texts[static_cast<size_t>(i)], max_len));
    e.labels.push_back(d.labels[static_cast<size_t>(i)]);
  }
  return e;
}

struct Batch {
  Tensor ids, padding_mask, labels;
  int64_t tokens = 0;
};

Batch make_batch(const Examples& e, const std::vector<int64_t>& rows, Device device) {
  std::vector<std::vector<int64_t>> seqs;
  Tensor labels = Tensor::empty({static_cast<int64_t>(rows.size())}, kInt64);
  Batch b;
  for (size_t k = 0; k < rows.size(); ++k) {
    seqs.push_back(e.ids[static_cast<size_t>(rows[k])]);
    labels.data<int64_t>()[k] = e.labels[static_cast<size_t>(rows[k])];
    b.tokens += static_cast<int64_t>(seqs.back().size());
  }
  data::EncodedBatch eb = data::pad_batch(seqs);
  b.ids = eb.ids.to(device);
  b.padding_mask = eb.padding_mask.to(device);
  b.labels = labels.to(device);
  return b;
}

// One epoch's batches: the examples in a seeded order, cut into pools of 50 batches that are sorted by length
// before being cut into batches (so a batch pads little), and the batches shuffled again. The order depends
// only on (seed, epoch), so a resumed run sees the same batches.
std::vector<std::vector<int64_t>> epoch_batches(const Examples& e, int64_t batch, uint64_t seed,
                                                int64_t epoch) {
  const uint64_t s = seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch) + 1;
  std::vector<int64_t> order = data::seeded_permutation(e.size(), s);
  const int64_t pool = batch * 50;
  std::vector<std::vector<int64_t>> batches;
  for (int64_t start = 0; start < e.size(); start += pool) {
    auto first = order.begin() + start, last = order.begin() + std::min(start + pool, e.size());
    std::stable_sort(first, last, [&](int64_t a, int64_t b) {
      return e.ids[static_cast<size_t>(a)].size() < e.ids[static_cast<size_t>(b)].size();
    });
    for (auto it = first; it < last; it += std::min<int64_t>(batch, last - it)) {
      batches.emplace_back(it, it + std::min<int64_t>(batch, last - it));
    }
  }
  std::vector<int64_t> perm =
      data::seeded_permutation(static_cast<int64_t>(batches.size()), s ^ 0xB5AD4ECEDA1CE2A9ULL);
  std::vector<std::vector<int64_t>> shuffled;
  for (int64_t p : perm) shuffled.push_back(std::move(batches[static_cast<size_t>(p)]));
  return shuffled;
}

// Accuracy over all examples (evaluated in length-sorted batches, eval mode, no gradients).
double accuracy(TextClassifier& model, const Examples& e, Device device) {
  if (e.size() == 0) return NAN;
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  std::vector<int64_t> order(static_cast<size_t>(e.size()));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return e.ids[static_cast<size_t>(a)].size() < e.ids[static_cast<size_t>(b)].size();
  });
  int64_t correct = 0;
  for (size_t start = 0; start < order.size(); start += kEvalBatch) {
    std::vector<int64_t> rows(
        order.begin() + static_cast<std::ptrdiff_t>(start),
        order.begin() + static_cast<std::ptrdiff_t>(std::min(order.size(), start + kEvalBatch)));
    Batch b = make_batch(e, rows, device);
    Tensor predicted = model.forward(b.ids, b.padding_mask).argmax(-1).to(Device("cpu")).contiguous();
    for (size_t k = 0; k < rows.size(); ++k)
      correct += predicted.data<int64_t>()[k] == e.labels[static_cast<size_t>(rows[k])];
  }
  model.train(was_training);
  return static_cast<double>(correct) / static_cast<double>(e.size());
}

// Mean and standard deviation of the encoded lengths: the statistics of the experiments' block-length rule.
std::pair<double, double> length_stats(const Examples& e) {
  double sum = 0, sq = 0;
  for (const auto& ids : e.ids) {
    sum += static_cast<double>(ids.size());
    sq += static_cast<double>(ids.size()) * static_cast<double>(ids.size());
  }
  const double n = static_cast<double>(std::max<int64_t>(1, e.size()));
  const double mean = sum / n;
  return {mean, std::sqrt(std::max(0.0, sq / n - mean * mean))};
}

std::string checkpoint_path(const std::string& dir, const char* name) {
  return (std::filesystem::path(dir) / name).string();
}

}  // namespace

int train_biblosa(const BiblosaTrainOptions& opt) {
  LOOM_CHECK(opt.epochs > 0 && opt.batch > 0 && opt.checkpoint_every > 0, kTrain,
             ": --epochs, --batch and --checkpoint-every must be positive");
  LOOM_CHECK(opt.max_len >= 0 && opt.min_count >= 1 && (opt.max_vocab == 0 || opt.max_vocab >= 2), kTrain,
             ": --max-len must be >= 0, --min-count >= 1 and --max-vocab 0 or >= 2");
  LOOM_CHECK(opt.lr > 0 && opt.l2 >= 0 && opt.clip >= 0, kTrain,
             ": --lr must be positive and --l2, --clip "
             "non-negative");
  LOOM_CHECK(
      opt.train_fraction >= 0 && opt.train_fraction < 1 && opt.dev_fraction >= 0 && opt.dev_fraction < 1,
      kTrain, ": --train-fraction and --dev-fraction must lie in [0, 1), got ", opt.train_fraction, " and ",
      opt.dev_fraction);
  const Device device = train::open_training_device(opt.device, opt.threads);
  manual_seed(opt.seed);
  const auto t0 = std::chrono::steady_clock::now();

  data::TextClassificationData d = load_data(opt);
  std::fprintf(stderr, "%s\n", d.summary().c_str());
  // The dev set: a seeded part of the training split; the rest trains (and builds the vocabulary).
  std::vector<int64_t> train_idx = d.train, dev_idx;
  {
    std::vector<int64_t> perm =
        data::seeded_permutation(static_cast<int64_t>(train_idx.size()), opt.data_seed + 17);
    const auto n_dev =
        static_cast<size_t>(std::floor(static_cast<double>(train_idx.size()) * opt.dev_fraction));
    std::vector<int64_t> shuffled;
    for (int64_t p : perm) shuffled.push_back(train_idx[static_cast<size_t>(p)]);
    dev_idx.assign(shuffled.begin(), shuffled.begin() + static_cast<std::ptrdiff_t>(n_dev));
    train_idx.assign(shuffled.begin() + static_cast<std::ptrdiff_t>(n_dev), shuffled.end());
    if (opt.limit_train > 0 && static_cast<int64_t>(train_idx.size()) > opt.limit_train)
      train_idx.resize(static_cast<size_t>(opt.limit_train));
    std::sort(dev_idx.begin(), dev_idx.end());
  }
  LOOM_CHECK(!train_idx.empty(), kTrain, ": no training texts left after holding out the dev set");
  data::TextVocab vocab = data::TextVocab::build(d.texts, train_idx, {opt.min_count, opt.max_vocab});
  Examples train = encode(d, train_idx, vocab, opt.max_len);
  Examples dev = encode(d, dev_idx, vocab, opt.max_len);
  Examples test = encode(d, d.test, vocab, opt.max_len);
  std::fprintf(stderr,
               "train %lld / dev %lld / test %lld texts; vocabulary %lld words (min count %lld); texts cut "
               "at %lld tokens\n",
               static_cast<long long>(train.size()), static_cast<long long>(dev.size()),
               static_cast<long long>(test.size()), static_cast<long long>(vocab.size()),
               static_cast<long long>(opt.min_count), static_cast<long long>(opt.max_len));
  // The baselines on the same train/test split, as the notes measure them: naive Bayes over a vocabulary of
  // the whole training split (dev included) and the whole, uncut texts.
  const data::BaselineAccuracy baselines = data::text_baselines(d, data::TextVocab::build(d.texts, d.train));
  std::fprintf(stderr, "%s\n", baselines.summary().c_str());

  TextClassifierConfig cfg = opt.model;
  cfg.vocab_size = vocab.size();
  cfg.num_classes = d.num_classes();
  cfg.pair = false;
  if (cfg.encoder == "biblosa" && cfg.block_len == 0) {  // the experiments' rule, fixed for the run (spec P5)
    auto [mean, sd] = length_stats(train);
    cfg.block_len = nn::BlockSelfAttention::block_length_for(mean, sd, opt.batch);
    std::fprintf(stderr, "block length r = %lld (training lengths: mean %.1f, std %.1f, batch %lld)\n",
                 static_cast<long long>(cfg.block_len), mean, sd, static_cast<long long>(opt.batch));
  }
  TextClassifier model(cfg, {kFloat32, device});
  std::fprintf(stderr, "model: %s, %lld parameters (%lld without the embedding)\n",
               model.config().str().c_str(), static_cast<long long>(model.num_parameters()),
               static_cast<long long>(model.encoder_and_head_parameters()));

  nn::AdamOptions adam;
  adam.lr = opt.lr;
  nn::Adam optimizer(model.named_parameters(), adam);

  std::filesystem::create_directories(opt.out_dir);
  const std::string ckpt = checkpoint_path(opt.out_dir, "checkpoint.safetensors");
  const std::string best_ckpt = checkpoint_path(opt.out_dir, "best.safetensors");
  const std::string arch = model.config().str();
  const std::string task = encode_lines({d.name + " " + opt.split});
  const std::string vocab_text = encode_lines(vocab.tokens());
  const int64_t steps_per_epoch = (train.size() + opt.batch - 1) / opt.batch;
  const int64_t total_steps = steps_per_epoch * opt.epochs;
  int64_t start_step = 0;
  double best_dev = -1, test_at_best = NAN;
  int64_t best_epoch = 0;
  if (opt.resume) {
    LOOM_CHECK(std::filesystem::exists(ckpt), kTrain, ": --resume but there is no checkpoint at '", ckpt,
               "'");
    auto saved = load_safetensors_with_metadata(ckpt).metadata;
    LOOM_CHECK(saved["model"] == "biblosa" && saved["task"] == task, kTrain, ": checkpoint '", ckpt,
               "' holds a '", saved["model"], "' model for '", saved["task"],
               "', not a biblosa classifier for '", task, "'");
    LOOM_CHECK(saved["config"] == arch, "resume: checkpoint '", ckpt, "' was trained with ", saved["config"],
               " but this run asks for ", arch);
    LOOM_CHECK(saved["vocab"] == vocab_text, "resume: checkpoint '", ckpt,
               "' was trained with another vocabulary (different data, split, --min-count or --max-vocab)");
    auto meta = nn::load_checkpoint(ckpt, model, &optimizer);
    start_step = std::stoll(meta.at("step"));
    best_dev = std::stod(meta.at("best_dev"));
    test_at_best = std::stod(meta.at("test_at_best"));
    best_epoch = std::stoll(meta.at("best_epoch"));
    std::fprintf(stderr, "resumed from %s at step %lld\n", ckpt.c_str(), static_cast<long long>(start_step));
  }
  auto metadata = [&](int64_t step) -> std::map<std::string, std::string> {
    return {{"model", "biblosa"},
            {"task", task},
            {"config", arch},
            {"config_json", config_to_json(model.config()).dump()},
            {"vocab", vocab_text},
            {"classes", encode_lines(d.class_names)},
            {"max_len", std::to_string(opt.max_len)},
            {"step", std::to_string(step)},
            {"best_dev", detail::concat(best_dev)},
            {"test_at_best", detail::concat(test_at_best)},
            {"best_epoch", std::to_string(best_epoch)}};
  };
  train::MetricsWriter metrics((std::filesystem::path(opt.out_dir) / "metrics.jsonl").string());
  metrics.write(0, "baseline", {{"majority", baselines.majority}, {"naive_bayes", baselines.naive_bayes}});
  train::ProgressBar bar(total_steps);

  model.train();
  double smoothed_loss = NAN, smoothed_acc = NAN;
  int64_t tokens_done = 0;
  for (int64_t step = start_step; step < total_steps;) {
    const int64_t epoch = step / steps_per_epoch;
    const auto batches = epoch_batches(train, opt.batch, opt.seed, epoch);
    for (int64_t k = step - epoch * steps_per_epoch; k < steps_per_epoch; ++k, ++step) {
      Batch b = make_batch(train, batches[static_cast<size_t>(k)], device);
      Tensor logits = model.forward(b.ids, b.padding_mask);
      Tensor ce = cross_entropy(logits, b.labels);
      Tensor loss = opt.l2 > 0 ? add(ce, mul(model.l2_penalty(), opt.l2)) : ce;
      const double loss_value = ce.item<double>();
      LOOM_CHECK(std::isfinite(loss_value), kTrain, ": loss became ", loss_value, " at step ", step,
                 "; lower --lr");
      optimizer.zero_grad();
      loss.backward();
      if (opt.clip > 0) nn::clip_grad_norm_(model.parameters(), opt.clip);
      optimizer.step();
      const double acc = eq(logits.argmax(-1), b.labels).to(kFloat64).mean().item<double>();
      smoothed_loss = std::isnan(smoothed_loss) ? loss_value : 0.98 * smoothed_loss + 0.02 * loss_value;
      smoothed_acc = std::isnan(smoothed_acc) ? acc : 0.98 * smoothed_acc + 0.02 * acc;
      tokens_done += b.tokens;
      const int64_t done = step + 1;
      if (done % 10 == 0) metrics.write(done, "train", {{"loss", loss_value}, {"accuracy", acc}});
      bar.update(done, tokens_done,
                 detail::concat("epoch ", epoch + 1, " loss ", std::round(smoothed_loss * 1000) / 1000,
                                " acc ", std::round(smoothed_acc * 1000) / 1000));
      const bool epoch_end = done % steps_per_epoch == 0;
      if (epoch_end) {
        const double dev_acc = dev.size() > 0 ? accuracy(model, dev, device) : NAN;
        const double test_acc = accuracy(model, test, device);
        const double minutes = train::minutes_since(t0);
        // Model selection on dev; without a dev set the last epoch is kept.
        if (dev.size() == 0 || dev_acc > best_dev) {
          best_dev = dev.size() > 0 ? dev_acc : best_dev;
          test_at_best = test_acc;
          best_epoch = epoch + 1;
          nn::save_checkpoint(best_ckpt, model, nullptr, metadata(done));
        }
        metrics.write(done, "epoch",
                      {{"epoch", static_cast<double>(epoch + 1)},
                       {"dev_accuracy", dev_acc},
                       {"test_accuracy", test_acc},
                       {"minutes", minutes}});
        std::fprintf(stderr, "\nepoch %lld: dev accuracy %.4f, test accuracy %.4f (%.1f min)\n",
                     static_cast<long long>(epoch + 1), dev_acc, test_acc, minutes);
      }
      if (done % opt.checkpoint_every == 0 || epoch_end || done == opt.stop_after)
        nn::save_checkpoint(ckpt, model, &optimizer, metadata(done));
      if (done == opt.stop_after && done < total_steps) {
        bar.finish();
        std::fprintf(stderr, "stopped after step %lld as asked; continue with --resume\n",
                     static_cast<long long>(done));
        return 0;
      }
    }
  }
  bar.finish();
  const double minutes = train::minutes_since(t0);
  metrics.write(total_steps, "test",
                {{"accuracy", test_at_best},
                 {"best_epoch", static_cast<double>(best_epoch)},
                 {"dev_accuracy", best_dev},
                 {"majority", baselines.majority},
                 {"naive_bayes", baselines.naive_bayes},
                 {"minutes", minutes}});
  std::printf(
      "%s on %s: test accuracy %.4f (epoch %lld of %lld, chosen on dev %.4f); majority %.4f, naive Bayes "
      "%.4f (%.1f min)\n",
      cfg.encoder.c_str(), task.c_str(), test_at_best, static_cast<long long>(best_epoch),
      static_cast<long long>(opt.epochs), best_dev, baselines.majority, baselines.naive_bayes, minutes);
  return 0;
}

int predict_biblosa(const BiblosaPredictOptions& opt) {
  LOOM_CHECK(!opt.texts.empty(), kPredict, ": give at least one text to classify");
  LOOM_CHECK(opt.top >= 1, kPredict, ": --top must be at least 1, got ", opt.top);
  Device device(opt.device);
  if (opt.threads > 0) set_num_threads(opt.threads);
  std::string ckpt = checkpoint_path(opt.run_dir, "best.safetensors");
  if (!std::filesystem::exists(ckpt)) ckpt = checkpoint_path(opt.run_dir, "checkpoint.safetensors");
  LOOM_CHECK(std::filesystem::exists(ckpt), kPredict, ": no checkpoint in '", opt.run_dir,
             "' (train one with `loom train biblosa --out ", opt.run_dir, "`)");
  auto meta = load_safetensors_with_metadata(ckpt).metadata;
  LOOM_CHECK(meta["model"] == "biblosa", kPredict, ": '", ckpt, "' holds a '", meta["model"],
             "' model, not a biblosa classifier");
  TextClassifierConfig cfg;
  try {
    cfg = config_from_json(nlohmann::json::parse(meta.at("config_json")));
  } catch (const nlohmann::json::exception& e) {
    LOOM_CHECK(false, kPredict, ": '", ckpt, "' has a malformed configuration: ", e.what());
  }
  data::TextVocab vocab = data::TextVocab::from_tokens(decode_lines(meta["vocab"], "vocabulary"));
  const std::vector<std::string> classes = decode_lines(meta["classes"], "class names");
  LOOM_CHECK(vocab.size() == cfg.vocab_size && static_cast<int64_t>(classes.size()) == cfg.num_classes,
             kPredict, ": '", ckpt, "' has a vocabulary of ", vocab.size(), " words and ", classes.size(),
             " class names for a model of ", cfg.vocab_size, " and ", cfg.num_classes);
  TextClassifier model(cfg, {kFloat32, device});
  nn::load_checkpoint(ckpt, model, nullptr, /*restore_rng=*/false);
  model.eval();
  NoGradGuard no_grad;
  const int64_t max_len = std::stoll(meta.count("max_len") ? meta["max_len"] : std::string("0"));
  for (const std::string& text : opt.texts) {
    std::vector<int64_t> ids = vocab.encode(text, max_len);
    LOOM_CHECK(!ids.empty(), kPredict, ": the text '", text, "' has no words");
    data::EncodedBatch b = data::pad_batch({ids});
    Tensor probs = softmax(model.forward(b.ids.to(device), b.padding_mask.to(device)), -1)
                       .to(Device("cpu"))
                       .to(kFloat64)
                       .contiguous();
    std::vector<int64_t> order(static_cast<size_t>(cfg.num_classes));
    std::iota(order.begin(), order.end(), 0);
    const double* p = probs.data<double>();
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t c) { return p[a] > p[c]; });
    std::printf("%s\n", text.c_str());
    for (int64_t k = 0; k < std::min(opt.top, cfg.num_classes); ++k)
      std::printf("  %-24s %.3f\n", classes[static_cast<size_t>(order[static_cast<size_t>(k)])].c_str(),
                  p[order[static_cast<size_t>(k)]]);
  }
  return 0;
}

}  // namespace loom::models
