#pragma once
// Element types a Tensor can hold, and the macros that turn a runtime DType into a C++ type.
#include <cstddef>
#include <cstdint>
#include <string>

namespace loom {

enum class DType : uint8_t { Float32, Float64, Int64, Int32, Bool };

inline constexpr DType kFloat32 = DType::Float32;
inline constexpr DType kFloat64 = DType::Float64;
inline constexpr DType kInt64 = DType::Int64;
inline constexpr DType kInt32 = DType::Int32;
inline constexpr DType kBool = DType::Bool;

size_t element_size(DType dtype);
const char* dtype_name(DType dtype);
inline bool is_floating(DType dtype) { return dtype == DType::Float32 || dtype == DType::Float64; }
inline bool is_integral(DType dtype) { return dtype == DType::Int64 || dtype == DType::Int32; }
// The dtype an arithmetic op on a and b produces (PyTorch's promotion lattice for tensors of equal rank).
DType promote_types(DType a, DType b);

template <typename T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::Float32;
};
template <>
struct dtype_of<double> {
  static constexpr DType value = DType::Float64;
};
template <>
struct dtype_of<int64_t> {
  static constexpr DType value = DType::Int64;
};
template <>
struct dtype_of<int32_t> {
  static constexpr DType value = DType::Int32;
};
template <>
struct dtype_of<bool> {
  static constexpr DType value = DType::Bool;
};
template <typename T>
inline constexpr DType dtype_of_v = dtype_of<T>::value;

}  // namespace loom

// LOOM_DISPATCH_*(dtype, opname, ...): runs the lambda-like body with `scalar_t` bound to the C++ type.
#define LOOM_DTYPE_CASE(DT, T, ...) \
  case DT: {                        \
    using scalar_t = T;             \
    __VA_ARGS__();                  \
    break;                          \
  }

#define LOOM_DISPATCH_FLOATING(dtype, opname, ...)                                                  \
  [&] {                                                                                             \
    switch (dtype) {                                                                                \
      LOOM_DTYPE_CASE(::loom::DType::Float32, float, __VA_ARGS__)                                   \
      LOOM_DTYPE_CASE(::loom::DType::Float64, double, __VA_ARGS__)                                  \
      default:                                                                                      \
        throw ::loom::Error(std::string(opname) + ": expected a floating dtype (float32 or float64), " \
                            "got " + ::loom::dtype_name(dtype));                                    \
    }                                                                                               \
  }()

#define LOOM_DISPATCH_NUMERIC(dtype, opname, ...)                                                        \
  [&] {                                                                                                  \
    switch (dtype) {                                                                                     \
      LOOM_DTYPE_CASE(::loom::DType::Float32, float, __VA_ARGS__)                                        \
      LOOM_DTYPE_CASE(::loom::DType::Float64, double, __VA_ARGS__)                                       \
      LOOM_DTYPE_CASE(::loom::DType::Int64, int64_t, __VA_ARGS__)                                        \
      LOOM_DTYPE_CASE(::loom::DType::Int32, int32_t, __VA_ARGS__)                                        \
      default:                                                                                           \
        throw ::loom::Error(std::string(opname) + ": expected a numeric dtype, got " + ::loom::dtype_name(dtype)); \
    }                                                                                                    \
  }()

#define LOOM_DISPATCH_ALL(dtype, opname, ...)                        \
  [&] {                                                              \
    switch (dtype) {                                                 \
      LOOM_DTYPE_CASE(::loom::DType::Float32, float, __VA_ARGS__)    \
      LOOM_DTYPE_CASE(::loom::DType::Float64, double, __VA_ARGS__)   \
      LOOM_DTYPE_CASE(::loom::DType::Int64, int64_t, __VA_ARGS__)    \
      LOOM_DTYPE_CASE(::loom::DType::Int32, int32_t, __VA_ARGS__)    \
      LOOM_DTYPE_CASE(::loom::DType::Bool, bool, __VA_ARGS__)        \
      default:                                                       \
        throw ::loom::Error(std::string(opname) + ": unknown dtype"); \
    }                                                                \
  }()
