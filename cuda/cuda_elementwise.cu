// Elementwise kernels on the GPU: unary and binary maps and where. Each op is a small functor instantiated
// per dtype; broadcasting arrives as stride-0 views and goes through the strided path of launch_elementwise.
#include <cmath>
#include <limits>

#include "loom/cuda/cuda_backend_impl.h"
#include "loom/cuda/launch.cuh"

namespace loom::cuda {
namespace {

// --- unary functors ----------------------------------------------------------------------------------------

template <typename T>
struct NegOp {
  __device__ T operator()(T x) const { return -x; }
};
template <typename T>
struct ExpOp {
  __device__ T operator()(T x) const { return exp(x); }
};
template <typename T>
struct LogOp {
  __device__ T operator()(T x) const { return log(x); }
};
template <typename T>
struct SqrtOp {
  __device__ T operator()(T x) const { return sqrt(x); }
};
template <typename T>
struct RsqrtOp {
  __device__ T operator()(T x) const { return T(1) / sqrt(x); }
};
template <typename T>
struct TanhOp {
  __device__ T operator()(T x) const { return tanh(x); }
};
template <typename T>
struct SigmoidOp {
  __device__ T operator()(T x) const { return T(1) / (T(1) + exp(-x)); }
};
template <typename T>
struct ReluOp {
  __device__ T operator()(T x) const { return x < T(0) ? T(0) : x; }  // NaN stays NaN, as in PyTorch
};
template <typename T>
struct GeluOp {
  __device__ T operator()(T x) const { return T(0.5) * x * (T(1) + erf(x * T(0.70710678118654752440))); }
};
template <typename T>
struct GeluTanhOp {
  __device__ T operator()(T x) const {
    constexpr T kBeta = T(0.79788456080286535588);  // sqrt(2 / pi)
    return T(0.5) * x * (T(1) + tanh(kBeta * (x + T(0.044715) * x * x * x)));
  }
};
template <typename T>
struct EluOp {
  T alpha;
  __device__ T operator()(T x) const { return x > T(0) ? x : alpha * expm1(x); }
};
template <typename T>
struct AbsOp {
  __device__ T operator()(T x) const { return x < T(0) ? -x : x; }
};
template <typename T>
struct SquareOp {
  __device__ T operator()(T x) const { return x * x; }
};
template <typename T>
struct ReciprocalOp {
  __device__ T operator()(T x) const { return T(1) / x; }
};
template <typename T>
struct SignOp {  // sign(NaN) = sign(-0) = 0, as in PyTorch
  __device__ T operator()(T x) const {
    return static_cast<T>(static_cast<int>(T(0) < x) - static_cast<int>(x < T(0)));
  }
};
// min(max(x, lo), hi): NaN passes through, and lo > hi gives hi, as in PyTorch.
template <typename T>
struct ClampOp {
  T lo, hi;
  __device__ T operator()(T x) const {
    T y = x < lo ? lo : x;
    return y > hi ? hi : y;
  }
};
struct LogicalNotOp {
  __device__ bool operator()(bool x) const { return !x; }
};

// Integer powers by squaring in unsigned arithmetic (wrapping on overflow, like the CPU); a negative exponent
// leaves only 1 and -1 with a nonzero integer result.
template <typename T>
__device__ T int_pow(T base, T exponent) {
  if (exponent < 0) {
    if (base == 1) return 1;
    if (base == -1) return (exponent & 1) ? T(-1) : T(1);
    return 0;
  }
  using U = std::make_unsigned_t<T>;
  U result = 1, b = static_cast<U>(base);
  for (U e = static_cast<U>(exponent); e; e >>= 1) {
    if (e & 1) result *= b;
    b *= b;
  }
  return static_cast<T>(result);
}

template <typename T>
__device__ T pow_any(T base, T exponent) {
  if constexpr (std::is_floating_point_v<T>) {
    return pow(base, exponent);
  } else {
    return int_pow(base, exponent);
  }
}

// x ** e for a scalar e. The common exponents take the exact forms the CPU uses, so both backends agree on
// them bit for bit; the branch is uniform across the grid.
template <typename T>
struct PowScalarOp {
  double e;
  __device__ T operator()(T x) const {
    if constexpr (std::is_integral_v<T>) {
      return int_pow(x, static_cast<T>(e));
    } else {
      if (e == 2) return x * x;
      if (e == 1) return x;
      if (e == 0) return T(1);
      if (e == 0.5) return sqrt(x);
      if (e == -1) return T(1) / x;
      if (e == -0.5) return T(1) / sqrt(x);
      if (e == 3) return x * x * x;
      if (e == -2) return T(1) / (x * x);
      return pow(x, static_cast<T>(e));
    }
  }
};

// A double bound as T, saturating for integral T (so an open side given as +-inf stays open).
template <typename T>
T saturate(double v) {
  if constexpr (std::is_floating_point_v<T>) {
    return static_cast<T>(v);
  } else {
    if (!(v > static_cast<double>(std::numeric_limits<T>::lowest()))) return std::numeric_limits<T>::lowest();
    if (v >= static_cast<double>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
    return static_cast<T>(v);
  }
}

template <typename T, typename Op>
void map_unary(const Tensor& in, const Tensor& out, Op op) {
  launch_elementwise<2>({out, in}, Map1<T, T, Op>{ptr<T>(out), ptr<T>(in), op});
}

// Ops that make sense for every numeric dtype.
template <typename T>
void numeric_unary(UnaryOp op, const UnaryParams& p, const Tensor& in, const Tensor& out) {
  switch (op) {
    case UnaryOp::Neg:
      return map_unary<T>(in, out, NegOp<T>{});
    case UnaryOp::Relu:
      return map_unary<T>(in, out, ReluOp<T>{});
    case UnaryOp::Abs:
      return map_unary<T>(in, out, AbsOp<T>{});
    case UnaryOp::Square:
      return map_unary<T>(in, out, SquareOp<T>{});
    case UnaryOp::Sign:
      return map_unary<T>(in, out, SignOp<T>{});
    case UnaryOp::Clamp:
      return map_unary<T>(in, out, ClampOp<T>{saturate<T>(p.a), saturate<T>(p.b)});
    case UnaryOp::PowScalar:
      return map_unary<T>(in, out, PowScalarOp<T>{p.a});
    default:
      break;
  }
  LOOM_FAIL(unary_op_name(op), ": expected a floating dtype (float32 or float64), got ",
            dtype_name(in.dtype()));
}

template <typename T>
void floating_unary(UnaryOp op, const UnaryParams& p, const Tensor& in, const Tensor& out) {
  switch (op) {
    case UnaryOp::Exp:
      return map_unary<T>(in, out, ExpOp<T>{});
    case UnaryOp::Log:
      return map_unary<T>(in, out, LogOp<T>{});
    case UnaryOp::Sqrt:
      return map_unary<T>(in, out, SqrtOp<T>{});
    case UnaryOp::Rsqrt:
      return map_unary<T>(in, out, RsqrtOp<T>{});
    case UnaryOp::Tanh:
      return map_unary<T>(in, out, TanhOp<T>{});
    case UnaryOp::Sigmoid:
      return map_unary<T>(in, out, SigmoidOp<T>{});
    case UnaryOp::Gelu:
      return map_unary<T>(in, out, GeluOp<T>{});
    case UnaryOp::GeluTanh:
      return map_unary<T>(in, out, GeluTanhOp<T>{});
    case UnaryOp::Elu:
      return map_unary<T>(in, out, EluOp<T>{static_cast<T>(p.a)});
    case UnaryOp::Reciprocal:
      return map_unary<T>(in, out, ReciprocalOp<T>{});
    default:
      return numeric_unary<T>(op, p, in, out);
  }
}

// --- binary functors ---------------------------------------------------------------------------------------

template <typename Out, typename In, typename Op>
struct Map2 {
  Out* out;
  const In* a;
  const In* b;
  Op op;
  __device__ __forceinline__ void operator()(int64_t i) const { out[i] = op(a[i], b[i]); }
  __device__ __forceinline__ void operator()(const Offsets<3>& o) const {
    out[o.v[0]] = op(a[o.v[1]], b[o.v[2]]);
  }

  static constexpr int kWidest = static_cast<int>(std::max(sizeof(Out), sizeof(In)));
  template <int V>
  bool aligned() const {
    return pack_aligned<V>(out) && pack_aligned<V>(a) && pack_aligned<V>(b);
  }
  template <int V>
  __device__ __forceinline__ void pack(int64_t i) const {
    const Pack<In, V> x = load_pack<V>(a, i), y = load_pack<V>(b, i);
    Pack<Out, V> z;
#pragma unroll
    for (int k = 0; k < V; ++k) z.v[k] = op(x.v[k], y.v[k]);
    store_pack<V>(out, i, z);
  }
};

// On bool, a + b etc. compute in int and the return converts as != 0.
template <typename T>
struct AddOp {
  __device__ T operator()(T a, T b) const { return a + b; }
};
template <typename T>
struct SubOp {
  __device__ T operator()(T a, T b) const { return a - b; }
};
template <typename T>
struct MulOp {
  __device__ T operator()(T a, T b) const { return a * b; }
};
template <typename T>
struct DivOp {
  __device__ T operator()(T a, T b) const { return a / b; }
};
template <typename T>
struct PowOp {
  __device__ T operator()(T a, T b) const { return pow_any(a, b); }
};
// maximum / minimum propagate NaN from either side, as in PyTorch.
template <typename T>
struct MaximumOp {
  __device__ T operator()(T a, T b) const { return (a != a || a > b) ? a : b; }
};
template <typename T>
struct MinimumOp {
  __device__ T operator()(T a, T b) const { return (a != a || a < b) ? a : b; }
};
template <typename T>
struct EqOp {
  __device__ bool operator()(T a, T b) const { return a == b; }
};
template <typename T>
struct NeOp {
  __device__ bool operator()(T a, T b) const { return a != b; }
};
template <typename T>
struct LtOp {
  __device__ bool operator()(T a, T b) const { return a < b; }
};
template <typename T>
struct LeOp {
  __device__ bool operator()(T a, T b) const { return a <= b; }
};
template <typename T>
struct GtOp {
  __device__ bool operator()(T a, T b) const { return a > b; }
};
template <typename T>
struct GeOp {
  __device__ bool operator()(T a, T b) const { return a >= b; }
};
struct LogicalAndOp {
  __device__ bool operator()(bool a, bool b) const { return a && b; }
};
struct LogicalOrOp {
  __device__ bool operator()(bool a, bool b) const { return a || b; }
};

template <typename Out, typename In, typename Op>
void map_binary(const Tensor& a, const Tensor& b, const Tensor& out, Op op) {
  launch_elementwise<3>({out, a, b}, Map2<Out, In, Op>{ptr<Out>(out), ptr<In>(a), ptr<In>(b), op});
}

// Add/Sub/Mul/Maximum/Minimum take every dtype (on bool the result converts as != 0: add is or, mul is and),
// Pow every numeric dtype and Div floating dtypes only: the op layer promotes integers for true division.
template <typename T>
void arithmetic(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  switch (op) {
    case BinaryOp::Add:
      return map_binary<T, T>(a, b, out, AddOp<T>{});
    case BinaryOp::Sub:
      return map_binary<T, T>(a, b, out, SubOp<T>{});
    case BinaryOp::Mul:
      return map_binary<T, T>(a, b, out, MulOp<T>{});
    case BinaryOp::Maximum:
      return map_binary<T, T>(a, b, out, MaximumOp<T>{});
    case BinaryOp::Minimum:
      return map_binary<T, T>(a, b, out, MinimumOp<T>{});
    default:
      break;
  }
  if constexpr (!std::is_same_v<T, bool>) {
    if (op == BinaryOp::Pow) return map_binary<T, T>(a, b, out, PowOp<T>{});
  }
  if constexpr (std::is_floating_point_v<T>) {
    if (op == BinaryOp::Div) return map_binary<T, T>(a, b, out, DivOp<T>{});
  }
  LOOM_FAIL(binary_op_name(op), ": not supported for dtype ", dtype_name(a.dtype()));
}

template <typename T>
void comparison(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  switch (op) {
    case BinaryOp::Eq:
      return map_binary<bool, T>(a, b, out, EqOp<T>{});
    case BinaryOp::Ne:
      return map_binary<bool, T>(a, b, out, NeOp<T>{});
    case BinaryOp::Lt:
      return map_binary<bool, T>(a, b, out, LtOp<T>{});
    case BinaryOp::Le:
      return map_binary<bool, T>(a, b, out, LeOp<T>{});
    case BinaryOp::Gt:
      return map_binary<bool, T>(a, b, out, GtOp<T>{});
    case BinaryOp::Ge:
      return map_binary<bool, T>(a, b, out, GeOp<T>{});
    default:
      break;
  }
  LOOM_FAIL(binary_op_name(op), ": not a comparison");
}

// --- where -------------------------------------------------------------------------------------------------

template <typename T>
struct WhereMap {
  T* out;
  const bool* cond;
  const T* a;
  const T* b;
  __device__ __forceinline__ void operator()(int64_t i) const { out[i] = cond[i] ? a[i] : b[i]; }
  __device__ __forceinline__ void operator()(const Offsets<4>& o) const {
    out[o.v[0]] = cond[o.v[1]] ? a[o.v[2]] : b[o.v[3]];
  }
};

}  // namespace

void CudaBackend::unary(UnaryOp op, const UnaryParams& params, const Tensor& in, const Tensor& out) {
  DeviceGuard guard(device_);
  if (op == UnaryOp::LogicalNot) return map_unary<bool>(in, out, LogicalNotOp{});
  switch (in.dtype()) {
    case DType::Float32:
      return floating_unary<float>(op, params, in, out);
    case DType::Float64:
      return floating_unary<double>(op, params, in, out);
    case DType::Int64:
      return numeric_unary<int64_t>(op, params, in, out);
    case DType::Int32:
      return numeric_unary<int32_t>(op, params, in, out);
    case DType::Bool:
      break;
  }
  LOOM_FAIL(unary_op_name(op), ": expected a numeric dtype, got ", dtype_name(in.dtype()));
}

void CudaBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  DeviceGuard guard(device_);
  if (op == BinaryOp::LogicalAnd) return map_binary<bool, bool>(a, b, out, LogicalAndOp{});
  if (op == BinaryOp::LogicalOr) return map_binary<bool, bool>(a, b, out, LogicalOrOp{});
  if (is_comparison(op)) {
    LOOM_DISPATCH_ALL(a.dtype(), binary_op_name(op), [&] { comparison<scalar_t>(op, a, b, out); });
    return;
  }
  LOOM_DISPATCH_ALL(a.dtype(), binary_op_name(op), [&] { arithmetic<scalar_t>(op, a, b, out); });
}

void CudaBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  DeviceGuard guard(device_);
  LOOM_DISPATCH_ALL(out.dtype(), "where", [&] {
    launch_elementwise<4>({out, cond, a, b}, WhereMap<scalar_t>{ptr<scalar_t>(out), ptr<bool>(cond),
                                                                ptr<scalar_t>(a), ptr<scalar_t>(b)});
  });
}

}  // namespace loom::cuda
