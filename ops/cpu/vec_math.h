#pragma once
// Transcendental functions for float32 and float64, written once as templates over V: either a scalar (float,
// double) or a GCC vector of them (Vec<T>: 64 bytes under AVX-512, 32 under AVX, else 16). Loops run them on
// whole vectors through map() / map_sum() and on the scalar tail, with the same operations in the same order,
// so both give identical results. (Leaving vectorisation to the compiler proved fragile: it turns selects
// over expensive values into branches, which it then refuses to vectorise.) Accuracy is within a few ulp of
// the correctly rounded result; special values follow libm: exp(-inf) = 0, exp(+inf) = inf, log(0) = -inf,
// log(x < 0) = NaN, and NaN propagates through every function.
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#if defined(__AVX512F__)
#define LOOM_VEC_BYTES 64
#elif defined(__AVX__)
#define LOOM_VEC_BYTES 32
#else
#define LOOM_VEC_BYTES 16
#endif

namespace loom::cpu::vec {

template <typename T>
struct Simd;
template <>
struct Simd<float> {
  typedef float V __attribute__((vector_size(LOOM_VEC_BYTES)));
  typedef int32_t I __attribute__((vector_size(LOOM_VEC_BYTES)));
};
template <>
struct Simd<double> {
  typedef double V __attribute__((vector_size(LOOM_VEC_BYTES)));
  typedef int64_t I __attribute__((vector_size(LOOM_VEC_BYTES)));
};
template <typename T>
using Vec = typename Simd<T>::V;
template <typename T>
inline constexpr int64_t kLanes = sizeof(Vec<T>) / sizeof(T);

// Element type T and matching integer type I of a scalar or vector V.
template <typename V>
struct Traits;
template <>
struct Traits<float> {
  using T = float;
  using I = int32_t;
  static constexpr bool kVector = false;
};
template <>
struct Traits<double> {
  using T = double;
  using I = int64_t;
  static constexpr bool kVector = false;
};
template <>
struct Traits<Vec<float>> {
  using T = float;
  using I = Simd<float>::I;
  static constexpr bool kVector = true;
};
template <>
struct Traits<Vec<double>> {
  using T = double;
  using I = Simd<double>::I;
  static constexpr bool kVector = true;
};

// Constants of each element type.
template <typename T>
struct FloatTraits;
template <>
struct FloatTraits<float> {
  using Int = int32_t;
  static constexpr int kMantBits = 23;
  static constexpr int32_t kBias = 127;
  // Cody-Waite split of ln 2: kLn2Hi has few enough bits that n * kLn2Hi is exact for every exponent n in
  // use.
  static constexpr float kLn2Hi = 0.693359375f;
  static constexpr float kLn2Lo = -2.12194440e-4f;
  // exp overflows above kExpHi and underflows to 0 below kExpLo (past the smallest denormal).
  static constexpr float kExpHi = 88.72283935546875f;
  static constexpr float kExpLo = -103.972084045410f;
  // tanh(x) rounds to 1 beyond this.
  static constexpr float kTanhSaturate = 9.0f;
  // Taylor degrees that reach the type's precision on |r| <= ln(2) / 2, and atanh series terms for log.
  static constexpr int kExpDegree = 7;
  static constexpr int kExpm1Degree = 8;
  static constexpr int kLogTerms = 5;
};
template <>
struct FloatTraits<double> {
  using Int = int64_t;
  static constexpr int kMantBits = 52;
  static constexpr int64_t kBias = 1023;
  static constexpr double kLn2Hi = 6.93145751953125e-1;
  static constexpr double kLn2Lo = 1.42860682030941723212e-6;
  static constexpr double kExpHi = 709.782712893384;
  static constexpr double kExpLo = -745.1332191019412;
  static constexpr double kTanhSaturate = 20.0;
  static constexpr int kExpDegree = 13;
  static constexpr int kExpm1Degree = 14;
  static constexpr int kLogTerms = 11;
};

template <typename V>
inline V splat(typename Traits<V>::T c) {
  if constexpr (Traits<V>::kVector) {
    return V{} + c;
  } else {
    return c;
  }
}

// Value conversion (float <-> integer) lane by lane.
template <typename To, typename From>
inline To convert(From v) {
  if constexpr (std::is_arithmetic_v<From>) {
    return static_cast<To>(v);
  } else {
    return __builtin_convertvector(v, To);
  }
}

template <typename V>
inline V fabs(V x) {
  if constexpr (Traits<V>::kVector) {
    using Int = typename FloatTraits<typename Traits<V>::T>::Int;
    return std::bit_cast<V>(std::bit_cast<typename Traits<V>::I>(x) & std::numeric_limits<Int>::max());
  } else {
    return std::fabs(x);
  }
}

// Correctly rounded square root. The vector forms use the hardware instruction directly: std::sqrt may set
// errno, which keeps GCC from vectorising it. (The AVX-512 forms are the zero-masked ones with a full mask:
// GCC 12's unmasked intrinsics trip -Wmaybe-uninitialized.)
template <typename V>
inline V sqrt(V x) {
  using T = typename Traits<V>::T;
  if constexpr (!Traits<V>::kVector) {
    return std::sqrt(x);
#if defined(__AVX512F__)
  } else if constexpr (sizeof(V) == 64 && std::is_same_v<T, float>) {
    return reinterpret_cast<V>(_mm512_maskz_sqrt_ps(__mmask16(0xffff), reinterpret_cast<__m512>(x)));
  } else if constexpr (sizeof(V) == 64) {
    return reinterpret_cast<V>(_mm512_maskz_sqrt_pd(__mmask8(0xff), reinterpret_cast<__m512d>(x)));
#endif
#if defined(__AVX__)
  } else if constexpr (sizeof(V) == 32 && std::is_same_v<T, float>) {
    return reinterpret_cast<V>(_mm256_sqrt_ps(reinterpret_cast<__m256>(x)));
  } else if constexpr (sizeof(V) == 32) {
    return reinterpret_cast<V>(_mm256_sqrt_pd(reinterpret_cast<__m256d>(x)));
#endif
#if defined(__SSE2__)
  } else if constexpr (sizeof(V) == 16 && std::is_same_v<T, float>) {
    return reinterpret_cast<V>(_mm_sqrt_ps(reinterpret_cast<__m128>(x)));
  } else if constexpr (sizeof(V) == 16) {
    return reinterpret_cast<V>(_mm_sqrt_pd(reinterpret_cast<__m128d>(x)));
#endif
  } else {
    V r;
    for (int64_t k = 0; k < kLanes<T>; ++k) r[k] = std::sqrt(x[k]);
    return r;
  }
}

// |a| with the sign of s.
template <typename V>
inline V copysign(V a, V s) {
  if constexpr (Traits<V>::kVector) {
    using I = typename Traits<V>::I;
    constexpr auto kSign = std::numeric_limits<typename FloatTraits<typename Traits<V>::T>::Int>::min();
    return std::bit_cast<V>((std::bit_cast<I>(a) & ~kSign) | (std::bit_cast<I>(s) & kSign));
  } else {
    return std::copysign(a, s);
  }
}

// Series coefficients, computed at compile time in long double and rounded once to T.
// Taylor<T, D, S>::c[k] = 1 / (k + S)!; OddRecip<T, N>::c[k] = 1 / (2k + 1).
template <typename T, int D, int Shift>
struct Taylor {
  static constexpr std::array<T, D + 1> c = [] {
    std::array<T, D + 1> a{};
    long double f = 1;
    for (int i = 2; i <= Shift; ++i) f *= i;  // Shift!
    for (int k = 0; k <= D; ++k) {
      if (k > 0) f *= k + Shift;
      a[k] = static_cast<T>(1.0L / f);
    }
    return a;
  }();
};
template <typename T, int N>
struct OddRecip {
  static constexpr std::array<T, N> c = [] {
    std::array<T, N> a{};
    for (int k = 0; k < N; ++k) a[k] = static_cast<T>(1.0L / (2 * k + 1));
    return a;
  }();
};

// c[0] + c[1] x + ... + c[N-1] x^(N-1) by Horner's rule, unrolled at compile time.
template <typename V, typename T, size_t N, size_t... K>
inline V horner_unrolled(V x, const std::array<T, N>& c, std::index_sequence<K...>) {
  V p = splat<V>(c[N - 1]);
  ((p = p * x + c[N - 2 - K]), ...);
  return p;
}
template <typename V, typename T, size_t N>
inline V horner(V x, const std::array<T, N>& c) {
  return horner_unrolled(x, c, std::make_index_sequence<N - 1>{});
}

// 2^n for integers n in the normal exponent range.
template <typename V>
inline V pow2i(typename Traits<V>::I n) {
  using F = FloatTraits<typename Traits<V>::T>;
  return std::bit_cast<V>((n + F::kBias) << F::kMantBits);
}

template <typename V>
inline V exp(V x) {
  using T = typename Traits<V>::T;
  using I = typename Traits<V>::I;
  using F = FloatTraits<T>;
  V xc = x < F::kExpLo ? splat<V>(F::kExpLo) : x;
  xc = xc > F::kExpHi ? splat<V>(F::kExpHi) : xc;
  xc = xc == xc ? xc : splat<V>(0);  // keep NaN out of the integer conversion; fixed up below
  // x = n ln2 + r with |r| <= ln2 / 2; exp(x) = 2^n exp(r). Adding and subtracting 1.5 * 2^mant rounds to the
  // nearest integer.
  constexpr T kRound = T(1.5) * static_cast<T>(int64_t{1} << F::kMantBits);
  V n = (xc * T(1.4426950408889634) + kRound) - kRound;
  V r = (xc - n * F::kLn2Hi) - n * F::kLn2Lo;
  V p = horner(r, Taylor<T, F::kExpDegree, 0>::c);
  // 2^n in two halves, so that results in the denormal range (n < min exponent) are formed without underflow.
  I ni = convert<I>(n);
  I n1 = ni >> 1;
  V y = p * pow2i<V>(n1) * pow2i<V>(ni - n1);
  y = x > F::kExpHi ? splat<V>(std::numeric_limits<T>::infinity()) : y;
  y = x < F::kExpLo ? splat<V>(0) : y;
  return x == x ? y : x;
}

// exp(x) for x <= 0, as softmax needs it for x - max(x): the same polynomial as exp(), without the overflow
// path, and results below the smallest normal flushed to 0 (they are below 1e-38 of the row's largest term, so
// no sum notices). -inf gives 0 and NaN stays NaN. About a quarter fewer operations than exp().
template <typename V>
inline V exp_nonpositive(V x) {
  using T = typename Traits<V>::T;
  using I = typename Traits<V>::I;
  using F = FloatTraits<T>;
  constexpr T kMinNormalLog = static_cast<T>(-(F::kBias - 1) * 0.6931471805599453);
  V xc = x < kMinNormalLog ? splat<V>(kMinNormalLog) : x;
  constexpr T kRound = T(1.5) * static_cast<T>(int64_t{1} << F::kMantBits);
  V n = (xc * T(1.4426950408889634) + kRound) - kRound;
  V r = (xc - n * F::kLn2Hi) - n * F::kLn2Lo;
  // One degree less than exp() for float: the dropped term is below 1e-7 relative (within 2 ulp), which no
  // probability sum can see; double keeps full precision.
  constexpr int kDegree = std::is_same_v<T, float> ? F::kExpDegree - 1 : F::kExpDegree;
  V y = horner(r, Taylor<T, kDegree, 0>::c) * pow2i<V>(convert<I>(n));
  y = x < kMinNormalLog ? splat<V>(0) : y;
  return x == x ? y : x;
}

// exp(x) - 1 without the cancellation near 0.
template <typename V>
inline V expm1(V x) {
  using T = typename Traits<V>::T;
  using F = FloatTraits<T>;
  V small = x * horner(x, Taylor<T, F::kExpm1Degree - 1, 1>::c);  // x * sum_{k<D} x^k / (k+1)!
  V big = vec::exp(x) - T(1);
  return vec::fabs(x) < T(0.34657359027997264) ? small : big;
}

template <typename V>
inline V log(V x) {
  using T = typename Traits<V>::T;
  using I = typename Traits<V>::I;
  using F = FloatTraits<T>;
  using E = typename F::Int;
  constexpr E kMantMask = (E{1} << F::kMantBits) - 1;
  constexpr int kDenormShift = F::kMantBits + 1;
  constexpr T kDenormScale = static_cast<T>(int64_t{1} << kDenormShift);
  constexpr T kInf = std::numeric_limits<T>::infinity();
  // Denormals: scale into the normal range first.
  auto denormal = x < std::numeric_limits<T>::min();
  V xs = denormal ? x * kDenormScale : x;
  I bits = std::bit_cast<I>(xs);
  I e = (bits >> F::kMantBits) - static_cast<E>(F::kBias);
  V m = std::bit_cast<V>((bits & kMantMask) | std::bit_cast<E>(T(1)));  // m in [1, 2)
  auto high = m > T(1.4142135623730951);
  m = high ? m * T(0.5) : m;  // m in [sqrt(1/2), sqrt(2))
  e = high ? e + E{1} : e;
  e = denormal ? e - E{kDenormShift} : e;
  // log(m) = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...) with s = (m - 1) / (m + 1), |s| <= 0.172.
  V s = (m - T(1)) / (m + T(1));
  V p = horner(s * s, OddRecip<T, F::kLogTerms>::c);
  V fe = convert<V>(e);
  V y = (fe * F::kLn2Lo + T(2) * s * p) + fe * F::kLn2Hi;
  y = x == kInf ? x : y;
  y = x == T(0) ? splat<V>(-kInf) : y;
  y = x < T(0) ? splat<V>(std::numeric_limits<T>::quiet_NaN()) : y;
  return x == x ? y : x;
}

// tanh(|x|) = t / (t + 2) with t = expm1(2|x|), accurate near 0 and saturating to 1.
template <typename V>
inline V tanh(V x) {
  using T = typename Traits<V>::T;
  V a = vec::fabs(x);
  a = a > FloatTraits<T>::kTanhSaturate ? splat<V>(FloatTraits<T>::kTanhSaturate) : a;  // NaN stays NaN
  V t = vec::expm1(T(2) * a);
  return vec::copysign(t / (t + T(2)), x);
}

// 1 / (1 + exp(-x)) evaluated with exp(-|x|) <= 1, so neither tail overflows or loses its relative precision.
template <typename V>
inline V sigmoid(V x) {
  using T = typename Traits<V>::T;
  V e = vec::exp(-vec::fabs(x));
  V r = T(1) / (T(1) + e);
  return x >= T(0) ? r : e * r;
}

// erfc(z) for float32 z >= 0 (Numerical Recipes' Chebyshev fit, fractional error < 1.2e-7).
template <typename V>
inline V erfc_nonneg(V z) {
  static_assert(std::is_same_v<typename Traits<V>::T, float>);
  using I = typename Traits<V>::I;
  z = z > 11.0f ? splat<V>(11.0f) : z;  // erfc(11) underflows float; NaN stays NaN
  V t = 1.0f / (1.0f + 0.5f * z);
  V p = -0.82215223f + t * 0.17087277f;
  p = 1.48851587f + t * p;
  p = -1.13520398f + t * p;
  p = 0.27886807f + t * p;
  p = -0.18628806f + t * p;
  p = 0.09678418f + t * p;
  p = 0.37409196f + t * p;
  p = 1.00002368f + t * p;
  p = -1.26551223f + t * p;
  // exp(-z^2) loses |z^2| * eps to the rounding of z^2; zh (z cut to 12 significant bits) has an exact
  // square, so exp(-z^2 + p) = exp(-zh^2) * exp((zh - z)(zh + z) + p) keeps the tail's relative precision.
  V zh = std::bit_cast<V>(std::bit_cast<I>(z) & int32_t(0xfffff000u));
  return t * vec::exp(-zh * zh) * vec::exp((zh - z) * (zh + z) + p);
}

// Exact GELU, x * Phi(x) = x/2 * erfc(-x / sqrt 2), using erfc on |x| so neither tail cancels. float64 calls
// libm's erfc lane by lane, because no short fit reaches double precision.
template <typename V>
inline V gelu(V x) {
  using T = typename Traits<V>::T;
  V a = vec::fabs(x) * T(0.70710678118654752);
  V c;
  if constexpr (std::is_same_v<T, float>) {
    c = erfc_nonneg(a);
  } else if constexpr (Traits<V>::kVector) {
    for (int64_t k = 0; k < kLanes<T>; ++k) c[k] = std::erfc(a[k]);
  } else {
    c = std::erfc(a);
  }
  return T(0.5) * x * (x >= T(0) ? T(2) - c : c);
}

// sin(2 pi u) and cos(2 pi u) (u in [0, 1], the Box-Muller angle). u = q/4 + f with q = round(4u) is exact
// (Sterbenz), leaving x = 2 pi f in [-pi/4, pi/4] for the Taylor series; the quadrant q rotates the pair.
template <typename V>
inline void sincos_2pi(V u, V& sin_out, V& cos_out) {
  using T = typename Traits<V>::T;
  using I = typename Traits<V>::I;
  using F = FloatTraits<T>;
  constexpr T kRound = T(1.5) * static_cast<T>(int64_t{1} << F::kMantBits);
  V q = (u * T(4) + kRound) - kRound;
  V x = (u - q * T(0.25)) * T(6.283185307179586476925);
  V x2 = x * x;
  // sin x = x (1 - x^2/3! + x^4/5! - ...), cos x = 1 - x^2/2! + x^4/4! - ...: series in -x^2.
  constexpr int kTerms = std::is_same_v<T, float> ? 5 : 10;
  static constexpr std::array<T, kTerms> kSin = [] {
    std::array<T, kTerms> a{};
    for (int k = 0; k < kTerms; ++k) a[k] = Taylor<T, 2 * kTerms, 0>::c[2 * k + 1];
    return a;
  }();
  static constexpr std::array<T, kTerms> kCos = [] {
    std::array<T, kTerms> a{};
    for (int k = 0; k < kTerms; ++k) a[k] = Taylor<T, 2 * kTerms, 0>::c[2 * k];
    return a;
  }();
  V s = x * horner(-x2, kSin);
  V c = horner(-x2, kCos);
  I quadrant = convert<I>(q) & 3;
  // q = 0: (s, c); 1: (c, -s); 2: (-s, -c); 3: (-c, s).
  auto swap = (quadrant & 1) != 0;
  V s1 = swap ? c : s;
  V c1 = swap ? s : c;
  sin_out = (quadrant & 2) != 0 ? -s1 : s1;
  cos_out = ((quadrant + 1) & 2) != 0 ? -c1 : c1;
}

// GELU's tanh approximation: x/2 (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3).
template <typename V>
inline V gelu_tanh(V x) {
  using T = typename Traits<V>::T;
  V u = T(0.7978845608028654) * (x + T(0.044715) * x * x * x);
  return x * vec::sigmoid(T(2) * u);
}

// The first `count` elements of x in a vector, zeros after.
template <typename T>
inline Vec<T> load_partial(const T* x, int64_t count) {
  Vec<T> v{};
  std::memcpy(&v, x, static_cast<size_t>(count) * sizeof(T));
  return v;
}

// The largest of x[0 .. n), NaNs skipped (they reach a softmax's output through exp(x - max)); -inf when n =
// 0.
template <typename T>
inline T max_of(const T* x, int64_t n) {
  using V = Vec<T>;
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  V acc = splat<V>(kNegInf);
  int64_t i = 0;
  for (; i + kLanes<T> <= n; i += kLanes<T>) {
    V x_v;
    std::memcpy(&x_v, x + i, sizeof(V));
    acc = x_v > acc ? x_v : acc;
  }
  T m = kNegInf;
  for (int64_t j = 0; j < kLanes<T>; ++j) m = acc[j] > m ? acc[j] : m;
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// sum_i a[i] b[i] for i < n, in vector lanes (GCC keeps a scalar loop's float sum in order, one add at a
// time).
template <typename T>
inline T dot(const T* a, const T* b, int64_t n) {
  using V = Vec<T>;
  V acc{};
  int64_t i = 0;
  for (; i + kLanes<T> <= n; i += kLanes<T>) {
    V a_v, b_v;
    std::memcpy(&a_v, a + i, sizeof(V));
    std::memcpy(&b_v, b + i, sizeof(V));
    acc += a_v * b_v;
  }
  if (i < n) acc += load_partial(a + i, n - i) * load_partial(b + i, n - i);
  T sum = 0;
  for (int64_t j = 0; j < kLanes<T>; ++j) sum += acc[j];
  return sum;
}

// y[i] = f(x[i]) for i < n (y may be x). f takes and returns Vec<T>; every element, the tail included, goes
// through the vector code, so a value's result does not depend on its position or on how work is split.
template <typename T, typename F>
inline void map(const T* x, T* y, int64_t n, F f) {
  using V = Vec<T>;
  int64_t i = 0;
  for (; i + kLanes<T> <= n; i += kLanes<T>) {
    V v;
    std::memcpy(&v, x + i, sizeof(V));
    v = f(v);
    std::memcpy(y + i, &v, sizeof(V));
  }
  if (i < n) {
    V v = f(load_partial(x + i, n - i));
    std::memcpy(y + i, &v, static_cast<size_t>(n - i) * sizeof(T));
  }
}

// map() over strided x and y (strides in elements), gathering and scattering one vector at a time.
template <typename T, typename F>
inline void map_strided(const T* x, int64_t x_stride, T* y, int64_t y_stride, int64_t n, F f) {
  using V = Vec<T>;
  for (int64_t i = 0; i < n; i += kLanes<T>) {
    int64_t m = n - i < kLanes<T> ? n - i : kLanes<T>;
    V v{};
    for (int64_t k = 0; k < m; ++k) v[k] = x[(i + k) * x_stride];
    v = f(v);
    for (int64_t k = 0; k < m; ++k) y[(i + k) * y_stride] = v[k];
  }
}

// sum_i f(x[i]) for i < n, f as for map(). Vector lanes accumulate independently in a fixed order, so the
// result depends only on the data.
template <typename T, typename F>
inline T map_sum(const T* x, int64_t n, F f) {
  using V = Vec<T>;
  V acc0{}, acc1{};
  int64_t i = 0;
  for (; i + 2 * kLanes<T> <= n; i += 2 * kLanes<T>) {
    V v0, v1;
    std::memcpy(&v0, x + i, sizeof(V));
    std::memcpy(&v1, x + i + kLanes<T>, sizeof(V));
    acc0 += f(v0);
    acc1 += f(v1);
  }
  acc0 += acc1;
  T sum = 0;
  for (int64_t k = 0; k < kLanes<T>; ++k) sum += acc0[k];
  for (; i < n; i += kLanes<T>) {
    int64_t m = n - i < kLanes<T> ? n - i : kLanes<T>;
    V v = f(load_partial(x + i, m));
    for (int64_t k = 0; k < m; ++k) sum += v[k];
  }
  return sum;
}

// map() that also returns the sum of what it stored (in map_sum's order): one pass where softmax would take two.
template <typename T, typename F>
inline T map_store_sum(const T* x, T* y, int64_t n, F f) {
  using V = Vec<T>;
  V acc0{}, acc1{};
  int64_t i = 0;
  for (; i + 2 * kLanes<T> <= n; i += 2 * kLanes<T>) {
    V v0, v1;
    std::memcpy(&v0, x + i, sizeof(V));
    std::memcpy(&v1, x + i + kLanes<T>, sizeof(V));
    v0 = f(v0);
    v1 = f(v1);
    std::memcpy(y + i, &v0, sizeof(V));
    std::memcpy(y + i + kLanes<T>, &v1, sizeof(V));
    acc0 += v0;
    acc1 += v1;
  }
  acc0 += acc1;
  T sum = 0;
  for (int64_t k = 0; k < kLanes<T>; ++k) sum += acc0[k];
  for (; i < n; i += kLanes<T>) {
    int64_t m = n - i < kLanes<T> ? n - i : kLanes<T>;
    V v = f(load_partial(x + i, m));
    std::memcpy(y + i, &v, static_cast<size_t>(m) * sizeof(T));
    for (int64_t k = 0; k < m; ++k) sum += v[k];
  }
  return sum;
}

// x = exp(x - shift) in place for shift >= max(x) (exp_nonpositive); returns the sum of the new values (one
// accumulator, then the tail in order).
// The attention kernels' softmax step: the tail goes through the vector exp too (via load_partial), so a
// value's result does not depend on where the row ends.
template <typename T>
inline T exp_shift_sum(T* x, int64_t n, T shift) {
  using V = Vec<T>;
  V acc{};
  int64_t i = 0;
  for (; i + kLanes<T> <= n; i += kLanes<T>) {
    V x_v;
    std::memcpy(&x_v, x + i, sizeof(V));
    x_v = exp_nonpositive(x_v - shift);
    std::memcpy(x + i, &x_v, sizeof(V));
    acc += x_v;
  }
  T sum = 0;
  for (int64_t j = 0; j < kLanes<T>; ++j) sum += acc[j];
  if (i < n) {
    V x_v = exp_nonpositive(load_partial(x + i, n - i) - shift);
    std::memcpy(x + i, &x_v, static_cast<size_t>(n - i) * sizeof(T));
    for (int64_t j = 0; j < n - i; ++j) sum += x_v[j];  // the padding lanes hold exp(-shift), not 0
  }
  return sum;
}

// Outputs at least this large are written with non-temporal (streaming) stores by the kernels that can: they do
// not fit in half the L3 cache, so they will have left it before anyone reads them, and a streaming store spares
// the read-for-ownership that an ordinary store pays per cache line (a third of a row kernel's memory traffic).
inline constexpr int64_t kStreamingStoreBytes = int64_t{16} << 20;

inline void stream_store(float* p, Vec<float> v) {
#if defined(__AVX512F__)
  _mm512_stream_ps(p, (__m512)v);
#elif defined(__AVX__)
  _mm256_stream_ps(p, (__m256)v);
#elif defined(__SSE2__)
  _mm_stream_ps(p, (__m128)v);
#else
  std::memcpy(p, &v, sizeof v);
#endif
}

inline void stream_store(double* p, Vec<double> v) {
#if defined(__AVX512F__)
  _mm512_stream_pd(p, (__m512d)v);
#elif defined(__AVX__)
  _mm256_stream_pd(p, (__m256d)v);
#elif defined(__SSE2__)
  _mm_stream_pd(p, (__m128d)v);
#else
  std::memcpy(p, &v, sizeof v);
#endif
}

// y[i] = f(x[i]) with streaming stores (f takes a vector or a scalar). Elements before y's first vector-aligned
// address and after its last whole vector are stored normally. The closing fence orders the streaming stores
// before anything this thread writes later, so a thread that joins it sees the values.
template <typename T, typename F>
inline void map_stream(const T* x, T* y, int64_t n, F f) {
  using V = Vec<T>;
  int64_t i = 0;
  for (; i < n && i < kLanes<T> && reinterpret_cast<uintptr_t>(y + i) % sizeof(V) != 0; ++i) y[i] = f(x[i]);
  if (reinterpret_cast<uintptr_t>(y + i) % sizeof(V) == 0) {
    for (; i + kLanes<T> <= n; i += kLanes<T>) {
      V v;
      std::memcpy(&v, x + i, sizeof(V));
      stream_store(y + i, f(v));
    }
  }
  for (; i < n; ++i) y[i] = f(x[i]);
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

}  // namespace loom::cpu::vec
