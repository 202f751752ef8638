#pragma once
// The Universal Transformer's algorithmic tasks (Dehghani et al. 2019, Sec. 3.4) in tensor2tensor's encoding:
// algorithmic_identity_decimal40 (copy), algorithmic_reverse_decimal40 and algorithmic_addition_decimal40, as
// tensor2tensor/data_generators/algorithmic.py generates them, but drawn from a seeded counter-based stream
// so a dataset is the same on every platform (t2t uses the unseeded global numpy stream).
//
// Token ids: PAD 0, EOS 1, digit d -> d + 2 (2..11), the addition separator 12; 13 ids in all (t2t declares
// 12 and so maps its own separator out of range). Every input and every target ends with EOS.
#include <cstdint>
#include <string>
#include <vector>

#include "loom/core/philox.h"
#include "loom/core/tensor.h"

namespace loom::data {

inline constexpr int64_t kAlgoPad = 0;
inline constexpr int64_t kAlgoEos = 1;
inline constexpr int64_t kAlgoDigitOffset = 2;  // t2t's NUM_RESERVED_TOKENS
inline constexpr int64_t kAlgoSeparator = 12;   // the symbol `base` = 10, shifted
inline constexpr int64_t kAlgoVocabSize = 13;

// Random integers from Philox 4x32-10 (core/philox.h) under key = seed, with the 128-bit counter
// (block, stream): draw k of a stream is a pure function of (seed, stream, k), identical on every platform
// and compiler (std::uniform_int_distribution is implementation-defined, so it is not used). Each generated
// example (or bAbI story) owns one stream, so example i does not depend on how many examples come before it.
class TaskRng {
 public:
  TaskRng(uint64_t seed, uint64_t stream) : seed_(seed), stream_(stream) {}
  uint32_t next_u32();
  uint64_t next_u64();
  // Uniform on {lo, ..., hi} (inclusive), unbiased (rejection of the top partial range of 2^64). hi >= lo.
  int64_t uniform_int(int64_t lo, int64_t hi);

 private:
  uint64_t seed_, stream_;
  uint64_t block_ = 0;  // next Philox counter
  Philox4x32 words_{};
  int used_ = 4;  // words of words_ already handed out
};

enum class AlgorithmicTask { Copy, Reverse, Addition };

// "copy" (t2t's identity), "reverse", "addition"; anything else is an error that lists the choices.
AlgorithmicTask parse_algorithmic_task(const std::string& name);
std::string to_string(AlgorithmicTask task);

struct AlgorithmicExample {
  std::vector<int64_t> input;   // token ids, EOS last
  std::vector<int64_t> target;  // token ids, EOS last
};

// Digits 0..9 -> ids d + 2, with EOS appended.
std::vector<int64_t> encode_digits(const std::vector<int>& digits);
// Sum of two little-endian (least-significant first) digit lists, little-endian, without leading zeros (0 is
// [0]); any length, done digit by digit.
std::vector<int> add_little_endian(const std::vector<int>& a, const std::vector<int>& b);

// The examples for explicit digit lists (each digit 0..9, lists non-empty). Addition takes both numbers
// least-significant first: input = n1 + [SEP] + n2, target = n1 + n2.
AlgorithmicExample make_copy_example(const std::vector<int>& digits);
AlgorithmicExample make_reverse_example(const std::vector<int>& digits);
AlgorithmicExample make_addition_example(const std::vector<int>& n1, const std::vector<int>& n2);

// Example `index` of the stream (seed, split): t2t's draws, in t2t's order.
//   copy / reverse: L ~ U{1..max_length}, x_i ~ U{0..9}.
//   addition: l1 ~ U{1..max_length/2}, l2 ~ U{1..max_length-l1-1}, each number's last (most significant)
//   digit ~ U{1..9} unless its length is 1, the others ~ U{0..9}; so the input (before EOS) is at most
//   max_length long.
// max_length >= 1 (copy, reverse) or >= 3 (addition, as t2t).
AlgorithmicExample generate_algorithmic_example(AlgorithmicTask task, int64_t max_length, uint64_t seed,
                                                uint64_t split, int64_t index);

// A padded seq2seq batch. Decoder inputs are the targets shifted right by one with a start token in front
// (t2t's shift_right pads with 0, i.e. PAD, which is the default here), the last target token dropped:
// decoder_inputs[b, 0] = start_token, decoder_inputs[b, t] = targets[b, t - 1]. Masks follow loom's attention
// convention, true = padding (key_padding_mask, ACT's padding_mask). target_padding is the key padding mask
// for the decoder's self-attention too (decoder input t is real exactly when target t is) and the loss
// weights' complement.
struct Seq2SeqBatch {
  Tensor inputs;                                       // int64 [B, S], PAD 0
  Tensor input_padding;                                // bool [B, S]
  Tensor decoder_inputs;                               // int64 [B, T]
  Tensor targets;                                      // int64 [B, T], PAD 0
  Tensor target_padding;                               // bool [B, T]
  std::vector<int64_t> input_lengths, target_lengths;  // real lengths, EOS included
};

struct BatchOptions {
  int64_t start_token = kAlgoPad;  // the decoder's first input
  // Pad to at least this many positions (0: the longest example in the batch), e.g. for fixed shapes.
  int64_t min_input_length = 0;
  int64_t min_target_length = 0;
};

Seq2SeqBatch collate_seq2seq(const std::vector<const AlgorithmicExample*>& examples,
                             const BatchOptions& options = {});

// N examples of one task, generated from (seed, split); example i uses stream (split << 40) | i, so the first
// k examples of a larger dataset equal a dataset of size k, and train / eval splits under one seed never
// share a stream.
class AlgorithmicDataset {
 public:
  AlgorithmicDataset(AlgorithmicTask task, int64_t size, int64_t max_length, uint64_t seed,
                     uint64_t split = 0);
  // t2t's sizes: train 100,000 examples up to length 40 (split 0); eval 10,000 up to length 400 (split 1).
  static AlgorithmicDataset t2t_train(AlgorithmicTask task, uint64_t seed, int64_t size = 100000,
                                      int64_t max_length = 40);
  static AlgorithmicDataset t2t_eval(AlgorithmicTask task, uint64_t seed, int64_t size = 10000,
                                     int64_t max_length = 400);

