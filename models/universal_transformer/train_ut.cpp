#include "loom/models/universal_transformer/train_ut.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>

#include "loom/autograd/grad_mode.h"
#include "loom/core/parallel.h"
#include "loom/models/common/heatmap_svg.h"
#include "loom/models/common/training_log.h"
#include "loom/models/common/training_loop.h"
#include "loom/models/data/algorithmic_tasks.h"
#include "loom/models/data/babi_generator.h"
#include "loom/models/data/word_vocab.h"
#include "loom/models/universal_transformer/babi_model.h"
#include "loom/nn/checkpoint_io.h"
#include "loom/nn/clip_grad.h"
#include "loom/nn/lr_schedule.h"
#include "loom/nn/optim_adam.h"
#include "loom/nn/safetensors.h"
#include "loom/ops/ops.h"

namespace loom::models {
namespace {

constexpr const char* kTrain = "train ut";
constexpr int64_t kEvalBatch = 16;

// --offsets per-step: int64 [B, columns], column t one random_position_offsets draw per sequence for step t
// of side `side` (0 source, 1 target) of training step `step`, each from a stream of its own (above the
// streams 2 step and 2 step + 1 that the shared and independent offsets use).
Tensor per_step_position_offsets(const std::vector<int64_t>& lengths, int64_t max_offset, uint64_t seed,
                                 int64_t step, int64_t side, int64_t columns) {
  constexpr uint64_t kPerStepStreams = uint64_t{1} << 62;
  std::vector<Tensor> cols;
  for (int64_t t = 0; t < columns; ++t) {
    const uint64_t stream = kPerStepStreams + static_cast<uint64_t>((2 * step + side) * columns + t);
    cols.push_back(data::random_position_offsets(lengths, max_offset, seed, stream));
  }
  return stack(cols, 1);
}

nlohmann::json config_to_json(const UniversalTransformerConfig& c) {
  return {{"vocab_size", c.vocab_size},
          {"model", c.model},
          {"d_model", c.d_model},
          {"heads", c.heads},
          {"d_ff", c.d_ff},
          {"recurrence", c.recurrence},
          {"act_variant", c.act_variant},
          {"max_steps", c.max_steps},
          {"fixed_steps", c.fixed_steps},
          {"act_epsilon", c.act_epsilon},
          {"ponder_weight", c.ponder_weight},
          {"halting_bias_init", c.halting_bias_init},
          {"step_signal", c.step_signal},
          {"transition", c.transition},
          {"layers", c.layers},
          {"dropout", c.dropout},
          {"eps", c.eps},
          {"encoder_only", c.encoder_only}};
}

// Source and target token lists of one task split.
struct Pairs {
  std::vector<std::vector<int64_t>> src, tgt;
  int64_t size() const { return static_cast<int64_t>(src.size()); }
};

// A task: its splits, vocabulary size and how its tokens print.
struct Task {
  std::string description;
  int64_t vocab_size = 0;
  Pairs train, eval, maps;
  std::function<std::string(int64_t)> token_name;
  bool babi = false;
  // bAbI: the questions in ids (fact-level layout), parallel to train / eval, the longest fact or question,
  // and the vocabulary.
  std::vector<data::BabiEncoded> babi_train, babi_eval;
  std::shared_ptr<const data::BabiVocab> babi_vocab;
  int64_t babi_max_words = 0;
};

Pairs from_dataset(const data::AlgorithmicDataset& d) {
  Pairs p;
  for (int64_t i = 0; i < d.size(); ++i) {
    p.src.push_back(d[i].input);
    p.tgt.push_back(d[i].target);
  }
  return p;
}

std::vector<data::BabiEncoded> encode_all(const data::BabiDataset& d, const data::BabiVocab& vocab) {
  std::vector<data::BabiEncoded> out;
  for (const auto& q : d.questions) out.push_back(data::encode_babi(q, vocab));
  return out;
}

// The flat layout (also what the fact model's batches count and score against: tgt is the answer word).
Pairs from_babi(const std::vector<data::BabiEncoded>& questions) {
  Pairs p;
  for (const auto& e : questions) {
    std::vector<int64_t> src = e.story;  // each fact followed by <sep>
    src.insert(src.end(), e.question.begin(), e.question.end());
    p.src.push_back(std::move(src));
    p.tgt.push_back({e.answer});  // one answer word; no EOS (id 1 is bAbI's <sep>)
  }
  return p;
}

int64_t longest_sentence(const std::vector<data::BabiEncoded>& questions) {
  size_t n = 0;
  for (const auto& e : questions) {
    n = std::max(n, e.question.size());
    for (const auto& f : e.facts) n = std::max(n, f.size());
  }
  return static_cast<int64_t>(n);
}

Task make_task(const UTTrainOptions& o) {
  Task t;
  if (o.task == "babi1" || o.task == "babi2") {
    const int id = o.task == "babi1" ? 1 : 2;
    data::BabiSplits splits = data::babi_1k(id, o.data_seed, o.babi_train, o.babi_test);
    auto vocab = std::make_shared<data::BabiVocab>(data::BabiVocab::for_babi());
    t.babi_train = encode_all(splits.train, *vocab);
    t.babi_eval = encode_all(splits.test, *vocab);
    t.babi_max_words = std::max(longest_sentence(t.babi_train), longest_sentence(t.babi_eval));
    t.train = from_babi(t.babi_train);
    t.eval = from_babi(t.babi_eval);
    t.maps = t.eval;
    t.vocab_size = vocab->size();
    t.token_name = [vocab](int64_t id) { return vocab->word(id); };
    t.babi_vocab = vocab;
    t.babi = true;
    t.description = "GENERATED bAbI-like task " + std::to_string(id) +
                    " (not the released set): " + splits.train.summary() + " train, " +
                    splits.test.summary() + " test";
    return t;
  }
  const data::AlgorithmicTask task = data::parse_algorithmic_task(o.task);
  LOOM_CHECK(o.train_size > 0 && o.eval_size > 0 && o.train_length > 0 && o.eval_length > 0, kTrain,
             ": --train-size, --eval-size, --train-length and --eval-length must be positive");
  data::AlgorithmicDataset train =
      data::AlgorithmicDataset::t2t_train(task, o.data_seed, o.train_size, o.train_length);
  data::AlgorithmicDataset eval =
      data::AlgorithmicDataset::t2t_eval(task, o.data_seed, o.eval_size, o.eval_length);
  // Ponder maps of training-length examples (a 400-token row does not read as a figure).
  data::AlgorithmicDataset maps(task, std::max<int64_t>(1, o.ponder_maps), o.train_length, o.data_seed,
                                /*split=*/2);
  t.train = from_dataset(train);
  t.eval = from_dataset(eval);
  t.maps = from_dataset(maps);
  t.vocab_size = data::kAlgoVocabSize;
  t.token_name = [](int64_t id) -> std::string {
    if (id == data::kAlgoPad) return "_";
    if (id == data::kAlgoEos) return "$";
    if (id == data::kAlgoSeparator) return "+";
    return std::to_string(id - data::kAlgoDigitOffset);
  };
  t.description = train.summary() + "; evaluation: " + eval.summary();
  return t;
}

// Rows padded with PAD (0) to the longest: int64 [B, L].
Tensor pad_rows(const std::vector<const std::vector<int64_t>*>& rows) {
  size_t width = 1;
  for (const auto* r : rows) width = std::max(width, r->size());
  Tensor out = zeros({static_cast<int64_t>(rows.size()), static_cast<int64_t>(width)}, kInt64);
  int64_t* p = out.data<int64_t>();
  for (size_t b = 0; b < rows.size(); ++b) std::copy(rows[b]->begin(), rows[b]->end(), p + b * width);
  return out;
}

struct Batch {
  Tensor src, tgt;
  std::vector<int64_t> src_lengths, tgt_lengths;
};

Batch make_batch(const Pairs& p, const std::vector<int64_t>& rows, Device device) {
  std::vector<const std::vector<int64_t>*> s, t;
  Batch b;
  for (int64_t i : rows) {
    s.push_back(&p.src[static_cast<size_t>(i)]);
    t.push_back(&p.tgt[static_cast<size_t>(i)]);
    b.src_lengths.push_back(static_cast<int64_t>(s.back()->size()));
    b.tgt_lengths.push_back(static_cast<int64_t>(t.back()->size()));
  }
  b.src = pad_rows(s).to(device);
  b.tgt = pad_rows(t).to(device);
  return b;
}

// What the driver trains: the seq2seq model (algorithmic tasks, flat bAbI) or the bAbI fact model.
struct Network {
  std::shared_ptr<UniversalTransformer> seq2seq;
  std::shared_ptr<BabiFactModel> facts;
  nn::Module& module() { return facts ? static_cast<nn::Module&>(*facts) : *seq2seq; }
  const UniversalTransformerConfig& config() const { return facts ? facts->config() : seq2seq->config(); }
  std::string arch() const { return facts ? facts->str() : seq2seq->config().str(); }
};

// The loss on rows of a split: the seq2seq model's teacher-forced loss on the batch b made of them, or the
// fact model's answer loss on the same questions (b.tgt then holds their answer words).
UTLoss batch_loss(Network& net, const Batch& b, const std::vector<data::BabiEncoded>& questions,
                  const std::vector<int64_t>& rows, const Tensor& src_offsets = Tensor(),
                  const Tensor& tgt_offsets = Tensor()) {
  if (!net.facts) return net.seq2seq->loss(b.src, b.tgt, src_offsets, tgt_offsets);
  std::vector<const data::BabiEncoded*> examples;
  for (int64_t i : rows) examples.push_back(&questions[static_cast<size_t>(i)]);
  return net.facts->loss(data::collate_babi(examples));
}

// The sum of N + R over a side's real positions and their count (times are 0 at padding); zeros for a side
// the model does not have.
struct PonderTotal {
  double sum = 0, positions = 0;
  void add(const UTPonder& p) {
    if (!p.times.defined()) return;
    sum += p.times.to(kFloat64).sum().item<double>();
    positions += gt(p.times, 0.0).to(kFloat64).sum().item<double>();
  }
  double mean() const { return positions > 0 ? sum / positions : 0.0; }
};

// Mean ponder time N + R over real positions.
double mean_ponder(const UTPonder& p) {
  PonderTotal t;
  t.add(p);
  return t.mean();
}

struct Evaluation {
  data::SequenceAccuracy teacher_forced, decoded;
  // Teacher-forced, split at the longest training target: target positions training reached, and those
  // beyond (where a model that has learnt the task only for the lengths it saw stops being right).
  data::SequenceAccuracy seen_positions, unseen_positions;
  double ponder_encoder = 0, ponder_decoder = 0;
};

// The metrics line of an evaluation (valid and test alike): teacher-forced accuracies, the split accuracies
// where there were target positions on that side, ponder times and the time so far.
std::map<std::string, double> evaluation_metrics(const Evaluation& ev, double minutes, double train_minutes) {
  std::map<std::string, double> m{{"char_accuracy", ev.teacher_forced.char_accuracy()},
                                  {"seq_accuracy", ev.teacher_forced.sequence_accuracy()},
                                  {"ponder_encoder", ev.ponder_encoder},
                                  {"ponder_decoder", ev.ponder_decoder},
                                  {"minutes", minutes},
                                  {"train_minutes", train_minutes}};
  if (ev.seen_positions.tokens > 0) m["char_accuracy_seen_positions"] = ev.seen_positions.char_accuracy();
  if (ev.unseen_positions.tokens > 0)
    m["char_accuracy_unseen_positions"] = ev.unseen_positions.char_accuracy();
  return m;
}

std::string position_split_text(const Evaluation& ev) {
  if (ev.unseen_positions.tokens == 0) return "";
  return detail::concat(" (char-accuracy ", std::round(ev.seen_positions.char_accuracy() * 1e4) / 1e4,
                        " at target positions training reached, ",
                        std::round(ev.unseen_positions.char_accuracy() * 1e4) / 1e4, " beyond)");
}

// Teacher-forced accuracy (and ponder times) over every evaluation pair, in length-sorted batches;
// greedy-decoded accuracy over the first decode_examples pairs (the seq2seq model only: the fact model's
// answer is its argmax, which the teacher-forced accuracy already scores). questions: the pairs' bAbI
// questions (fact model). seen_positions: the longest training target (0: no split).
Evaluation evaluate(Network& net, const Pairs& pairs, const std::vector<data::BabiEncoded>& questions,
                    int64_t decode_examples, int64_t seen_positions, Device device) {
  NoGradGuard no_grad;
  nn::Module& model = net.module();
  const bool was_training = model.is_training();
  model.eval();
  std::vector<int64_t> order(static_cast<size_t>(pairs.size()));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return pairs.src[static_cast<size_t>(a)].size() < pairs.src[static_cast<size_t>(b)].size();
  });
  Evaluation ev;
  PonderTotal encoder_ponder, decoder_ponder;
  for (size_t start = 0; start < order.size(); start += kEvalBatch) {
    std::vector<int64_t> rows(
        order.begin() + static_cast<std::ptrdiff_t>(start),
        order.begin() + static_cast<std::ptrdiff_t>(std::min(order.size(), start + kEvalBatch)));
    Batch b = make_batch(pairs, rows, device);
    UTLoss l = batch_loss(net, b, questions, rows);
    ev.teacher_forced += data::padded_accuracy(l.logits, b.tgt);
    const int64_t T = b.tgt.size(1), seen = std::min(T, seen_positions);
    if (seen > 0)
      ev.seen_positions +=
          data::padded_accuracy(l.logits.narrow(1, 0, seen), b.tgt.narrow(1, 0, seen).contiguous());
    if (seen_positions > 0 && T > seen)
      ev.unseen_positions += data::padded_accuracy(l.logits.narrow(1, seen, T - seen),
                                                   b.tgt.narrow(1, seen, T - seen).contiguous());
    encoder_ponder.add(l.encoder);
    decoder_ponder.add(l.decoder);
  }
  ev.ponder_encoder = encoder_ponder.mean();
  ev.ponder_decoder = decoder_ponder.mean();
  const int64_t n_decode = net.seq2seq ? std::min(decode_examples, pairs.size()) : 0;
  for (int64_t start = 0; start < n_decode; start += kEvalBatch) {
    std::vector<int64_t> rows;
    for (int64_t i = start; i < std::min(n_decode, start + kEvalBatch); ++i) rows.push_back(i);
    Batch b = make_batch(pairs, rows, device);
    const int64_t T = b.tgt.size(1);
    Tensor decoded = net.seq2seq->greedy_decode(b.src, T).to(Device("cpu")).contiguous();
    // Decoded tokens laid over the targets' width: missing positions stay PAD, which never matches a target.
    Tensor predicted = zeros({b.tgt.size(0), T}, kInt64);
    const int64_t width = std::min(T, decoded.size(1));
    for (int64_t r = 0; r < b.tgt.size(0); ++r)
      for (int64_t c = 0; c < width; ++c)
        predicted.data<int64_t>()[r * T + c] = decoded.data<int64_t>()[r * decoded.size(1) + c];
    ev.decoded += data::padded_accuracy(predicted, b.tgt.to(Device("cpu")));
  }
  model.train(was_training);
  return ev;
}

