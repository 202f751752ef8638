#pragma once
// The Reformer paper's duplication task (Kitaev et al. 2020, section 2.1, Table 2): a causal LM must copy a
// random string it has seen once. Each sequence is s = [0, w, 0, w] with w i.i.d. uniform over the
// symbols 1..n_symbols (vocabulary n_symbols + 1, 0 the separator); the paper uses n_symbols = 127, |w| = 511
// (L = 1024), our default scale |w| = 127 (L = 256). As in trax's `sequence_copy_inputs`, loss and accuracy
// count only the second w.
#include <cstdint>

#include "loom/core/generator.h"
#include "loom/core/tensor.h"

namespace loom::data {

// The value of targets that loss and accuracy skip: loom::cross_entropy's default ignore_index.
inline constexpr int64_t kIgnoreIndex = -100;

struct DuplicationBatch {
  // int64 [batch, L], L = 2 * w_len + 2: s shifted right, [0, s[0 .. L-2]] (trax's shift_right).
  Tensor inputs;
  // int64 [batch, L]: s, with the first w_len + 2 positions ("0 w 0") set to kIgnoreIndex.
  Tensor targets;
};

// A CPU batch whose w is drawn from Philox `state` as randint(1, n_symbols + 1) draws (float64 rand, floor of
// u * n_symbols, plus 1): the same state gives the same batch on every machine. The draw uses
// (batch * w_len + 1) / 2 Philox counters from state.offset; step the offset by at least that between batches
// (duplication_counters() below), or take states from a Generator's next().
DuplicationBatch make_duplication_batch(int64_t batch, int64_t w_len, int64_t n_symbols, PhiloxState state);
// The Philox counters one make_duplication_batch(batch, w_len, ...) call consumes.
uint64_t duplication_counters(int64_t batch, int64_t w_len);

// The fraction of positions with target != kIgnoreIndex where predictions (ids, e.g. argmax of the logits
// over the last dim) equal targets; both integral, same shape, any device. The paper's Table 2 accuracy.
double masked_accuracy(const Tensor& predictions, const Tensor& targets);

}  // namespace loom::data
