// The Universal Transformer's fact-level bAbI model (models/universal_transformer/babi_model.h): its fact
// vectors against a hand computation, padding invariance, the encoder-only model and encode_vectors,
// gradients by finite differences, and errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "loom/autograd/gradcheck.h"
#include "loom/loom.h"
#include "loom/models/data/babi_generator.h"
#include "loom/models/universal_transformer/babi_model.h"
#include "loom/models/universal_transformer/universal_transformer.h"
#include "support/expect.h"

using namespace loom;
using models::BabiFactModel;
using models::UniversalTransformerConfig;
using test::max_abs_diff;

namespace {

constexpr int64_t kVocab = 12;

UniversalTransformerConfig tiny(const std::string& recurrence = "act") {
  UniversalTransformerConfig c;
  c.vocab_size = kVocab;
  c.d_model = 8;
  c.heads = 2;
  c.d_ff = 16;
  c.recurrence = recurrence;
  c.max_steps = 5;
  c.fixed_steps = 3;
  c.dropout = 0.0;
  return c;
}

// A model in float64 with random (not all-one) position masks and a halting unit that varies with the state.
std::shared_ptr<BabiFactModel> make(const UniversalTransformerConfig& c, uint64_t seed,
                                    int64_t max_words = 4) {
  manual_seed(seed);
  auto m = std::make_shared<BabiFactModel>(c, max_words, TensorOptions(kFloat64));
  NoGradGuard no_grad;
  m->story_mask.copy_(rand(m->story_mask.shape(), kFloat64) + 0.5);
  m->question_mask.copy_(rand(m->question_mask.shape(), kFloat64) + 0.5);
  if (auto& h = m->encoder->encoder_halting) {
    h->weight.copy_(randn(h->weight.shape(), kFloat64) * 3.0);
    h->bias.fill_(0.5);
  }
  return m;
}

data::BabiEncoded example(std::vector<std::vector<int64_t>> facts, std::vector<int64_t> question,
                          int64_t answer) {
  data::BabiEncoded e;
  e.facts = std::move(facts);
  for (const auto& f : e.facts) {
    e.story.insert(e.story.end(), f.begin(), f.end());
    e.story.push_back(data::BabiVocab::kSep);
  }
  e.question = std::move(question);
  e.answer = answer;
  return e;
}

data::BabiBatch batch_of(const std::vector<const data::BabiEncoded*>& examples) {
  return data::collate_babi(examples);
}

// Two facts of 3 and 2 words, a 2-word question.
const data::BabiEncoded kShort = example({{3, 4, 5}, {6, 7}}, {8, 9}, 10);
// Three facts up to 4 words long, a 3-word question: batched with kShort it pads facts, words and question.
const data::BabiEncoded kLong = example({{4, 5, 6, 7}, {3, 11}, {9, 8, 3}}, {8, 4, 9}, 6);

}  // namespace

TEST(BabiFactModel, FactVectorsAreMaskedSumsOfWordEmbeddings) {
  auto m = make(tiny(), 1);
  data::BabiBatch b = batch_of({&kShort, &kLong});
  BabiFactModel::Inputs in = m->fact_vectors(b);
  ASSERT_EQ(in.x.shape(), Shape({2, 4, 8}));  // 3 fact slots + the question
  // Each example's question right after its own facts, then the padding slots.
  EXPECT_EQ(in.padding.to(kInt64).contiguous().to_vector<int64_t>(),
            (std::vector<int64_t>{0, 0, 0, 1, /**/ 0, 0, 0, 0}));
  const double scale = std::sqrt(8.0);
  auto expected = [&](const std::vector<int64_t>& words, const Tensor& mask) {
    Tensor v = zeros({8}, kFloat64);
    for (size_t w = 0; w < words.size(); ++w)
      v = v + m->encoder->embedding.select(0, words[w]) * scale * mask.select(0, static_cast<int64_t>(w));
    return v;
  };
  const data::BabiEncoded* ex[2] = {&kShort, &kLong};
  for (int64_t i = 0; i < 2; ++i) {
    const auto& e = *ex[i];
    for (size_t f = 0; f < e.facts.size(); ++f)
      EXPECT_LE(max_abs_diff(in.x.select(0, i).select(0, static_cast<int64_t>(f)),
                             expected(e.facts[f], m->story_mask)),
                1e-12)
          << "example " << i << " fact " << f;
    // The question right after the example's facts, with its own mask.
    const int64_t q = static_cast<int64_t>(e.facts.size());
    EXPECT_LE(max_abs_diff(in.x.select(0, i).select(0, q), expected(e.question, m->question_mask)), 1e-12);
  }
  // A missing fact (PAD words only) is the zero vector; the encoder also masks it as padding.
  EXPECT_EQ(max_abs_diff(in.x.select(0, 0).select(0, 3), zeros({8}, kFloat64)), 0.0);
}

