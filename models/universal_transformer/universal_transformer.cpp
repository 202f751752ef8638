// The Universal Transformer and its vanilla Transformer baseline (see universal_transformer.h).
#include "loom/models/universal_transformer/universal_transformer.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "loom/autograd/grad_mode.h"
#include "loom/models/data/algorithmic_tasks.h"
#include "loom/nn/init.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/factory.h"
#include "loom/ops/linalg.h"
#include "loom/ops/nn_ops.h"
#include "loom/ops/reduce.h"
#include "loom/ops/shape_ops.h"

namespace loom::models {
namespace {

constexpr const char* kConfigOp = "UniversalTransformerConfig";
constexpr int64_t kPad = data::kAlgoPad;
constexpr int64_t kEos = data::kAlgoEos;

std::string describe_or_undefined(const Tensor& t) { return t.defined() ? describe(t) : "undefined"; }

void check_tokens(const char* op, const char* what, const Tensor& t) {
  LOOM_CHECK(t.defined() && t.dim() == 2 && t.dtype() == DType::Int64 && t.size(1) >= 1, op, ": ", what,
             " must be int64 [B, L] with L >= 1, got ", describe_or_undefined(t));
}

void check_mask(const char* op, const char* what, const Tensor& m, int64_t B, int64_t L) {
  LOOM_CHECK(!m.defined() || (m.dtype() == DType::Bool && m.dim() == 2 && m.size(0) == B && m.size(1) == L),
             op, ": ", what, " must be bool [", B, ", ", L, "] (true = padding), got ",
             describe_or_undefined(m));
}

// Every real position takes k steps ("fixed", "transformer").
UTPonder uniform_ponder(int64_t k, int64_t B, int64_t L, const Tensor& padding, TensorOptions fopts) {
  UTPonder p;
  Tensor full_k = full({B, L}, static_cast<double>(k), fopts);
  p.times = padding.defined() ? where(padding, zeros({1}, fopts), full_k) : full_k;
  p.steps = p.times.to(DType::Int64);
  p.remainders = zeros({B, L}, fopts);
  p.cost = zeros({}, fopts);
  p.iterations = k;
  return p;
}

}  // namespace

UniversalTransformerConfig UniversalTransformerConfig::tiny(int64_t vocab_size) {
  UniversalTransformerConfig c;
  c.vocab_size = vocab_size;
  return c;
}

UniversalTransformerConfig UniversalTransformerConfig::base(int64_t vocab_size) {
  UniversalTransformerConfig c;
  c.vocab_size = vocab_size;
  c.d_model = 1024;
  c.d_ff = 4096;
  c.heads = 16;
  c.dropout = 0.3;
  return c;
}

int64_t UniversalTransformerConfig::steps() const {
  if (model == "transformer") return layers;
  return recurrence == "fixed" ? fixed_steps : max_steps;
}

UniversalTransformerConfig UniversalTransformerConfig::resolved() const {
  const UniversalTransformerConfig& c = *this;
  LOOM_CHECK(c.vocab_size > kEos, kConfigOp, ": vocab_size must hold PAD 0 and EOS 1 (at least 2), got ",
             c.vocab_size);
  LOOM_CHECK(c.model == "ut" || c.model == "transformer", kConfigOp, ": model '", c.model,
             "' is not 'ut' or 'transformer'");
  LOOM_CHECK(c.d_model > 0 && c.heads > 0 && c.d_model % c.heads == 0, kConfigOp, ": d_model (", c.d_model,
             ") must be a positive multiple of heads (", c.heads, ")");
  LOOM_CHECK(c.d_ff > 0, kConfigOp, ": d_ff must be positive, got ", c.d_ff);
  LOOM_CHECK(c.recurrence == "act" || c.recurrence == "fixed", kConfigOp, ": recurrence '", c.recurrence,
             "' is not 'act' or 'fixed'");
  LOOM_CHECK(c.max_steps >= 1 && c.fixed_steps >= 1 && c.layers >= 1, kConfigOp,
             ": max_steps, fixed_steps and layers must be at least 1, got ", c.max_steps, ", ", c.fixed_steps,
             " and ", c.layers);
  LOOM_CHECK(c.act_epsilon >= 0 && c.act_epsilon < 1, kConfigOp, ": act_epsilon must be in [0, 1), got ",
             c.act_epsilon);
  LOOM_CHECK(c.ponder_weight >= 0, kConfigOp, ": ponder_weight must be >= 0, got ", c.ponder_weight);
  LOOM_CHECK(std::isfinite(c.halting_bias_init), kConfigOp, ": halting_bias_init must be finite, got ",
             c.halting_bias_init);
  LOOM_CHECK(c.act_variant == "graves" || c.act_variant == "t2t", kConfigOp, ": act_variant '", c.act_variant,
             "' is not 'graves' or 't2t'");
  LOOM_CHECK(c.step_signal == "learned" || c.step_signal == "sinusoid", kConfigOp, ": step_signal '",
             c.step_signal, "' is not 'learned' or 'sinusoid'");
  LOOM_CHECK(c.transition == "ffn" || c.transition == "sepconv", kConfigOp, ": transition '", c.transition,
             "' is not 'ffn' or 'sepconv'");
  LOOM_CHECK(c.dropout >= 0 && c.dropout < 1, kConfigOp, ": dropout must be in [0, 1), got ", c.dropout);
  LOOM_CHECK(c.eps > 0, kConfigOp, ": eps must be positive, got ", c.eps);
  return c;
}

std::string UniversalTransformerConfig::str() const {
  std::string s = detail::concat("model=", model, " vocab=", vocab_size, " d_model=", d_model,
                                 " heads=", heads, " d_ff=", d_ff, " transition=", transition);
  if (encoder_only) s += " encoder_only=1";
  if (model == "transformer") return s + detail::concat(" layers=", layers);
  s += detail::concat(" recurrence=", recurrence, " step_signal=", step_signal);
  if (recurrence == "fixed") return s + detail::concat(" fixed_steps=", fixed_steps);
  return s +
         detail::concat(" max_steps=", max_steps, " act_epsilon=", act_epsilon, " act_variant=", act_variant);
}

UniversalTransformer::UniversalTransformer(const UniversalTransformerConfig& config, TensorOptions options)
    : Module("UniversalTransformer"), config_(config.resolved()) {
  const UniversalTransformerConfig& c = config_;
  const int64_t d = c.d_model;
  {
    // T2T's symbol modality: N(0, d^-1/2), scaled by sqrt(d) on the way in.
    NoGradGuard no_grad;
    Tensor e = empty({c.vocab_size, d}, options);
    nn::init::normal_(e, 0.0, 1.0 / std::sqrt(static_cast<double>(d)));
    embedding = register_parameter("embedding", e);
  }
  embedding_dropout_ = register_module("embedding_dropout", std::make_shared<nn::Dropout>(c.dropout));
  for (bool dec : {false, true}) {
    if (dec && c.encoder_only) break;
    auto side = register_module(dec ? "decoder" : "encoder", std::make_shared<nn::Module>("UTSide"));
    UTBlockOptions bo;
    bo.d_model = d;
    bo.heads = c.heads;
    bo.d_ff = c.d_ff;
    bo.transition = c.transition;
    bo.decoder = dec;
    bo.dropout = c.dropout;
    bo.eps = c.eps;
    if (c.model == "ut") {
      (dec ? decoder_block : encoder_block) =
          side->register_module("block", std::make_shared<UTBlock>(bo, options));
    } else {
      auto layers = side->register_module("layers", std::make_shared<nn::Module>("UTLayers"));
      for (int64_t l = 0; l < c.layers; ++l)
        (dec ? decoder_layers : encoder_layers)
            .push_back(layers->register_module(std::to_string(l), std::make_shared<UTBlock>(bo, options)));
    }
    (dec ? decoder_ln : encoder_ln) =
        side->register_module("ln", std::make_shared<nn::LayerNorm>(d, c.eps, true, options));
    if (c.adaptive()) {
      auto h = side->register_module("halting", std::make_shared<nn::Linear>(d, 1, true, options));
      NoGradGuard no_grad;
      nn::init::constant_(h->bias, c.halting_bias_init);
      (dec ? decoder_halting : encoder_halting) = h;
    }
    if (c.model == "ut" && c.step_signal == "learned") {
      NoGradGuard no_grad;
      Tensor table = empty({c.steps(), d}, options);
      nn::init::normal_(table, 0.0, 1.0 / std::sqrt(static_cast<double>(d)));
      (dec ? decoder_step_embedding : encoder_step_embedding) =
          side->register_parameter("step_embedding", table);
    }
  }
}

Tensor UniversalTransformer::embed(const Tensor& tokens) const {
  check_tokens("UniversalTransformer::embed", "tokens", tokens);
  Tensor real = ne(tokens, static_cast<double>(kPad)).to(embedding.dtype()).unsqueeze(2);
  return loom::embedding(tokens, embedding) * (std::sqrt(static_cast<double>(config_.d_model))) * real;
}

Tensor UniversalTransformer::position_signal(int64_t B, int64_t L, const Tensor& offsets,
                                             int64_t step) const {
  const int64_t d = config_.d_model;
  const TensorOptions fopts = embedding.options();
  if (!offsets.defined()) return timing_signal_1d(L, d, fopts).view({1, L, d});
  const int64_t signals = config_.model == "ut" ? config_.steps() : 1;
  LOOM_CHECK(offsets.dtype() == DType::Int64 &&
                 ((offsets.dim() == 1 && offsets.size(0) == B) ||
                  (offsets.dim() == 2 && offsets.size(0) == B && offsets.size(1) == signals)),
             "UniversalTransformer: position offsets must be int64 [", B, "] (one offset per sequence) or [",
             B, ", ", signals, "] (one per sequence and step), got ", describe(offsets));
  LOOM_CHECK(step >= 0 && step < signals, "UniversalTransformer: position signal of step ", step, " of ",
             signals);
  const Tensor column = offsets.dim() == 2 ? offsets.select(1, step) : offsets;
  std::vector<int64_t> off = column.cpu().contiguous().to_vector<int64_t>();
  int64_t last = 0;
  for (int64_t b = 0; b < B; ++b) {
    LOOM_CHECK(off[static_cast<size_t>(b)] >= 0, "UniversalTransformer: position offsets must be >= 0, got ",
               off[static_cast<size_t>(b)], " for sequence ", b);
    last = std::max(last, off[static_cast<size_t>(b)]);
  }
  // Rows offsets[b] + l of one table: the same numbers as timing_signal_1d(L, d, start = offsets[b]) (its
  // angles are (start + l) * inv_ts[k], exact in double either way), without B tables of sines.
  std::vector<int64_t> rows(static_cast<size_t>(B * L));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t l = 0; l < L; ++l) rows[static_cast<size_t>(b * L + l)] = off[static_cast<size_t>(b)] + l;
  Tensor table = timing_signal_1d(last + L, d, fopts);
  return loom::embedding(tensor(rows, {B, L}).to(fopts.device), table);
}

