// Elementwise kernels on the CPU: unary math, binary arithmetic and comparisons, and where. Each op is a
// small lambda run by one of three loop templates; the templates give the compiler stride-1 (and stride-0
// scalar operand) inner loops that it vectorises, and fall back to strided loops for everything else.
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "loom/ops/cpu/cpu_backend.h"
#include "loom/ops/cpu/strided.h"
#include "loom/ops/cpu/vec_math.h"

namespace loom {
namespace {

// Elements per task: below this, waking the pool costs more than the loop itself.
constexpr int64_t kGrain = 1 << 15;

template <typename Out, typename In, typename F>
void unary_loop(const Tensor& in, const Tensor& out, F f) {
  cpu::StridedLoop loop({out, in});
  cpu::for_each_run(loop, kGrain, [&f](char** p, const int64_t* st, int64_t n) {
    // A local copy keeps f's captured parameters in registers: read through a reference they would be
    // reloaded after every store to the output (which might alias them), and the loop would not vectorise.
    const F fn = f;
    Out* o = reinterpret_cast<Out*>(p[0]);
    const In* x = reinterpret_cast<const In*>(p[1]);
    if (st[0] == 1 && st[1] == 1) {
      for (int64_t i = 0; i < n; ++i) o[i] = static_cast<Out>(fn(x[i]));
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * st[0]] = static_cast<Out>(fn(x[i * st[1]]));
    }
  });
}

template <typename Out, typename In, typename F>
void binary_loop(const Tensor& a, const Tensor& b, const Tensor& out, F f) {
  cpu::StridedLoop loop({out, a, b});
  cpu::for_each_run(loop, kGrain, [&f](char** p, const int64_t* st, int64_t n) {
    const F fn = f;  // see unary_loop
    Out* o = reinterpret_cast<Out*>(p[0]);
    const In* x = reinterpret_cast<const In*>(p[1]);
    const In* y = reinterpret_cast<const In*>(p[2]);
    if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
      for (int64_t i = 0; i < n; ++i) o[i] = static_cast<Out>(fn(x[i], y[i]));
    } else if (st[0] == 1 && st[1] == 1 && st[2] == 0) {
      const In yv = *y;
      for (int64_t i = 0; i < n; ++i) o[i] = static_cast<Out>(fn(x[i], yv));
    } else if (st[0] == 1 && st[1] == 0 && st[2] == 1) {
      const In xv = *x;
      for (int64_t i = 0; i < n; ++i) o[i] = static_cast<Out>(fn(xv, y[i]));
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * st[0]] = static_cast<Out>(fn(x[i * st[1]], y[i * st[2]]));
    }
  });
}

// Runs f on every numeric dtype (out's dtype equals in's).
template <typename F>
void numeric_unary(const char* name, const Tensor& in, const Tensor& out, F f) {
  LOOM_DISPATCH_NUMERIC(out.dtype(), name, [&] { unary_loop<scalar_t, scalar_t>(in, out, f); });
}

template <typename F>
void floating_unary(const char* name, const Tensor& in, const Tensor& out, F f) {
  LOOM_DISPATCH_FLOATING(out.dtype(), name, [&] { unary_loop<scalar_t, scalar_t>(in, out, f); });
}

// Transcendental ops: f takes and returns a whole vector (cpu/vec_math.h), on contiguous and strided runs
// alike.
template <typename F>
void vector_unary(const char* name, const Tensor& in, const Tensor& out, F f) {
  LOOM_DISPATCH_FLOATING(out.dtype(), name, [&] {
    using T = scalar_t;
    cpu::StridedLoop loop({out, in});
    cpu::for_each_run(loop, kGrain, [&f](char** p, const int64_t* st, int64_t n) {
      const F fn = f;  // see unary_loop
      T* o = reinterpret_cast<T*>(p[0]);
      const T* x = reinterpret_cast<const T*>(p[1]);
      if (st[0] == 1 && st[1] == 1) {
        cpu::vec::map(x, o, n, fn);
      } else {
        cpu::vec::map_strided(x, st[1], o, st[0], n, fn);
      }
    });
  });
}

