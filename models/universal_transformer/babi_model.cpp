// The Universal Transformer's bAbI model: fact vectors in, the answer word out (see babi_model.h).
#include "loom/models/universal_transformer/babi_model.h"

#include <vector>

#include "loom/ops/elementwise.h"
#include "loom/ops/factory.h"
#include "loom/ops/nn_ops.h"
#include "loom/ops/reduce.h"
#include "loom/ops/shape_ops.h"

namespace loom::models {
namespace {

constexpr const char* kOp = "BabiFactModel";

std::string describe_or_undefined(const Tensor& t) { return t.defined() ? describe(t) : "undefined"; }

}  // namespace

BabiFactModel::BabiFactModel(const UniversalTransformerConfig& config, int64_t max_words,
                             TensorOptions options)
    : Module(kOp), max_words_(max_words) {
  LOOM_CHECK(max_words >= 1, kOp, ": max_words must be at least 1, got ", max_words);
  UniversalTransformerConfig c = config;
  c.encoder_only = true;
  encoder = register_module("encoder", std::make_shared<UniversalTransformer>(c, options));
  const int64_t d = encoder->config().d_model;
  story_mask = register_parameter("story_mask", ones({max_words, d}, options));
  question_mask = register_parameter("question_mask", ones({max_words, d}, options));
  classifier = register_module("classifier",
                               std::make_shared<nn::Linear>(d, encoder->config().vocab_size, true, options));
}

std::string BabiFactModel::str() const {
  return detail::concat("babi_facts max_words=", max_words_, " ", encoder->config().str());
}

BabiFactModel::Inputs BabiFactModel::fact_vectors(const data::BabiBatch& batch) const {
  const Tensor& facts = batch.facts;
  LOOM_CHECK(facts.defined() && facts.dim() == 3 && facts.dtype() == DType::Int64 && facts.size(0) >= 1 &&
                 facts.size(1) >= 1 && facts.size(2) >= 1,
             kOp, ": batch.facts must be int64 [B, F, W] with every size at least 1, got ",
             describe_or_undefined(facts));
  const int64_t B = facts.size(0), F = facts.size(1), W = facts.size(2), d = config().d_model;
  LOOM_CHECK(batch.fact_padding.defined() && batch.fact_padding.dtype() == DType::Bool &&
                 batch.fact_padding.shape() == Shape({B, F}),
             kOp, ": batch.fact_padding must be bool [", B, ", ", F, "], got ",
             describe_or_undefined(batch.fact_padding));
  const Tensor& question = batch.question;
  LOOM_CHECK(question.defined() && question.dim() == 2 && question.dtype() == DType::Int64 &&
                 question.size(0) == B && question.size(1) >= 1,
             kOp, ": batch.question must be int64 [", B, ", Q >= 1], got ", describe_or_undefined(question));
  LOOM_CHECK(W <= max_words_ && question.size(1) <= max_words_, kOp, ": facts of ", W,
             " words and a question of ", question.size(1),
             " words do not fit the model's position masks of ", max_words_, " words");
  const Device device = encoder->embedding.device();
  // sum over a row's words of embed(word) * mask[place]: PAD words embed to zero and add nothing.
  auto bag = [&](const Tensor& words, const Tensor& mask) {
    const int64_t n = words.size(1);
    return sum(encoder->embed(words.to(device)) * mask.narrow(0, 0, n).unsqueeze(0), {1});
  };
  Tensor fact_vecs = bag(facts.reshape({B * F, W}), story_mask).view({B, F, d});
  Tensor question_vec = bag(question, question_mask).view({B, 1, d});
  // Each example's real facts in story order, its question right after them, then the missing facts: the
  // question's position signal then depends on its own story only, not on the longest story in the batch.
  std::vector<int64_t> missing = batch.fact_padding.to(DType::Int64).cpu().contiguous().to_vector<int64_t>();
  std::vector<int64_t> order;
  std::vector<char> padding;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t base = b * (F + 1);
    for (int64_t f = 0; f < F; ++f)
      if (!missing[static_cast<size_t>(b * F + f)]) order.push_back(base + f), padding.push_back(0);
    order.push_back(base + F), padding.push_back(0);
    for (int64_t f = 0; f < F; ++f)
      if (missing[static_cast<size_t>(b * F + f)]) order.push_back(base + f), padding.push_back(1);
  }
  Tensor stacked = cat({fact_vecs, question_vec}, 1).reshape({B * (F + 1), d});
  Inputs in;
  in.x = index_select(stacked, 0, tensor(order, {B * (F + 1)}).to(device)).view({B, F + 1, d});
  in.padding =
      tensor(std::vector<double>(padding.begin(), padding.end()), {B, F + 1}).to(DType::Bool).to(device);
  return in;
}

UTLoss BabiFactModel::loss(const data::BabiBatch& batch) {
  Inputs in = fact_vectors(batch);
  const int64_t B = in.x.size(0);
  LOOM_CHECK(
      batch.answers.defined() && batch.answers.dtype() == DType::Int64 && batch.answers.shape() == Shape({B}),
      kOp, ": batch.answers must be int64 [", B, "], got ", describe_or_undefined(batch.answers));
  UTEncoderOutput enc = encoder->encode_vectors(in.x, in.padding);
  // The class-label head of bAbI-T2T: the mean over the real positions (facts and question), then a dense
  // layer.
  Tensor real = logical_not(in.padding).to(in.x.dtype()).unsqueeze(2);  // [B, F + 1, 1]
  Tensor pooled = sum(enc.output * real, {1}) / sum(real, {1});         // [B, d]
  Tensor logits = classifier->forward(pooled);                          // [B, V]
  UTLoss r;
  r.logits = logits.unsqueeze(1);
  r.cross_entropy = cross_entropy(logits, batch.answers.to(in.x.device()));
  r.encoder = enc.ponder;
  r.tokens = B;
  add_ponder_cost(r, enc.ponder.cost, config());
  return r;
}

}  // namespace loom::models