Tensor UniversalTransformer::step_signal(int64_t step, bool decoder) const {
  const int64_t d = config_.d_model, steps = config_.steps();
  LOOM_CHECK(config_.model == "ut", "UniversalTransformer::step_signal: the '", config_.model,
             "' model has no step signal");
  LOOM_CHECK(step >= 0 && step < steps, "UniversalTransformer::step_signal: step ", step, " is outside the ",
             steps, " steps the step signal has");
  if (config_.step_signal == "learned") {
    const Tensor& table = decoder ? decoder_step_embedding : encoder_step_embedding;
    return table.select(0, step) * std::sqrt(static_cast<double>(d));
  }
  return timing_signal_1d(steps, d, embedding.options()).select(0, step);
}

Tensor UniversalTransformer::add_step_signals(const Tensor& state, const Tensor& position, int64_t step,
                                              bool decoder) const {
  Tensor s = step_signal(step, decoder);
  return state + position + s.view({1, 1, config_.d_model});
}

UniversalTransformer::SideOutput UniversalTransformer::run_side(bool decoder, const Tensor& input,
                                                                const Tensor& padding, const Tensor& offsets,
                                                                const UTBlockContext& context) {
  const UniversalTransformerConfig& c = config_;
  const int64_t B = input.size(0), L = input.size(1);
  const TensorOptions fopts = embedding.options();
  SideOutput out;
  if (c.model == "transformer") {
    // T2T transformer: the timing signal once, then dropout, then the layers.
    Tensor x = embedding_dropout_->forward(input + position_signal(B, L, offsets));
    for (auto& layer : decoder ? decoder_layers : encoder_layers) x = layer->forward(x, context);
    out.output = (decoder ? decoder_ln : encoder_ln)->forward(x);
    out.ponder = uniform_ponder(c.layers, B, L, padding, fopts);
    return out;
  }
  Tensor x = embedding_dropout_->forward(input);
  const bool act = c.recurrence == "act";
  ActOptions o = act && c.act_variant == "t2t" ? ActOptions::t2t(c.max_steps, c.act_epsilon) : ActOptions{};
  o.max_steps = c.max_steps;
  o.epsilon = c.act_epsilon;
  if (!act) o.fixed_steps = c.fixed_steps;
  ActHaltingFn halt;
  if (act) {
    if (halting_override) {
      halt = [this, decoder](const Tensor&, const Tensor& rows, int64_t step) {
        return halting_override(decoder, rows, step);
      };
    } else {
      halt = [unit = decoder ? decoder_halting : encoder_halting](const Tensor& h, const Tensor&, int64_t) {
        return sigmoid(unit->forward(h).view({h.size(0)}));
      };
    }
  }
  // One position signal for every step, or (offsets [B, steps]) each step's own, made when the loop first
  // reaches that step.
  auto positions = std::make_shared<std::vector<Tensor>>(static_cast<size_t>(c.steps()));
  if (!offsets.defined() || offsets.dim() == 1) (*positions)[0] = position_signal(B, L, offsets);
  const bool per_step = offsets.defined() && offsets.dim() == 2;
  // The compact loop freezes halted states; with one position signal their v = state + position is frozen
  // too, and the step keeps their keys and values (ut_act_step, HaltedKeyValues).
  std::shared_ptr<UTStepInput> step_input;
  if (act && o.compact && !per_step && reuse_halted_key_values) step_input = std::make_shared<UTStepInput>();
  ActPreprocessFn pre = [this, positions, offsets, B, L, decoder, per_step, step_input](const Tensor& state,
                                                                                        int64_t step) {
    Tensor& position = (*positions)[per_step ? static_cast<size_t>(step) : 0];
    if (!position.defined()) position = position_signal(B, L, offsets, step);
    Tensor v = state + position, s = step_signal(step, decoder);
    if (step_input) *step_input = UTStepInput{step, v, s};
    return v + s.view({1, 1, config_.d_model});
  };
  // The one decoder block attends to the same encoder output at every step: project it once for all of them.
  UTBlockContext step_context = context;
  if (decoder)
    step_context.memory_key_value =
        decoder_block->cross_attn->project_key_value(context.memory, context.memory);
  ActResult r = adaptive_computation_time(
      x, ut_act_step(decoder ? decoder_block : encoder_block, std::move(step_context), step_input), halt, o,
      padding, pre);
  out.output = (decoder ? decoder_ln : encoder_ln)->forward(r.output);
  if (act) {
    out.ponder.cost = r.ponder_cost;
    out.ponder.times = r.ponder_times;
    out.ponder.steps = r.steps;
    out.ponder.remainders = r.remainders;
    out.ponder.iterations = r.iterations;
  } else {
    out.ponder = uniform_ponder(c.fixed_steps, B, L, padding, fopts);
  }
  return out;
}

