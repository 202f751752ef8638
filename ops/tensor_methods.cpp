// Method forms of the free ops (x.sum() == loom::sum(x)), so code reads like PyTorch either way.
#include "loom/ops/ops.h"

namespace loom {

Tensor Tensor::sum() const { return loom::sum(*this); }
Tensor Tensor::sum(const std::vector<int64_t>& dims, bool keepdim) const { return loom::sum(*this, dims, keepdim); }
Tensor Tensor::mean() const { return loom::mean(*this); }
Tensor Tensor::mean(const std::vector<int64_t>& dims, bool keepdim) const { return loom::mean(*this, dims, keepdim); }
Tensor Tensor::max() const { return loom::amax(*this); }
Tensor Tensor::max(int64_t dim, bool keepdim) const { return loom::amax(*this, {dim}, keepdim); }
Tensor Tensor::min() const { return loom::amin(*this); }
Tensor Tensor::min(int64_t dim, bool keepdim) const { return loom::amin(*this, {dim}, keepdim); }
Tensor Tensor::argmax(int64_t dim, bool keepdim) const { return loom::argmax(*this, dim, keepdim); }
Tensor Tensor::exp() const { return loom::exp(*this); }
Tensor Tensor::log() const { return loom::log(*this); }
Tensor Tensor::sqrt() const { return loom::sqrt(*this); }
Tensor Tensor::tanh() const { return loom::tanh(*this); }
Tensor Tensor::relu() const { return loom::relu(*this); }
Tensor Tensor::sigmoid() const { return loom::sigmoid(*this); }
Tensor Tensor::abs() const { return loom::abs(*this); }
Tensor Tensor::neg() const { return loom::neg(*this); }
Tensor Tensor::pow(double exponent) const { return loom::pow(*this, exponent); }
Tensor Tensor::matmul(const Tensor& other) const { return loom::matmul(*this, other); }
Tensor Tensor::softmax(int64_t dim) const { return loom::softmax(*this, dim); }
Tensor Tensor::log_softmax(int64_t dim) const { return loom::log_softmax(*this, dim); }
Tensor Tensor::masked_fill(const Tensor& mask, double value) const { return loom::masked_fill(*this, mask, value); }

}  // namespace loom
