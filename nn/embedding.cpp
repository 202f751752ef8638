// nn::Embedding.
#include "loom/nn/embedding.h"

#include "loom/nn/init.h"
#include "loom/ops/factory.h"
#include "loom/ops/nn_ops.h"

namespace loom::nn {

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, TensorOptions options)
    : Module("Embedding"), num_embeddings_(num_embeddings), embedding_dim_(embedding_dim) {
  LOOM_CHECK(num_embeddings > 0 && embedding_dim > 0, "Embedding: num_embeddings and embedding_dim must be "
             "positive, got ", num_embeddings, " and ", embedding_dim);
  weight = register_parameter("weight", empty({num_embeddings, embedding_dim}, options));
  reset_parameters();
}

void Embedding::reset_parameters() { init::normal_(weight); }

Tensor Embedding::forward(const Tensor& indices) { return embedding(indices, weight); }

}  // namespace loom::nn