UTEncoderOutput UniversalTransformer::encode(const Tensor& src, const Tensor& src_padding,
                                             const Tensor& position_offsets) {
  constexpr const char* op = "UniversalTransformer::encode";
  check_tokens(op, "src", src);
  check_mask(op, "src_padding", src_padding, src.size(0), src.size(1));
  Tensor padding = src_padding.defined() ? src_padding : eq(src, static_cast<double>(kPad));
  UTBlockContext context;
  context.padding = padding;
  SideOutput s = run_side(false, embed(src), padding, position_offsets, context);
  return {s.output, s.ponder};
}

UTEncoderOutput UniversalTransformer::encode_vectors(const Tensor& x, const Tensor& padding,
                                                     const Tensor& position_offsets) {
  constexpr const char* op = "UniversalTransformer::encode_vectors";
  LOOM_CHECK(x.defined() && x.dim() == 3 && x.size(1) >= 1 && x.size(2) == config_.d_model &&
                 x.dtype() == embedding.dtype() && x.device() == embedding.device(),
             op, ": x must be ", dtype_name(embedding.dtype()), " [B, S >= 1, ", config_.d_model, "] on ",
             embedding.device().str(), ", got ", describe_or_undefined(x));
  check_mask(op, "padding", padding, x.size(0), x.size(1));
  UTBlockContext context;
  context.padding = padding;
  SideOutput s = run_side(false, x, padding, position_offsets, context);
  return {s.output, s.ponder};
}

