#include "loom/models/data/duplication_task.h"

#include <algorithm>

#include "loom/ops/elementwise.h"
#include "loom/ops/factory.h"
#include "loom/ops/reduce.h"

namespace loom::data {

uint64_t duplication_counters(int64_t batch, int64_t w_len) {
  // The float64 uniform kernel takes two 32-bit words per element, two elements per Philox block.
  return static_cast<uint64_t>((batch * w_len + 1) / 2);
}

DuplicationBatch make_duplication_batch(int64_t batch, int64_t w_len, int64_t n_symbols, PhiloxState state) {
  LOOM_CHECK(batch >= 1 && w_len >= 1 && n_symbols >= 1, "make_duplication_batch: expected batch, w_len and ",
             "n_symbols >= 1, got batch ", batch, ", w_len ", w_len, ", n_symbols ", n_symbols);
  const int64_t L = 2 * w_len + 2;
  // randint's mapping (ops/factory.cpp), done here because randint has no explicit-state form: floor(u * n)
  // with u in [0, 1), clamped against rounding up to n.
  Tensor u = rand({batch, w_len}, state, DType::Float64);
  const double* up = u.data<double>();
  const double n = static_cast<double>(n_symbols);
  Tensor inputs = empty({batch, L}, DType::Int64), targets = empty({batch, L}, DType::Int64);
  int64_t* in = inputs.data<int64_t>();
  int64_t* tg = targets.data<int64_t>();
  for (int64_t b = 0; b < batch; ++b) {
    const double* ub = up + b * w_len;
    int64_t* s = tg + b * L;  // s = [0, w, 0, w] written into the targets row, then shifted into the inputs
    s[0] = 0;
    s[w_len + 1] = 0;
    for (int64_t i = 0; i < w_len; ++i) {
      int64_t sym = std::min(static_cast<int64_t>(ub[i] * n), n_symbols - 1) + 1;
      s[1 + i] = sym;
      s[w_len + 2 + i] = sym;
    }
    int64_t* x = in + b * L;
    x[0] = 0;
    std::copy(s, s + L - 1, x + 1);
    std::fill(s, s + w_len + 2, kIgnoreIndex);  // only the second w is scored
  }
  return {inputs, targets};
}

double masked_accuracy(const Tensor& predictions, const Tensor& targets) {
  LOOM_CHECK(is_integral(predictions.dtype()) && is_integral(targets.dtype()),
             "masked_accuracy: expected integral predictions and targets (ids, not logits), got ",
             dtype_name(predictions.dtype()), " and ", dtype_name(targets.dtype()));
  LOOM_CHECK(predictions.shape() == targets.shape(), "masked_accuracy: predictions ", predictions.shape(),
             " and targets ", targets.shape(), " differ in shape");
  Tensor scored = ne(targets, static_cast<double>(kIgnoreIndex));
  int64_t n_scored = sum(scored.to(DType::Int64)).item<int64_t>();
  LOOM_CHECK(n_scored > 0, "masked_accuracy: every target of ", targets.shape(), " is the ignore index ",
             kIgnoreIndex, "; nothing to score");
  int64_t n_correct = sum(logical_and(eq(predictions, targets), scored).to(DType::Int64)).item<int64_t>();
  return static_cast<double>(n_correct) / static_cast<double>(n_scored);
}

}  // namespace loom::data