  AlgorithmicTask task() const { return task_; }
  int64_t size() const { return static_cast<int64_t>(examples_.size()); }
  int64_t max_length() const { return max_length_; }
  const AlgorithmicExample& operator[](int64_t i) const;
  // The examples at `indices`, padded (see Seq2SeqBatch).
  Seq2SeqBatch batch(const std::vector<int64_t>& indices, const BatchOptions& options = {}) const;
  // "algorithmic reverse: 100000 examples, length 1..40, vocabulary 13".
  std::string summary() const;

 private:
  AlgorithmicTask task_;
  int64_t max_length_;
  std::vector<AlgorithmicExample> examples_;
};

// Random position offsets (the UT paper trains "with positions starting with randomized offsets", so that
// position indices up to the evaluation length are seen in training): offsets[b] ~ U{0..max_offset -
// lengths[b]}, so positions offsets[b] .. offsets[b] + lengths[b] - 1 all lie in [0, max_offset). Pass the
// real lengths (or the padded length for every row) and e.g. max_offset = 400 when evaluating up to length
// 400. Draws come from stream `stream` under `seed` xor a fixed constant (so a dataset's seed may be reused
// without replaying its examples' draws); pass the step number as the stream for fresh offsets each step.
// Returns int64 [B]. t2t instead draws one offset per batch from U{0..L-1} at every call, which does not
// bound the positions.
Tensor random_position_offsets(const std::vector<int64_t>& lengths, int64_t max_offset, uint64_t seed,
                               uint64_t stream = 0);

// t2t's padded_accuracy and padded_sequence_accuracy as counts, so batches accumulate exactly:
// a token counts where the target is not PAD (EOS included); a sequence is right when every such token is.
struct SequenceAccuracy {
  int64_t tokens_correct = 0, tokens = 0;
  int64_t sequences_correct = 0, sequences = 0;
  double char_accuracy() const;      // tokens_correct / tokens (0 when empty)
  double sequence_accuracy() const;  // sequences_correct / sequences (0 when empty)
  SequenceAccuracy& operator+=(const SequenceAccuracy& o);
};

// predictions: int64 ids [B, T], or logits [B, T, V] (argmax over V, first maximum on ties); targets int64
// [B, T] with PAD 0. A row whose target is all PAD counts as a right sequence with no tokens (as t2t).
SequenceAccuracy padded_accuracy(const Tensor& predictions, const Tensor& targets);

}  // namespace loom::data