UTDecoderOutput UniversalTransformer::decode(const Tensor& tgt_in, const Tensor& enc_out,
                                             const Tensor& src_padding, const Tensor& tgt_padding,
                                             const Tensor& position_offsets) {
  constexpr const char* op = "UniversalTransformer::decode";
  LOOM_CHECK(!config_.encoder_only, op, ": this model is encoder_only (", config_.str(), "); it has no decoder");
  check_tokens(op, "tgt_in", tgt_in);
  const int64_t B = tgt_in.size(0), T = tgt_in.size(1);
  LOOM_CHECK(enc_out.defined() && enc_out.dim() == 3 && enc_out.size(0) == B &&
                 enc_out.size(2) == config_.d_model && enc_out.dtype() == embedding.dtype(),
             op, ": enc_out must be ", dtype_name(embedding.dtype()), " [", B, ", S, ", config_.d_model,
             "] (the encoder output for tgt_in ", shape_str(tgt_in.shape()), "), got ",
             describe_or_undefined(enc_out));
  check_mask(op, "src_padding", src_padding, B, enc_out.size(1));
  check_mask(op, "tgt_padding", tgt_padding, B, T);
  UTBlockContext context;
  context.padding = tgt_padding;
  context.memory = enc_out;
  context.memory_padding = src_padding;
  SideOutput s = run_side(true, embed(tgt_in), tgt_padding, position_offsets, context);
  // Shared embedding and softmax weights: logits = h E^T.
  return {linear(s.output, embedding), s.ponder};
}