// A clamp bound converted to T, saturating for integers (so that +-inf leaves that side open).
template <typename T>
T bound_as(double v) {
  if constexpr (std::is_floating_point_v<T>) {
    return static_cast<T>(v);
  } else {
    if (!(v > static_cast<double>(std::numeric_limits<T>::lowest()))) return std::numeric_limits<T>::lowest();
    if (v >= static_cast<double>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
    return static_cast<T>(v);
  }
}

// Integer power by repeated squaring; negative exponents give what 1 / base^e truncates to (as PyTorch).
template <typename T>
T int_pow(T base, T exp) {
  if (exp < 0) {
    if (base == 1) return 1;
    if (base == -1) return (exp & 1) ? T(-1) : T(1);
    return 0;
  }
  using U = std::make_unsigned_t<T>;  // wrap on overflow instead of undefined behaviour
  U result = 1, b = static_cast<U>(base);
  for (U e = static_cast<U>(exp); e; e >>= 1) {
    if (e & 1) result *= b;
    b *= b;
  }
  return static_cast<T>(result);
}

// (Templates rather than the dispatch lambdas, so that `if constexpr` discards the branch for the other
// types.)
template <typename T>
void pow_scalar(const Tensor& in, const Tensor& out, double e) {
  if constexpr (std::is_integral_v<T>) {
    T ei = static_cast<T>(e);
    unary_loop<T, T>(in, out, [ei](T v) { return int_pow(v, ei); });
  } else {
    // The common exponents get exact, vectorisable forms; the rest go through libm.
    if (e == 2) {
      unary_loop<T, T>(in, out, [](T v) { return v * v; });
    } else if (e == 1) {
      unary_loop<T, T>(in, out, [](T v) { return v; });
    } else if (e == 0) {
      unary_loop<T, T>(in, out, [](T) { return T(1); });
    } else if (e == 0.5) {
      vector_unary("pow", in, out, [](auto v) { return cpu::vec::sqrt(v); });
    } else if (e == -1) {
      unary_loop<T, T>(in, out, [](T v) { return T(1) / v; });
    } else if (e == -0.5) {
      vector_unary("pow", in, out, [](auto v) { return 1 / cpu::vec::sqrt(v); });
    } else if (e == 3) {
      unary_loop<T, T>(in, out, [](T v) { return v * v * v; });
    } else if (e == -2) {
      unary_loop<T, T>(in, out, [](T v) { return T(1) / (v * v); });
    } else {
      T et = static_cast<T>(e);
      unary_loop<T, T>(in, out, [et](T v) { return std::pow(v, et); });
    }
  }
}

template <typename T>
void abs(const Tensor& in, const Tensor& out) {
  if constexpr (std::is_floating_point_v<T>) {
    unary_loop<T, T>(in, out, [](T v) { return std::fabs(v); });
  } else {
    unary_loop<T, T>(in, out, [](T v) { return v < 0 ? static_cast<T>(-v) : v; });
  }
}

template <typename T>
void pow(const Tensor& a, const Tensor& b, const Tensor& out) {
  if constexpr (std::is_integral_v<T>) {
    binary_loop<T, T>(a, b, out, [](T x, T y) { return int_pow(x, y); });
  } else {
    binary_loop<T, T>(a, b, out, [](T x, T y) { return std::pow(x, y); });
  }
}

void clamp(const Tensor& in, const Tensor& out, double lo, double hi) {
  LOOM_DISPATCH_NUMERIC(out.dtype(), "clamp", [&] {
    using T = scalar_t;
    T l = bound_as<T>(lo), h = bound_as<T>(hi);
    // min(max(x, lo), hi) as PyTorch: NaN stays NaN, and lo > hi gives hi everywhere.
    unary_loop<T, T>(in, out, [l, h](T v) {
      T t = v < l ? l : v;
      return t > h ? h : t;
    });
  });
}

// Add/Sub/Mul/Maximum/Minimum over every dtype; bool results convert as != 0 (add = or, mul = and).
template <typename F>
void arithmetic(const char* name, const Tensor& a, const Tensor& b, const Tensor& out, F f) {
  LOOM_DISPATCH_ALL(out.dtype(), name, [&] { binary_loop<scalar_t, scalar_t>(a, b, out, f); });
}

template <typename F>
void compare(const Tensor& a, const Tensor& b, const Tensor& out, F f) {
  LOOM_DISPATCH_ALL(a.dtype(), "compare", [&] { binary_loop<bool, scalar_t>(a, b, out, f); });
}

}  // namespace

