// Tensor factories.
#include "loom/ops/factory.h"

#include <cmath>

#include "loom/ops/backend.h"

namespace loom {

Tensor empty(const Shape& shape, TensorOptions options) { return Tensor::empty(shape, options); }

Tensor full(const Shape& shape, double value, TensorOptions options) {
  Tensor t = Tensor::empty(shape, options);
  backend_for(options.device).fill(t, value);
  return t;
}

Tensor zeros(const Shape& shape, TensorOptions options) { return full(shape, 0.0, options); }
Tensor ones(const Shape& shape, TensorOptions options) { return full(shape, 1.0, options); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.options()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.options()); }
Tensor full_like(const Tensor& t, double value) { return full(t.shape(), value, t.options()); }
Tensor empty_like(const Tensor& t) { return Tensor::empty(t.shape(), t.options()); }
Tensor scalar_tensor(double value, TensorOptions options) { return full(Shape{}, value, options); }

Tensor arange(double end, TensorOptions options) { return arange(0, end, 1, options); }

Tensor arange(double start, double end, double step, TensorOptions options) {
  LOOM_CHECK(step != 0, "arange: step must be nonzero");
  LOOM_CHECK(std::isfinite(start) && std::isfinite(end) && std::isfinite(step), "arange: start ", start, ", end ",
             end, " and step ", step, " must be finite");
  LOOM_CHECK((end - start) / step >= 0 || start == end, "arange: step ", step, " has the wrong sign for [", start,
             ", ", end, ")");
  int64_t n = static_cast<int64_t>(std::ceil((end - start) / step));
  Tensor t = Tensor::empty({std::max<int64_t>(n, 0)}, options);
  backend_for(options.device).arange(start, step, t);
  return t;
}

namespace {
// Philox counters a draw of n elements consumes (4 words per counter, and normal draws use 2 words per value
// in float64, so reserve generously: 2 counters per 4 elements keeps every dtype's draws disjoint).
uint64_t counters_for(int64_t n) { return static_cast<uint64_t>((n + 3) / 4) * 2 + 1; }
}  // namespace

Tensor rand(const Shape& shape, PhiloxState state, TensorOptions options) {
  LOOM_CHECK(is_floating(options.dtype), "rand: expected a floating dtype, got ", dtype_name(options.dtype));
  Tensor t = Tensor::empty(shape, options);
  backend_for(options.device).uniform(t, 0.0, 1.0, state);
  return t;
}

Tensor randn(const Shape& shape, PhiloxState state, TensorOptions options) {
  LOOM_CHECK(is_floating(options.dtype), "randn: expected a floating dtype, got ", dtype_name(options.dtype));
  Tensor t = Tensor::empty(shape, options);
  backend_for(options.device).normal(t, 0.0, 1.0, state);
  return t;
}

Tensor rand(const Shape& shape, TensorOptions options) {
  return rand(shape, default_generator().next(counters_for(shape_numel(shape))), options);
}

Tensor randn(const Shape& shape, TensorOptions options) {
  return randn(shape, default_generator().next(counters_for(shape_numel(shape))), options);
}

Tensor randint(int64_t low, int64_t high, const Shape& shape, TensorOptions options) {
  LOOM_CHECK(high > low, "randint: expected low < high, got [", low, ", ", high, ")");
  LOOM_CHECK(is_integral(options.dtype), "randint: expected an integral dtype, got ", dtype_name(options.dtype));
  // floor(u * (high - low)) + low with u uniform in [0, 1) drawn in float64 (53 bits); the product is >= 0, so
  // the truncating float-to-int copy is a floor.
  TensorOptions f64{DType::Float64, options.device};
  Tensor scaled = rand(shape, f64);
  Backend& be = backend_for(options.device);
  double range = static_cast<double>(high - low);
  be.binary(BinaryOp::Mul, scaled, scalar_tensor(range, f64).expand(shape), scaled);
  be.unary(UnaryOp::Clamp, {0.0, range - 1}, scaled, scaled);
  Tensor out = Tensor::empty(shape, options);
  be.copy(scaled, out);
  be.binary(BinaryOp::Add, out, scalar_tensor(static_cast<double>(low), options).expand(shape), out);
  return out;
}

template <typename T>
Tensor tensor(const std::vector<T>& values, const Shape& shape) {
  LOOM_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "tensor: ", values.size(),
             " values do not fill shape ", shape, " (", shape_numel(shape), " elements)");
  Tensor t = Tensor::empty(shape, dtype_of_v<T>);
  T* p = t.data<T>();
  for (size_t i = 0; i < values.size(); ++i) p[i] = values[i];
  return t;
}

template Tensor tensor<float>(const std::vector<float>&, const Shape&);
template Tensor tensor<double>(const std::vector<double>&, const Shape&);
template Tensor tensor<int64_t>(const std::vector<int64_t>&, const Shape&);
template Tensor tensor<int32_t>(const std::vector<int32_t>&, const Shape&);
template Tensor tensor<bool>(const std::vector<bool>&, const Shape&);

}  // namespace loom