Tensor UniversalTransformer::shift_right(const Tensor& tgt) {
  check_tokens("UniversalTransformer::shift_right", "tgt", tgt);
  const int64_t B = tgt.size(0), T = tgt.size(1);
  Tensor start = full({B, 1}, static_cast<double>(kPad), tgt.options());
  return T == 1 ? start : cat({start, tgt.narrow(1, 0, T - 1)}, 1);
}

UTLoss UniversalTransformer::loss(const Tensor& src, const Tensor& tgt, const Tensor& src_offsets,
                                  const Tensor& tgt_offsets) {
  constexpr const char* op = "UniversalTransformer::loss";
  check_tokens(op, "src", src);
  check_tokens(op, "tgt", tgt);
  return loss_impl(src, eq(src, static_cast<double>(kPad)), shift_right(tgt), tgt,
                   eq(tgt, static_cast<double>(kPad)), src_offsets, tgt_offsets);
}

UTLoss UniversalTransformer::loss(const data::Seq2SeqBatch& batch, const Tensor& src_offsets,
                                  const Tensor& tgt_offsets) {
  constexpr const char* op = "UniversalTransformer::loss";
  check_tokens(op, "batch.inputs", batch.inputs);
  check_tokens(op, "batch.targets", batch.targets);
  check_tokens(op, "batch.decoder_inputs", batch.decoder_inputs);
  LOOM_CHECK(batch.decoder_inputs.shape() == batch.targets.shape(), op, ": batch.decoder_inputs ",
             shape_str(batch.decoder_inputs.shape()), " and batch.targets ", shape_str(batch.targets.shape()),
             " differ in shape");
  check_mask(op, "batch.input_padding", batch.input_padding, batch.inputs.size(0), batch.inputs.size(1));
  check_mask(op, "batch.target_padding", batch.target_padding, batch.targets.size(0), batch.targets.size(1));
  return loss_impl(batch.inputs, batch.input_padding, batch.decoder_inputs, batch.targets,
                   batch.target_padding, src_offsets, tgt_offsets);
}

