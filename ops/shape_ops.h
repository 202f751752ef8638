#pragma once
// Ops that assemble, split, index and reorder tensors.
#include <vector>

#include "loom/core/tensor.h"
#include "loom/ops/reduce.h"

namespace loom {

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
// Pieces of `split_size` along dim (the last may be smaller); views.
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim = 0);
// `chunks` pieces of ceil(n / chunks) (fewer when n is small), as torch.chunk; views.
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0);

// torch.gather / scatter / scatter_add: index int64 with x's rank; values out of range are an error.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
Tensor scatter(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// x with src added at index along dim (repeated indices accumulate), as torch.index_add.
Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);

// Stable sort (equal keys keep their order) along dim.
ValuesIndices sort(const Tensor& x, int64_t dim = -1, bool descending = false);
Tensor argsort(const Tensor& x, int64_t dim = -1, bool descending = false);
ValuesIndices topk(const Tensor& x, int64_t k, int64_t dim = -1, bool largest = true);

// [.., num_classes] int64 one-hot of an int64 tensor; num_classes = -1 uses max + 1.
Tensor one_hot(const Tensor& index, int64_t num_classes = -1);
Tensor tril(const Tensor& x, int64_t diagonal = 0);
Tensor triu(const Tensor& x, int64_t diagonal = 0);

}  // namespace loom