// One SVG per example: the encoder's ponder time per source token and the decoder's per target token (decoder
// position t reads target t - 1 and predicts target t, so its column is labelled with target t); the fact
// model's per fact and for the question.
void write_ponder_maps(Network& net, const Task& task, int64_t count, const std::string& dir, Device device) {
  NoGradGuard no_grad;
  nn::Module& model = net.module();
  const bool was_training = model.is_training();
  model.eval();
  const double max_steps = static_cast<double>(net.config().steps());
  auto names = [&](const std::vector<int64_t>& ids) {
    std::vector<std::string> out;
    for (int64_t id : ids) out.push_back(task.token_name(id));
    return out;
  };
  for (int64_t i = 0; i < std::min(count, task.maps.size()); ++i) {
    Batch b = make_batch(task.maps, {i}, device);
    UTLoss l = batch_loss(net, b, task.babi_eval, {i});
    train::Heatmap map;
    map.title = "ponder time per position, example " + std::to_string(i) + " (max " +
                std::to_string(static_cast<int64_t>(max_steps)) + " steps)";
    map.value_label = "steps (N + R)";
    map.min_value = 0;
    map.max_value = max_steps + 1;  // N + R with N <= M and R <= 1
    // Column k of a row: position k of that side, labelled tokens[k].
    auto row = [&](const char* label, const UTPonder& p, std::vector<std::string> tokens) {
      Tensor times = p.times.to(Device("cpu")).to(kFloat64).contiguous();
      std::vector<double> values;
      for (size_t k = 0; k < tokens.size(); ++k) values.push_back(times.data<double>()[k]);
      map.row_labels.push_back(label);
      map.tokens.push_back(std::move(tokens));
      map.values.push_back(std::move(values));
    };
    if (net.facts) {
      // Positions: the facts in story order, then the question.
      const data::BabiEncoded& q = task.babi_eval[static_cast<size_t>(i)];
      std::vector<std::string> labels;
      for (const auto& fact : q.facts) labels.push_back(task.babi_vocab->decode(fact));
      labels.push_back(task.babi_vocab->decode(q.question));
      row("encoder", l.encoder, std::move(labels));
    } else {
      row("encoder", l.encoder, names(task.maps.src[static_cast<size_t>(i)]));
      row("decoder", l.decoder, names(task.maps.tgt[static_cast<size_t>(i)]));
    }
    train::write_heatmap_svg((std::filesystem::path(dir) / ("ponder_" + std::to_string(i) + ".svg")).string(),
                             map);
  }
  model.train(was_training);
}

}  // namespace