UTLoss UniversalTransformer::loss_impl(const Tensor& src, const Tensor& src_padding, const Tensor& tgt_in,
                                       const Tensor& tgt, const Tensor& tgt_padding,
                                       const Tensor& src_offsets, const Tensor& tgt_offsets) {
  constexpr const char* op = "UniversalTransformer::loss";
  LOOM_CHECK(src.size(0) == tgt.size(0), op, ": src ", shape_str(src.shape()), " and tgt ",
             shape_str(tgt.shape()), " have different batch sizes");
  const int64_t B = tgt.size(0), T = tgt.size(1), V = config_.vocab_size;
  UTLoss r;
  r.tokens = B * T - sum(eq(tgt, static_cast<double>(kPad)).to(DType::Int64)).item<int64_t>();
  LOOM_CHECK(r.tokens > 0, op, ": every target in tgt ", shape_str(tgt.shape()), " is PAD; nothing to score");
  UTEncoderOutput enc = encode(src, src_padding, src_offsets);
  UTDecoderOutput dec = decode(tgt_in, enc.output, src_padding, tgt_padding, tgt_offsets);
  r.logits = dec.logits;
  r.cross_entropy = cross_entropy(dec.logits.reshape({B * T, V}), tgt.reshape({B * T}), kPad);
  r.encoder = enc.ponder;
  r.decoder = dec.ponder;
  add_ponder_cost(r, enc.ponder.cost + dec.ponder.cost, config_);
  return r;
}

void add_ponder_cost(UTLoss& loss, const Tensor& ponder_cost, const UniversalTransformerConfig& config) {
  if (config.adaptive()) {
    loss.ponder_cost = ponder_cost;
    loss.total = loss.cross_entropy + ponder_cost * config.ponder_weight;
  } else {
    loss.ponder_cost = zeros({}, loss.cross_entropy.options());
    loss.total = loss.cross_entropy;
  }
}

Tensor UniversalTransformer::greedy_decode(const Tensor& src, int64_t max_len, const Tensor& src_offsets,
                                           const Tensor& tgt_offsets) {
  constexpr const char* op = "UniversalTransformer::greedy_decode";
  check_tokens(op, "src", src);
  LOOM_CHECK(max_len >= 1, op, ": max_len must be at least 1, got ", max_len);
  NoGradGuard no_grad;
  const int64_t B = src.size(0);
  Tensor src_padding = eq(src, static_cast<double>(kPad));
  UTEncoderOutput enc = encode(src, src_padding, src_offsets);
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(B));
  std::vector<char> finished(static_cast<size_t>(B), 0);
  std::vector<int64_t> fed(static_cast<size_t>(B), kPad);  // decoder inputs, row-major [B, t + 1]
  int64_t t = 0;
  for (; t < max_len; ++t) {
    Tensor tgt_in = tensor(fed, {t + 1, B}).to(src.device()).transpose(0, 1).contiguous();
    UTDecoderOutput dec = decode(tgt_in, enc.output, src_padding, Tensor(), tgt_offsets);
    std::vector<int64_t> next = argmax(dec.logits.select(1, t), 1).cpu().contiguous().to_vector<int64_t>();
    bool all_done = true;
    for (int64_t b = 0; b < B; ++b) {
      const size_t i = static_cast<size_t>(b);
      out[i].push_back(finished[i] ? kPad : next[i]);
      if (next[i] == kEos) finished[i] = 1;
      all_done = all_done && finished[i];
    }
    if (all_done) {
      ++t;
      break;
    }
    fed.insert(fed.end(), next.begin(), next.end());
  }
  std::vector<int64_t> flat;
  for (const auto& row : out) flat.insert(flat.end(), row.begin(), row.end());
  return tensor(flat, {B, t}).to(src.device());
}

}  // namespace loom::models
