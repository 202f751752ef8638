#pragma once
// nn::AxialPositionEmbedding: Reformer's factorised position table (trax AxialPositionalEncoding, HF
// AxialPositionEmbeddings; reformer.md section 6). The positions 0 .. Π shape - 1 are read as a row-major
// grid of `shape` (n1, n2, ...) and the width is split as dims (d1 + d2 + ... = d_model): position
// p = i1 n2 n3 ... + i2 n3 ... + ... gets concat(E1[i1], E2[i2], ...). Σ n_k d_k weights replace a
// Π n_k x d_model table (at 2^19 positions and width 256: 192K instead of 134M).
//
// Parameters: "<k>" [n_k, d_k] (the C++ member is `weights`; in ReformerLM they are pos.0, pos.1, ...),
// initialised N(0, 1) as trax and HF (axial_norm_std 1.0).
// forward(L) returns the first L positions [L, d_model]; L > Π n_k is an error. HF additionally demands
// L == Π n_k while training; we accept any L <= Π n_k in both modes (the rows a short sequence never reaches
// keep their initial values, as the rows of a learned table would).
#include <vector>

#include "loom/nn/module.h"

namespace loom::nn {

class AxialPositionEmbedding : public Module {
 public:
  AxialPositionEmbedding(std::vector<int64_t> shape, std::vector<int64_t> dims, TensorOptions options = {});

  // The embeddings of positions 0 .. length - 1: [length, d_model].
  Tensor forward(int64_t length);
  // x [B, L, d_model] -> x + forward(L) (broadcast over the batch).
  Tensor forward(const Tensor& x) override;

  int64_t max_positions() const { return max_positions_; }
  int64_t embedding_dim() const { return embedding_dim_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  const std::vector<int64_t>& dims() const { return dims_; }

  std::vector<Tensor> weights;

 private:
  std::vector<int64_t> shape_, dims_;
  int64_t max_positions_ = 1, embedding_dim_ = 0;
};

}  // namespace loom::nn
