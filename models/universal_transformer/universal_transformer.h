#pragma once
// The Universal Transformer (Dehghani et al. 2019) as tensor2tensor's universal_transformer runs it
// (shared/research/ut_act.md sections 1, 2.5, 7), encoder-decoder, and the vanilla Transformer baseline built
// from the same parts:
//
//   embed(tokens) = E[tokens] * sqrt(d), rows of PAD tokens zeroed (T2T _symbol_bottom_simple), then Dropout
//   "ut": one weight-shared UTBlock per side (ut_blocks.h), applied recurrently; before every step
//           X = H + position_signal(offset) + step_signal[t]                         (T2T step_preprocess)
//         "act": per-position dynamic halting through ops/act.h (ponder cost N + R per side)
//         "fixed": exactly fixed_steps steps (a fixed_steps-layer weight-shared Transformer + the signals)
//   "transformer": `layers` untied UTBlocks per side, the position signal added once after the embedding
//   each side ends with a LayerNorm (pre-norm needs it); the decoder's cross-attention reads the FINAL
//   encoder output; logits = LN(decoder) E^T (shared embedding and softmax weights); decoder input = targets
//   shifted right (PAD first).
//
// ACT semantics (act_variant): "graves" is ops/act.h's default, the recommended spec of ut_act.md 2.5: p from
// the state entering a step, Graves' accumulated output and forced halt at the cap, compact loop (halted
// positions frozen, only running positions computed, so cost follows the ponder time). "t2t" is
// ActOptions::t2t(): T2T's "basic" act_type bit for bit (interpolated output, no forced halt, strict
// comparisons, every position computed every step and halted ones kept transforming). Both keep the decoder
// causal: a position's halting and accumulator depend only on positions at or before it (pitfall 12), which
// the tests check by perturbation.
//
// Tokens follow models/data/algorithmic_tasks.h: PAD 0 (masked everywhere, not scored), EOS 1 (greedy
// decoding stops there).
//
// Parameters: embedding [V, d]; {encoder, decoder}.block.* ("ut") or {encoder, decoder}.layers.<i>.*
// ("transformer"); {encoder, decoder}.ln.*; "ut" + "act": {encoder, decoder}.halting.{weight, bias};
// "ut" + learned step signal: {encoder, decoder}.step_embedding [steps, d].
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "loom/models/data/algorithmic_tasks.h"
#include "loom/models/universal_transformer/ut_blocks.h"
#include "loom/nn/layer_norm.h"
#include "loom/nn/linear.h"
#include "loom/nn/module.h"
#include "loom/ops/act.h"

namespace loom::models {

// Defaults: T2T universal_transformer_tiny's width (d 128, d_ff 512, 4 heads; universal_transformer_base is
// d 1024, d_ff 4096, 16 heads, see base()) with act_max_steps 8 (tiny's own is 4, an artefact of its
// hparams order: ut_act.md 1.6) and T2T's ACT constants (epsilon 0.01, loss weight 0.01, halting bias 1.0).
struct UniversalTransformerConfig {
  int64_t vocab_size = 0;
  std::string model = "ut";  // "ut" | "transformer" (the vanilla baseline)
  int64_t d_model = 128;
  int64_t heads = 4;
  int64_t d_ff = 512;
  std::string recurrence = "act";      // "ut": "act" (dynamic halting) | "fixed" (fixed_steps steps)
  int64_t max_steps = 8;               // ACT's cap M (T2T act_max_steps)
  int64_t fixed_steps = 8;             // T (T2T num_rec_steps) for "fixed"
  double act_epsilon = 0.01;           // halt once the cumulative probability reaches 1 - epsilon
  double ponder_weight = 0.01;         // tau: loss = cross-entropy + tau (encoder + decoder ponder cost)
  double halting_bias_init = 1.0;      // p = sigmoid(1) = 0.731 at first
  std::string act_variant = "graves";  // "graves" | "t2t" (see above)
  std::string step_signal =
      "learned";                   // "learned" (T2T default: N(0, d^-1/2) table times sqrt(d)) | "sinusoid"
  std::string transition = "ffn";  // "ffn" | "sepconv"
  int64_t layers = 6;              // "transformer": layers per side
  double dropout = 0.1;            // embeddings, residual branches, attention weights, transition hidden
  double eps = 1e-6;               // layer norms (T2T)
  // No decoder side (its blocks, LayerNorm, halting unit and step table are not built): the encoder alone,
  // fed token embeddings (encode) or vectors of the caller's (encode_vectors), as the bAbI model uses it.
  bool encoder_only = false;