int train_ut(const UTTrainOptions& opt) {
  LOOM_CHECK(opt.task == "copy" || opt.task == "reverse" || opt.task == "addition" || opt.task == "babi1" ||
                 opt.task == "babi2",
             kTrain, ": --task must be copy, reverse, addition, babi1 or babi2, got '", opt.task, "'");
  LOOM_CHECK(opt.steps > 0 && opt.batch > 0 && opt.eval_every > 0 && opt.checkpoint_every > 0, kTrain,
             ": --steps, --batch, --eval-every and --checkpoint-every must be positive");
  LOOM_CHECK(opt.lr > 0 && opt.lr_final >= 0 && opt.warmup >= 0 && opt.clip >= 0 && opt.weight_decay >= 0,
             kTrain, ": --lr must be positive and --lr-final, --warmup, --clip, --weight-decay non-negative");
  LOOM_CHECK(opt.max_offset >= -1 && opt.decode_examples >= 0 && opt.ponder_maps >= 0 && opt.babi_train > 0 &&
                 opt.babi_test > 0,
             kTrain,
             ": --max-offset must be -1 or more, --decode-examples and --ponder-maps non-negative, "
             "--babi-train and --babi-test positive");
  LOOM_CHECK(opt.babi_encoding == "facts" || opt.babi_encoding == "flat", kTrain,
             ": --babi-encoding must be facts or flat, got '", opt.babi_encoding, "'");
  LOOM_CHECK(opt.offsets == "independent" || opt.offsets == "shared" || opt.offsets == "per-step", kTrain,
             ": --offsets must be shared, independent or per-step, got '", opt.offsets, "'");
  const Device device = train::open_training_device(opt.device, opt.threads);
  manual_seed(opt.seed);
  const auto t0 = std::chrono::steady_clock::now();

  Task task = make_task(opt);
  std::fprintf(stderr, "%s\n", task.description.c_str());
  const int64_t max_offset = task.babi ? 0 : (opt.max_offset < 0 ? opt.eval_length : opt.max_offset);
  // Evaluation splits the accuracy at the longest training target (algorithmic tasks).
  int64_t seen_positions = 0;
  if (!task.babi)
    for (const auto& t : task.train.tgt)
      seen_positions = std::max(seen_positions, static_cast<int64_t>(t.size()));
  if (max_offset > 0) {
    size_t longest = 0;
    for (size_t i = 0; i < task.train.src.size(); ++i)
      longest = std::max({longest, task.train.src[i].size(), task.train.tgt[i].size()});
    LOOM_CHECK(static_cast<int64_t>(longest) <= max_offset, kTrain, ": --max-offset ", max_offset,
               " is below the longest training sequence (", longest, ")");
  }
  UniversalTransformerConfig cfg = opt.model;
  cfg.vocab_size = task.vocab_size;
  // per-step: one offset per recurrent step (the Transformer adds its position signal once: one column).
  const int64_t offset_columns = cfg.model == "ut" ? cfg.steps() : 1;
  Network net;
  if (task.babi && opt.babi_encoding == "facts")
    net.facts = std::make_shared<BabiFactModel>(cfg, task.babi_max_words, TensorOptions{kFloat32, device});
  else
    net.seq2seq = std::make_shared<UniversalTransformer>(cfg, TensorOptions{kFloat32, device});
  nn::Module& model = net.module();
  std::fprintf(stderr, "model: %s, %lld parameters%s\n", net.arch().c_str(),
               static_cast<long long>(model.num_parameters()),
               max_offset > 0 ? detail::concat("; training positions at ", opt.offsets,
                                               " random offsets below ", max_offset)
                                    .c_str()
                              : "");

  nn::AdamOptions adam;
  adam.lr = opt.lr;
  adam.betas = {0.9, 0.997};  // tensor2tensor's transformer_base
  adam.eps = 1e-9;
  adam.weight_decay = opt.weight_decay;
  nn::AdamW optimizer(model.named_parameters(), adam);
  auto schedule =
      nn::cosine_with_warmup_schedule(opt.lr, std::min(opt.warmup, opt.steps), opt.steps, opt.lr_final);

  std::filesystem::create_directories(opt.out_dir);
  const std::string ckpt = (std::filesystem::path(opt.out_dir) / "checkpoint.safetensors").string();
  const std::string arch = net.arch();
  int64_t start_step = 0;
  train::TrainingClock clock(opt.time_budget);
  if (opt.resume) {
    LOOM_CHECK(std::filesystem::exists(ckpt), kTrain, ": --resume but there is no checkpoint at '", ckpt,
               "'");
    auto saved = load_safetensors_with_metadata(ckpt).metadata;
    LOOM_CHECK(saved["model"] == "ut" && saved["task"] == opt.task, kTrain, ": checkpoint '", ckpt,
               "' holds a '", saved["model"], "' model for task '", saved["task"], "', not a ut for '",
               opt.task, "'");
    LOOM_CHECK(saved["config"] == arch, "resume: checkpoint '", ckpt, "' was trained with ", saved["config"],
               " but this run asks for ", arch);
    auto meta = nn::load_checkpoint(ckpt, model, &optimizer);
    start_step = std::stoll(meta.at("step"));
    clock = train::TrainingClock::resumed(opt.time_budget, meta);
    std::fprintf(stderr, "resumed from %s at step %lld\n", ckpt.c_str(), static_cast<long long>(start_step));
  }
  auto save = [&](int64_t step) {
    nn::save_checkpoint(ckpt, model, &optimizer,
                        {{"model", "ut"},
                         {"task", opt.task},
                         {"config", arch},
                         {"config_json", config_to_json(net.config()).dump()},
                         {"step", std::to_string(step)},
                         {train::TrainingClock::kMetadataKey, clock.minutes_text()}});
  };
  train::MetricsWriter metrics((std::filesystem::path(opt.out_dir) / "metrics.jsonl").string());
  train::ProgressBar bar(opt.steps);

  model.train();
  double smoothed = NAN;
  int64_t tokens_done = 0;
  train::LoopHooks hooks;
  hooks.train_step = [&](int64_t step) {
    const double lr = nn::apply_lr(optimizer, schedule, step + 1);
    // The batch and its offsets are functions of (seed, step): a resumed run sees the same data.
    data::SplitMix64 pick(opt.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(step));
    std::vector<int64_t> rows;
    for (int64_t k = 0; k < opt.batch; ++k)
      rows.push_back(static_cast<int64_t>(pick.below(static_cast<uint64_t>(task.train.size()))));
    Batch b = make_batch(task.train, rows, device);
    Tensor src_offsets, tgt_offsets;
    if (max_offset > 0 && opt.offsets == "shared") {
      std::vector<int64_t> longer(b.src_lengths.size());
      for (size_t i = 0; i < longer.size(); ++i) longer[i] = std::max(b.src_lengths[i], b.tgt_lengths[i]);
      src_offsets = tgt_offsets =
          data::random_position_offsets(longer, max_offset, opt.seed, 2 * static_cast<uint64_t>(step))
              .to(device);
    } else if (max_offset > 0 && opt.offsets == "independent") {
      src_offsets =
          data::random_position_offsets(b.src_lengths, max_offset, opt.seed, 2 * static_cast<uint64_t>(step))
              .to(device);
      tgt_offsets = data::random_position_offsets(b.tgt_lengths, max_offset, opt.seed,
                                                  2 * static_cast<uint64_t>(step) + 1)
                        .to(device);
    } else if (max_offset > 0) {  // per-step: [B, columns] per side
      src_offsets =
          per_step_position_offsets(b.src_lengths, max_offset, opt.seed, step, 0, offset_columns).to(device);
      tgt_offsets =
          per_step_position_offsets(b.tgt_lengths, max_offset, opt.seed, step, 1, offset_columns).to(device);
    }
    UTLoss l = batch_loss(net, b, task.babi_train, rows, src_offsets, tgt_offsets);
    const double loss_value = l.total.item<double>();
    LOOM_CHECK(std::isfinite(loss_value), kTrain, ": loss became ", loss_value, " at step ", step,
               "; lower --lr");
    optimizer.zero_grad();
    l.total.backward();
    const double grad_norm =
        opt.clip > 0 ? nn::clip_grad_norm_(model.parameters(), opt.clip).item<double>() : 0.0;
    optimizer.step();
    const double ce = l.cross_entropy.item<double>();
    smoothed = std::isnan(smoothed) ? ce : 0.95 * smoothed + 0.05 * ce;
    for (size_t k = 0; k < rows.size(); ++k) tokens_done += b.src_lengths[k] + b.tgt_lengths[k];
    const int64_t done = step + 1;
    if (done % 10 == 0) {
      data::SequenceAccuracy acc = data::padded_accuracy(l.logits.detach(), b.tgt);
      metrics.write(done, "train",
                    {{"loss", loss_value},
                     {"cross_entropy", ce},
                     {"lr", lr},
                     {"grad_norm", grad_norm},
                     {"char_accuracy", acc.char_accuracy()},
                     {"seq_accuracy", acc.sequence_accuracy()},
                     {"ponder_encoder", mean_ponder(l.encoder)},
                     {"ponder_decoder", mean_ponder(l.decoder)}});
    }
    bar.update(done, tokens_done,
               detail::concat("ce ", std::round(smoothed * 1000) / 1000, " ponder ",
                              std::round(mean_ponder(l.encoder) * 100) / 100, "/",
                              std::round(mean_ponder(l.decoder) * 100) / 100));
  };
  hooks.validate = [&](int64_t done) {
    Evaluation ev = evaluate(net, task.eval, task.babi_eval, 0, seen_positions, device);
    const double minutes = train::minutes_since(t0);
    metrics.write(done, "valid", evaluation_metrics(ev, minutes, clock.minutes()));
    std::fprintf(stderr,
                 "\nstep %lld: evaluation char-accuracy %.4f, sequence-accuracy %.4f%s, ponder %.2f / %.2f "
                 "(%.1f min)\n",
                 static_cast<long long>(done), ev.teacher_forced.char_accuracy(),
                 ev.teacher_forced.sequence_accuracy(), position_split_text(ev).c_str(), ev.ponder_encoder,
                 ev.ponder_decoder, minutes);
  };
  hooks.save = save;
  const train::LoopOutcome outcome = train::run_training_loop(
      {start_step, opt.steps, opt.eval_every, opt.checkpoint_every, opt.stop_after, opt.profile,
       opt.profile > 0 ? opt.out_dir + "/op_profile.txt" : std::string()},
      clock, bar, hooks);
  if (outcome.end == train::LoopEnd::kStoppedAfter) return 0;
  const int64_t last_step = outcome.last_step;

  Evaluation ev = evaluate(net, task.eval, task.babi_eval, opt.decode_examples, seen_positions, device);
  const double minutes = train::minutes_since(t0);
  std::map<std::string, double> m = evaluation_metrics(ev, minutes, clock.minutes());
  if (opt.decode_examples > 0 && net.seq2seq) {
    m["decoded_char_accuracy"] = ev.decoded.char_accuracy();
    m["decoded_seq_accuracy"] = ev.decoded.sequence_accuracy();
    m["decoded_examples"] = static_cast<double>(ev.decoded.sequences);
  }
  metrics.write(last_step, "test", m);
  std::printf("%s on %s: char-accuracy %.4f, sequence-accuracy %.4f (teacher-forced, %lld examples)%s",
              arch.c_str(), opt.task.c_str(), ev.teacher_forced.char_accuracy(),
              ev.teacher_forced.sequence_accuracy(), static_cast<long long>(ev.teacher_forced.sequences),
              position_split_text(ev).c_str());
  if (opt.decode_examples > 0 && net.seq2seq)
    std::printf("; greedy-decoded %.4f / %.4f (%lld examples)", ev.decoded.char_accuracy(),
                ev.decoded.sequence_accuracy(), static_cast<long long>(ev.decoded.sequences));
  if (task.babi) std::printf("; error %.1f%%", 100 * (1 - ev.teacher_forced.sequence_accuracy()));
  std::printf("; mean ponder %.2f / %.2f (%.1f min)\n", ev.ponder_encoder, ev.ponder_decoder, minutes);
  if (opt.ponder_maps > 0 && net.config().adaptive()) {
    write_ponder_maps(net, task, opt.ponder_maps, opt.out_dir, device);
    std::fprintf(stderr, "ponder maps: %s/ponder_<i>.svg\n", opt.out_dir.c_str());
  }
  return 0;
}

}  // namespace loom::models
