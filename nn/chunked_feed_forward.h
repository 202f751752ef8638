#pragma once
// nn::ChunkedFeedForward: Reformer's feed-forward branch G (trax _FeedForward inside Chunk; HF ReformerFeedForward
// with chunk_size_feed_forward), without the residual add, which belongs to the (reversible) layer around it:
//   G(x) = Dropout(Linear_out(act(Dropout(Linear_in(LayerNorm(x))))))      x [B, L, D] -> [B, L, D]
// Dropout comes BEFORE the activation (trax and HF; with ReLU it makes no difference, with GELU it does).
// Parameters: layer_norm (weight, bias), dense [F, D] + bias, output [D, F] + bias (HF's
// feed_forward.layer_norm, feed_forward.dense.dense, feed_forward.output.dense).
//
// With chunk_size > 0 the block runs through chunked_apply along the sequence (dim 1): the [B, L, F] hidden
// activation exists for chunk_size positions at a time in forward and backward (each chunk is recomputed in
// backward). Dropout masks are then drawn per chunk, identically in forward and recompute (see
// autograd/chunked.h); without dropout, chunked and unchunked results are the same.
#include <memory>
#include <string>

#include "loom/nn/dropout.h"
#include "loom/nn/layer_norm.h"
#include "loom/nn/linear.h"
#include "loom/nn/module.h"

namespace loom::nn {

struct ChunkedFeedForwardOptions {
  int64_t d_model = 0;
  int64_t d_ff = 0;
  double dropout = 0.0;              // both dropouts (HF hidden_dropout_prob)
  std::string activation = "relu";  // "relu" or "gelu" (exact erf form)
  double eps = 1e-12;                // layer norm (HF layer_norm_eps; trax uses 1e-6)
  int64_t chunk_size = 0;            // positions per chunk; <= 0 or >= L: no chunking
};

class ChunkedFeedForward : public Module {
 public:
  explicit ChunkedFeedForward(const ChunkedFeedForwardOptions& options, TensorOptions tensor_options = {});

  // x [B, L, d_model] -> [B, L, d_model].
  Tensor forward(const Tensor& x) override;

  const ChunkedFeedForwardOptions& options() const { return options_; }
  void set_chunk_size(int64_t chunk_size) { options_.chunk_size = chunk_size; }

  std::shared_ptr<LayerNorm> layer_norm;
  std::shared_ptr<Linear> dense;
  std::shared_ptr<Dropout> dropout1;
  std::shared_ptr<Linear> output;
  std::shared_ptr<Dropout> dropout2;

 private:
  // The unchunked block on any slice of positions.
  Tensor block(const Tensor& x);

  ChunkedFeedForwardOptions options_;
};

}  // namespace loom::nn