  static UniversalTransformerConfig tiny(int64_t vocab_size);  // d 128, d_ff 512, 4 heads
  static UniversalTransformerConfig base(int64_t vocab_size);  // d 1024, d_ff 4096, 16 heads, dropout 0.3
  // Checks every value; throws loom::Error naming the bad one.
  UniversalTransformerConfig resolved() const;
  // The architecture ("model=ut vocab=.. d_model=.. ..."; no dropout or loss weight, which do not change the
  // parameters' meaning): checkpoints store it.
  std::string str() const;
  // Loop iterations per side at most: max_steps ("act"), fixed_steps ("fixed") or layers ("transformer").
  int64_t steps() const;
  // Dynamic halting: model "ut" with recurrence "act" (halting units, and a ponder cost in the loss).
  bool adaptive() const { return model == "ut" && recurrence == "act"; }
};

// One side's pondering. "act": N + R per position with the gradient through R (ops/act.h). "fixed" and
// "transformer": every real position takes steps() steps, times = steps, remainders 0 and cost a constant 0
// (no ponder loss, as T2T's basic recurrence).
struct UTPonder {
  Tensor cost;        // scalar: mean over real positions of N + R
  Tensor times;       // [B, L]: N + R (0 at padding): what a ponder map shows
  Tensor steps;       // int64 [B, L]: N (0 at padding)
  Tensor remainders;  // [B, L]: R
  int64_t iterations = 0;
};

struct UTEncoderOutput {
  Tensor output;  // [B, S, d], after the final LayerNorm (padding rows mean nothing; the decoder masks them)
  UTPonder ponder;
};

struct UTDecoderOutput {
  Tensor logits;  // [B, T, vocab]
  UTPonder ponder;
};

struct UTLoss {
  Tensor total;          // cross_entropy + ponder_weight * ponder_cost (the tensor to backpropagate)
  Tensor cross_entropy;  // mean over non-PAD targets (nats)
  Tensor ponder_cost;    // encoder + decoder ponder cost ("act"), else 0
  Tensor logits;         // [B, T, vocab], teacher-forced (for padded_accuracy)
  UTPonder encoder, decoder;
  int64_t tokens = 0;  // targets scored
};

// Sets loss.ponder_cost and loss.total once loss.cross_entropy is set: for an adaptive() model the ponder cost
// given (the sides' costs summed) and total = cross_entropy + ponder_weight * it; otherwise a zero cost and
// total = cross_entropy.
void add_ponder_cost(UTLoss& loss, const Tensor& ponder_cost, const UniversalTransformerConfig& config);

class UniversalTransformer : public nn::Module {
 public:
  explicit UniversalTransformer(const UniversalTransformerConfig& config, TensorOptions options = {});

  // src int64 [B, S] (PAD 0). src_padding bool [B, S] (true = padding); undefined: src == PAD.
  // position_offsets int64 [B] (optional, 0 when undefined): the position signal of sequence b starts at
  // position_offsets[b] (the paper's randomized offsets; data::random_position_offsets draws them). Or int64
  // [B, steps()] ([B, 1] for "transformer"): step t's signal starts at position_offsets[b, t], a new offset
  // at every step as tensor2tensor's step_preprocess draws them, so that only relative positions carry over
  // from one step to the next.
  UTEncoderOutput encode(const Tensor& src, const Tensor& src_padding = Tensor(),
                         const Tensor& position_offsets = Tensor());
  // The encoder on input vectors x [B, S, d] of the model's dtype in place of embedded tokens (one vector per
  // bAbI fact, say): the same signals, dropout, loop and final LayerNorm. padding bool [B, S] (true = padding)
  // or undefined (none).
  UTEncoderOutput encode_vectors(const Tensor& x, const Tensor& padding = Tensor(),
                                 const Tensor& position_offsets = Tensor());
  // tgt_in int64 [B, T]: the decoder inputs (targets shifted right). tgt_padding bool [B, T] (true = padding;
  // decoder input t is real exactly when target t is); undefined: none. enc_out [B, S, d] from encode().
  // Throws for an encoder_only model.
  UTDecoderOutput decode(const Tensor& tgt_in, const Tensor& enc_out, const Tensor& src_padding,
                         const Tensor& tgt_padding = Tensor(), const Tensor& position_offsets = Tensor());
  // Teacher-forced loss of targets tgt int64 [B, T] (PAD 0 not scored) given src [B, S]; padding is where the
  // tokens are PAD. Offsets as encode() / decode().
  UTLoss loss(const Tensor& src, const Tensor& tgt, const Tensor& src_offsets = Tensor(),
              const Tensor& tgt_offsets = Tensor());
  // The same on a collated batch (data::collate_seq2seq): its inputs, masks and decoder inputs as given (so a
  // batch built with another start token is honoured).
  UTLoss loss(const data::Seq2SeqBatch& batch, const Tensor& src_offsets = Tensor(),
              const Tensor& tgt_offsets = Tensor());
  // Greedy decoding under no-grad: one token at a time (the whole prefix re-run each step; exact, since the
  // decoder is causal), until every row has produced EOS or max_len tokens. Returns int64 [B, T <= max_len],
  // PAD after a row's EOS. Call eval() first to turn dropout off.
  Tensor greedy_decode(const Tensor& src, int64_t max_len, const Tensor& src_offsets = Tensor(),
                       const Tensor& tgt_offsets = Tensor());

