#pragma once
// Neural-network ops (torch.nn.functional). Masks are bool and broadcastable; true marks an excluded entry.
#include <cstdint>

#include "loom/core/generator.h"
#include "loom/core/tensor.h"

namespace loom {

// Numerically stable softmax along dim. With a mask, excluded entries get probability 0 and a row with no allowed
// entry is all zeros (never NaN); log_softmax gives -inf there.
Tensor softmax(const Tensor& x, int64_t dim, const Tensor& mask = Tensor());
Tensor log_softmax(const Tensor& x, int64_t dim, const Tensor& mask = Tensor());

// Normalises over the trailing dims of normalized_shape; weight/bias of that shape may be undefined.
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);

// Inverted dropout: zeroes each element with probability p and scales the rest by 1/(1-p); identity when
// !training or p == 0. The mask comes from Philox at `state` (drawn from the default generator when omitted),
// so the same state reproduces the same mask.
Tensor dropout(const Tensor& x, double p, bool training = true);
Tensor dropout(const Tensor& x, double p, PhiloxState state);
// The state a dropout mask over numel elements draws from the default generator, which then moves past the
// Philox counters such a mask uses (four elements a counter), so that the next draw starts on fresh numbers.
// dropout() and the fused attention dropout both draw through it.
PhiloxState draw_dropout_state(int64_t numel);

// Rows of weight [num_embeddings, dim] picked by int64 indices of any shape -> [..., dim].
Tensor embedding(const Tensor& indices, const Tensor& weight);

enum class Reduction { None, Mean, Sum };
// logits [N, C] (or [N, C, d1..] as PyTorch), target int64 [N] (or [N, d1..]) class indices. Targets equal to
// ignore_index contribute nothing; Mean divides by the number of targets not ignored.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index = -100,
                     Reduction reduction = Reduction::Mean);

}  // namespace loom