void CpuBackend::unary(UnaryOp op, const UnaryParams& params, const Tensor& in, const Tensor& out) {
  if (out.numel() == 0) return;
  const char* name = unary_op_name(op);
  switch (op) {
    case UnaryOp::Neg:
      return numeric_unary(name, in, out, [](auto v) { return -v; });
    case UnaryOp::Exp:
      return vector_unary(name, in, out, [](auto v) { return cpu::vec::exp(v); });
    case UnaryOp::Log:
      return vector_unary(name, in, out, [](auto v) { return cpu::vec::log(v); });
    case UnaryOp::Sqrt:
      return vector_unary(name, in, out, [](auto v) { return cpu::vec::sqrt(v); });
    case UnaryOp::Rsqrt:
      return vector_unary(name, in, out, [](auto v) { return 1 / cpu::vec::sqrt(v); });
    case UnaryOp::Tanh:
      return vector_unary(name, in, out, [](auto v) { return cpu::vec::tanh(v); });
    case UnaryOp::Sigmoid:
      return vector_unary(name, in, out, [](auto v) { return cpu::vec::sigmoid(v); });
    case UnaryOp::Relu:
      // x < 0 ? 0 : x keeps NaN, as PyTorch's relu does.
      return numeric_unary(name, in, out, [](auto v) { return v < decltype(v)(0) ? decltype(v)(0) : v; });
    case UnaryOp::Gelu:
      return vector_unary(name, in, out, [](auto v) { return cpu::vec::gelu(v); });
    case UnaryOp::GeluTanh:
      return vector_unary(name, in, out, [](auto v) { return cpu::vec::gelu_tanh(v); });
    case UnaryOp::Elu: {
      double alpha = params.a;
      return vector_unary(name, in, out, [alpha](auto v) {
        using T = typename cpu::vec::Traits<decltype(v)>::T;
        return v > T(0) ? v : static_cast<T>(alpha) * cpu::vec::expm1(v);
      });
    }
    case UnaryOp::Abs:
      return LOOM_DISPATCH_NUMERIC(out.dtype(), name, [&] { abs<scalar_t>(in, out); });
    case UnaryOp::PowScalar:
      return LOOM_DISPATCH_NUMERIC(out.dtype(), name, [&] { pow_scalar<scalar_t>(in, out, params.a); });
    case UnaryOp::Clamp:
      return clamp(in, out, params.a, params.b);
    case UnaryOp::LogicalNot:
      return unary_loop<bool, bool>(in, out, [](bool v) { return !v; });
    case UnaryOp::Square:
      return numeric_unary(name, in, out, [](auto v) { return v * v; });
    case UnaryOp::Reciprocal:
      return floating_unary(name, in, out, [](auto v) { return decltype(v)(1) / v; });
    case UnaryOp::Sign:
      // (0 < x) - (x < 0): NaN and -0 give 0, as PyTorch.
      return numeric_unary(name, in, out, [](auto v) {
        using T = decltype(v);
        return static_cast<T>(static_cast<int>(T(0) < v) - static_cast<int>(v < T(0)));
      });
  }
  missing(name);
}