TEST(BabiFactModel, PaddingChangesNothing) {
  // An example alone and batched with a longer one (more facts, longer facts and question): the same answer
  // logits and the same ponder times at its real positions, for ACT, fixed steps and the Transformer.
  for (const std::string kind : {"act", "fixed", "transformer"}) {
    SCOPED_TRACE(kind);
    UniversalTransformerConfig c = tiny(kind == "act" ? "act" : "fixed");
    if (kind == "transformer") {
      c.model = "transformer";
      c.layers = 2;
    }
    auto m = make(c, 2);
    models::UTLoss alone = m->loss(batch_of({&kShort}));
    models::UTLoss both = m->loss(batch_of({&kShort, &kLong}));
    EXPECT_LE(max_abs_diff(both.logits.narrow(0, 0, 1), alone.logits), 1e-12);
    // Positions: facts 0 and 1, the question at 2; batched, slot 3 is the missing third fact.
    Tensor t_alone = alone.encoder.times.select(0, 0), t_both = both.encoder.times.select(0, 0);
    EXPECT_LE(max_abs_diff(t_both.narrow(0, 0, 3), t_alone), 1e-12);
    EXPECT_EQ(t_both.select(0, 3).item<double>(), 0.0) << "the missing fact does not ponder";
    if (kind == "act") {
      std::vector<int64_t> n = both.encoder.steps.contiguous().to_vector<int64_t>();
      ASSERT_GT(*std::max_element(n.begin(), n.end()), 1)
          << "halting must vary for this test to mean anything";
      EXPECT_GT(alone.ponder_cost.item<double>(), 0.0);
    } else {
      EXPECT_EQ(alone.ponder_cost.item<double>(), 0.0);
    }
  }
}

TEST(BabiFactModel, EncoderOnlyModelAndEncodeVectors) {
  // encode_vectors on embedded tokens is encode, bit for bit (encode is built on it).
  UniversalTransformerConfig c = tiny();
  manual_seed(3);
  models::UniversalTransformer full(c, TensorOptions(kFloat64));
  Tensor src = tensor(std::vector<int64_t>{2, 5, 7, 3, 1, /**/ 4, 11, 6, 0, 0}, {2, 5});
  Tensor padding = eq(src, 0.0);
  models::UTEncoderOutput a = full.encode(src), b = full.encode_vectors(full.embed(src), padding);
  EXPECT_EQ(max_abs_diff(a.output, b.output), 0.0);
  EXPECT_EQ(max_abs_diff(a.ponder.times, b.ponder.times), 0.0);

  // The fact model's encoder has no decoder side, says so in its config, and refuses to decode.
  auto m = make(c, 4);
  for (const auto& [name, p] : m->named_parameters()) {
    EXPECT_EQ(name.find("decoder"), std::string::npos) << name;
    (void)p;
  }
  EXPECT_NE(m->str().find("babi_facts max_words=4"), std::string::npos) << m->str();
  EXPECT_NE(m->str().find("encoder_only=1"), std::string::npos) << m->str();
  EXPECT_EQ(full.config().str().find("encoder_only"), std::string::npos)
      << "old checkpoints' strings stay as they were";
  Tensor enc = m->encoder->encode(src).output;
  test::expect_error([&] { m->encoder->decode(src, enc, padding); }, {"decode", "encoder_only"});
  test::expect_error(
      [&] {
        m->encoder->encode_vectors(zeros({2, 3, 5}, kFloat64));
      },
      {"encode_vectors", "[2, 3, 5]"});
}

TEST(BabiFactModel, GradcheckTinyModel) {
  // The whole loss (answer cross-entropy + ponder cost) in float64 against central differences, for the
  // position masks, the embedding, the classifier and the halting unit; the step counts must not move.
  auto m = make(tiny(), 5);
  data::BabiBatch b = batch_of({&kShort, &kLong});
  models::UTLoss probe = m->loss(b);
  std::vector<int64_t> n = probe.encoder.steps.contiguous().to_vector<int64_t>();
  ASSERT_GT(*std::max_element(n.begin(), n.end()), *std::min_element(n.begin(), n.end()) + 0)
      << "positions must halt at different steps";
  ASSERT_GT(probe.ponder_cost.item<double>(), 0.0);
  std::vector<Tensor> inputs = {m->story_mask, m->question_mask, m->encoder->embedding, m->classifier->weight,
                                m->encoder->encoder_halting->weight};
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>&) { return m->loss(b).total; }, inputs));
  EXPECT_EQ(m->loss(b).encoder.steps.contiguous().to_vector<int64_t>(), n);
}

TEST(BabiFactModel, Errors) {
  auto m = make(tiny(), 6, /*max_words=*/3);
  data::BabiBatch b = batch_of({&kLong});  // facts of 4 words
  test::expect_error([&] { m->loss(b); }, {"BabiFactModel", "4 words", "3 words"});
  data::BabiBatch ok = batch_of({&kShort});
  ok.answers = tensor(std::vector<int64_t>{1, 2}, {2});
  test::expect_error([&] { m->loss(ok); }, {"BabiFactModel", "answers", "[1]"});
  ok = batch_of({&kShort});
  ok.fact_padding = Tensor();
  test::expect_error([&] { m->loss(ok); }, {"BabiFactModel", "fact_padding"});
  test::expect_error([&] { BabiFactModel(tiny(), 0); }, {"BabiFactModel", "max_words"});
}