  // [PAD, tgt[:, 0], ..., tgt[:, T - 2]] (T2T shift_right).
  static Tensor shift_right(const Tensor& tgt);

  const UniversalTransformerConfig& config() const { return config_; }

  // Test hook (ut_act.md 8 A): when set, replaces the halting units of "act": the probabilities [n] (the
  // model's dtype) for the rows (flattened b * L + l) still running at `step` of the encoder
  // (decoder = false) or the decoder.
  std::function<Tensor(bool decoder, const Tensor& rows, int64_t step)> halting_override;
  // "act" with act_variant "graves" and one position signal for all steps: a halted position's self-attention
  // keys and values are updated in O(d) per step from a projection made once when it halts (HaltedKeyValues,
  // ut_blocks.h) instead of a layer norm and projection at every step. Exact up to rounding; false recomputes
  // them (the reference the tests compare against, and a benchmark row).
  bool reuse_halted_key_values = true;

  Tensor embedding;  // [V, d]: input embedding and output projection
  // "ut": one block per side; "transformer": `layers` per side.
  std::shared_ptr<UTBlock> encoder_block, decoder_block;
  std::vector<std::shared_ptr<UTBlock>> encoder_layers, decoder_layers;
  std::shared_ptr<nn::LayerNorm> encoder_ln, decoder_ln;
  std::shared_ptr<nn::Linear> encoder_halting, decoder_halting;  // "act": d -> 1
  Tensor encoder_step_embedding, decoder_step_embedding;         // learned step signal [steps(), d]

  // X = state + position + step signal of `step` for one side (what the loop adds before each step);
  // position [B | 1, L, d] from position_signal().
  Tensor add_step_signals(const Tensor& state, const Tensor& position, int64_t step, bool decoder) const;
  // The step signal of `step` alone: [d] (the learned table's row times sqrt(d), or the sinusoid's row).
  Tensor step_signal(int64_t step, bool decoder) const;
  // T2T get_timing_signal_1d rows offsets[b] .. offsets[b] + L - 1: [B, L, d], or [1, L, d] without offsets.
  // offsets int64 [B], or [B, S] with one column per step (S = steps() for "ut", 1 for "transformer"), of
  // which column `step` is used.
  Tensor position_signal(int64_t B, int64_t L, const Tensor& offsets, int64_t step = 0) const;
  // E[tokens] * sqrt(d) with PAD rows zeroed, before dropout: [B, L, d].
  Tensor embed(const Tensor& tokens) const;

 private:
  struct SideOutput {
    Tensor output;
    UTPonder ponder;
  };
  UTLoss loss_impl(const Tensor& src, const Tensor& src_padding, const Tensor& tgt_in, const Tensor& tgt,
                   const Tensor& tgt_padding, const Tensor& src_offsets, const Tensor& tgt_offsets);
  // One side's loop over x [B, L, d]: embedded tokens or the caller's vectors, before dropout.
  SideOutput run_side(bool decoder, const Tensor& x, const Tensor& padding, const Tensor& offsets,
                      const UTBlockContext& context);

  UniversalTransformerConfig config_;
  std::shared_ptr<nn::Dropout> embedding_dropout_;
};

}  // namespace loom::models