void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  if (out.numel() == 0) return;
  const char* name = binary_op_name(op);
  switch (op) {
    case BinaryOp::Add:
      return arithmetic(name, a, b, out, [](auto x, auto y) { return x + y; });
    case BinaryOp::Sub:
      return arithmetic(name, a, b, out, [](auto x, auto y) { return x - y; });
    case BinaryOp::Mul:
      return arithmetic(name, a, b, out, [](auto x, auto y) { return x * y; });
    case BinaryOp::Div:
      // True division only: the op layer promotes integral operands to a floating dtype.
      return LOOM_DISPATCH_FLOATING(out.dtype(), name, [&] {
        binary_loop<scalar_t, scalar_t>(a, b, out, [](auto x, auto y) { return x / y; });
      });
    case BinaryOp::Pow:
      return LOOM_DISPATCH_NUMERIC(out.dtype(), name, [&] { pow<scalar_t>(a, b, out); });
    // Maximum/minimum propagate NaN from either side, as PyTorch.
    case BinaryOp::Maximum:
      return arithmetic(name, a, b, out, [](auto x, auto y) { return x != x ? x : (x > y ? x : y); });
    case BinaryOp::Minimum:
      return arithmetic(name, a, b, out, [](auto x, auto y) { return x != x ? x : (x < y ? x : y); });
    case BinaryOp::Eq:
      return compare(a, b, out, [](auto x, auto y) { return x == y; });
    case BinaryOp::Ne:
      return compare(a, b, out, [](auto x, auto y) { return x != y; });
    case BinaryOp::Lt:
      return compare(a, b, out, [](auto x, auto y) { return x < y; });
    case BinaryOp::Le:
      return compare(a, b, out, [](auto x, auto y) { return x <= y; });
    case BinaryOp::Gt:
      return compare(a, b, out, [](auto x, auto y) { return x > y; });
    case BinaryOp::Ge:
      return compare(a, b, out, [](auto x, auto y) { return x >= y; });
    case BinaryOp::LogicalAnd:
      return binary_loop<bool, bool>(a, b, out, [](bool x, bool y) { return x && y; });
    case BinaryOp::LogicalOr:
      return binary_loop<bool, bool>(a, b, out, [](bool x, bool y) { return x || y; });
  }
  missing(name);
}

namespace {

// c ? x : y on the bits: a branch here mispredicts on every other element of a random mask (where over a
// [2048, 512] float mask took 3-4 ms, 15x a multiply), and GCC does not turn `c[i] ? x : y` with a bool load
// into a vector blend. Exact for every value (NaN payloads, -0, inf).
template <typename T>
inline T select_bits(bool c, T x, T y) {
  using U = std::conditional_t<
      sizeof(T) == 1, uint8_t,
      std::conditional_t<sizeof(T) == 2, uint16_t, std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>>>;
  static_assert(sizeof(U) == sizeof(T));
  const U m = static_cast<U>(U{0} - static_cast<U>(c));
  return std::bit_cast<T>(
      static_cast<U>((std::bit_cast<U>(x) & m) | (std::bit_cast<U>(y) & static_cast<U>(~m))));
}

}  // namespace

void CpuBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  if (out.numel() == 0) return;
  LOOM_DISPATCH_ALL(out.dtype(), "where", [&] {
    using T = scalar_t;
    cpu::StridedLoop loop({out, cond, a, b});
    cpu::for_each_run(loop, kGrain, [](char** p, const int64_t* st, int64_t n) {
      T* o = reinterpret_cast<T*>(p[0]);
      const bool* c = reinterpret_cast<const bool*>(p[1]);
      const T* x = reinterpret_cast<const T*>(p[2]);
      const T* y = reinterpret_cast<const T*>(p[3]);
      bool unit = st[0] == 1 && st[1] == 1;
      if (unit && st[2] == 1 && st[3] == 1) {
        for (int64_t i = 0; i < n; ++i) o[i] = select_bits(c[i], x[i], y[i]);
      } else if (unit && st[2] == 0 && st[3] == 1) {  // masked_fill: a scalar where the mask is set
        const T xv = *x;
        for (int64_t i = 0; i < n; ++i) o[i] = select_bits(c[i], xv, y[i]);
      } else if (unit && st[2] == 1 && st[3] == 0) {
        const T yv = *y;
        for (int64_t i = 0; i < n; ++i) o[i] = select_bits(c[i], x[i], yv);
      } else {
        for (int64_t i = 0; i < n; ++i) o[i * st[0]] = select_bits(c[i * st[1]], x[i * st[2]], y[i * st[3]]);
      }
    });
  });
}

}  // namespace loom
