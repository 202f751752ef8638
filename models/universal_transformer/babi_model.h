#pragma once
// The Universal Transformer on bAbI as the paper ran it (shared/research/ut_act.md 4.2; the author's bAbI-T2T
// code): fact-level input, encoder only, the answer as a class.
//
//   fact f of the story  -> sum_w E[word_w] sqrt(d) * M_story[w]      (w = the word's place in the fact)
//   the question          -> sum_w E[word_w] sqrt(d) * M_question[w]
//   x = [fact_1, ..., fact_n, question, padding...]                   ([B, F + 1, d]; F the batch's most
//   facts) h = encoder(x)                      (UniversalTransformer with encoder_only: UT with ACT, fixed
//   steps, or the
//                                        Transformer baseline; position signal over the fact order)
//   logits = Linear(mean of h over the real positions) -> softmax over the word vocabulary
//
// M_story and M_question [max_words, d] are learned multiplicative position masks initialised to 1
// (bAbI-T2T); PAD words have a zero embedding, so they add nothing. E is the encoder's embedding table (PAD
// 0). The loss is cross-entropy of the answer word plus ponder_weight x the encoder's ponder cost ("act"
// only).
#include <cstdint>
#include <memory>
#include <string>

#include "loom/models/data/babi_generator.h"
#include "loom/models/universal_transformer/universal_transformer.h"
#include "loom/nn/linear.h"
#include "loom/nn/module.h"

namespace loom::models {

class BabiFactModel : public nn::Module {
 public:
  // config: the encoder's (vocab_size = the word vocabulary; encoder_only is set here). max_words: the most
  // words a fact or the question may have (the masks' rows).
  BabiFactModel(const UniversalTransformerConfig& config, int64_t max_words, TensorOptions options = {});

  // One vector per fact and the question right after an example's own facts (then the padding slots): x
  // [B, F + 1, d] and its padding bool [B, F + 1] (true = padding).
  struct Inputs {
    Tensor x, padding;
  };
  Inputs fact_vectors(const data::BabiBatch& batch) const;

  // logits [B, 1, V] (one answer word per question, shaped as a one-token target so the seq2seq metrics
  // apply), cross-entropy against batch.answers, the encoder's ponder (decoder fields stay empty).
  UTLoss loss(const data::BabiBatch& batch);

  // "babi_facts max_words=.. " + the encoder's config string: what checkpoints store.
  std::string str() const;
  const UniversalTransformerConfig& config() const { return encoder->config(); }
  int64_t max_words() const { return max_words_; }

  std::shared_ptr<UniversalTransformer> encoder;
  Tensor story_mask, question_mask;  // [max_words, d]
  std::shared_ptr<nn::Linear> classifier;

 private:
  int64_t max_words_;
};

}  // namespace loom::models
