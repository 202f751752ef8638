#pragma once
// Tensor factories (torch.zeros, torch.arange, ...). Shapes are written {n, n}; options take a dtype and/or device.
#include <vector>

#include "loom/core/generator.h"
#include "loom/core/tensor.h"

namespace loom {

Tensor empty(const Shape& shape, TensorOptions options = {});
Tensor zeros(const Shape& shape, TensorOptions options = {});
Tensor ones(const Shape& shape, TensorOptions options = {});
Tensor full(const Shape& shape, double value, TensorOptions options = {});
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
Tensor empty_like(const Tensor& t);
// A 0-d tensor holding value.
Tensor scalar_tensor(double value, TensorOptions options = {});

// [start, end) with step; the default dtype is int64 as in PyTorch (pass kFloat32 for floats).
Tensor arange(double end, TensorOptions options = DType::Int64);
Tensor arange(double start, double end, double step = 1, TensorOptions options = DType::Int64);

// Uniform [0, 1) and standard normal draws from the default generator (or an explicit Philox state).
Tensor rand(const Shape& shape, TensorOptions options = {});
Tensor randn(const Shape& shape, TensorOptions options = {});
Tensor rand(const Shape& shape, PhiloxState state, TensorOptions options = {});
Tensor randn(const Shape& shape, PhiloxState state, TensorOptions options = {});
// Integers uniform in [low, high).
Tensor randint(int64_t low, int64_t high, const Shape& shape, TensorOptions options = DType::Int64);

// A tensor holding a copy of `values` (row-major) with the given shape (default: 1-d).
template <typename T>
Tensor tensor(const std::vector<T>& values, const Shape& shape);
template <typename T>
Tensor tensor(const std::vector<T>& values) {
  return tensor(values, Shape{static_cast<int64_t>(values.size())});
}
// Same, placed on `device`.
template <typename T>
Tensor tensor(const std::vector<T>& values, const Shape& shape, Device device) {
  return tensor(values, shape).to(device);
}

}  // namespace loom
