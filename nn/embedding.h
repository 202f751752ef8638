#pragma once
// nn::Embedding (torch.nn.Embedding): a lookup table weight [num_embeddings, embedding_dim], init N(0, 1).
#include "loom/nn/module.h"

namespace loom::nn {

class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim, TensorOptions options = {});

  // int64 (or int32) indices of any shape -> [..., embedding_dim].
  Tensor forward(const Tensor& indices) override;
  void reset_parameters();

  int64_t num_embeddings() const { return num_embeddings_; }
  int64_t embedding_dim() const { return embedding_dim_; }

  Tensor weight;

 private:
  int64_t num_embeddings_;
  int64_t embedding_dim_;
};

}  // namespace loom::nn
