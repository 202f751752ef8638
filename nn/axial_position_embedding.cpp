// nn::AxialPositionEmbedding: each factor's table broadcast over the other axes, concatenated along the width.
#include "loom/nn/axial_position_embedding.h"

#include <string>

#include "loom/nn/init.h"
#include "loom/ops/ops.h"

namespace loom::nn {
namespace {
constexpr const char* kOp = "AxialPositionEmbedding";
}

AxialPositionEmbedding::AxialPositionEmbedding(std::vector<int64_t> shape, std::vector<int64_t> dims,
                                               TensorOptions options)
    : Module("AxialPositionEmbedding"), shape_(std::move(shape)), dims_(std::move(dims)) {
  LOOM_CHECK(!shape_.empty() && shape_.size() == dims_.size(), kOp, ": shape ", list_str(shape_), " and dims ",
             list_str(dims_), " must be non-empty and of the same length (one width per axis)");
  LOOM_CHECK(shape_.size() < static_cast<size_t>(kMaxDims), kOp, ": at most ", kMaxDims - 1, " axes, got shape ",
             list_str(shape_));
  for (size_t k = 0; k < shape_.size(); ++k) {
    LOOM_CHECK(shape_[k] > 0 && dims_[k] > 0, kOp, ": every axis size and width must be positive, got shape ",
               list_str(shape_), " and dims ", list_str(dims_));
    max_positions_ *= shape_[k];
    embedding_dim_ += dims_[k];
    weights.push_back(register_parameter(std::to_string(k), empty({shape_[k], dims_[k]}, options)));
    init::normal_(weights.back());
  }
}

Tensor AxialPositionEmbedding::forward(int64_t length) {
  LOOM_CHECK(length >= 1 && length <= max_positions_, kOp, ": sequence length ", length,
             " is outside [1, ", max_positions_, "], the positions of axial shape ", list_str(shape_));
  // E_k viewed as [1, .., n_k, .., 1, d_k] and expanded to [n1, .., nK, d_k]; the expand's gradient sums over
  // the other axes, which is exactly dE_k[i] = Σ over positions with index i on axis k.
  const size_t K = shape_.size();
  Shape grid(shape_.begin(), shape_.end());
  std::vector<Tensor> parts;
  for (size_t k = 0; k < K; ++k) {
    Shape view(K + 1, 1);
    view[k] = shape_[k];
    view[K] = dims_[k];
    Shape full = grid;
    full.push_back(dims_[k]);
    parts.push_back(weights[k].reshape(view).expand(full));
  }
  Tensor table = cat(parts, -1).reshape({max_positions_, embedding_dim_});
  return length == max_positions_ ? table : table.narrow(0, 0, length);
}

Tensor AxialPositionEmbedding::forward(const Tensor& x) {
  LOOM_CHECK(x.dim() == 3 && x.size(2) == embedding_dim_, kOp, ": expected x [B, L, ", embedding_dim_, "], got ",
             describe(x));
  return add(x, forward(x.size(1)));
}

}  // namespace loom::nn
