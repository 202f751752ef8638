// Reductions (sum, mean, prod, max, min, logsumexp, var, any, all), arg-reductions and scans on the CPU.
//
// Each kernel splits the input's dims into kept dims (those of the output) and reduced dims, dropping size-1
// dims and merging neighbours that are contiguous with each other, and then runs in one of two layouts:
//  * rows: the reduced elements of one output lie in runs (contiguous for "reduce the last dim"); each
//    output is one loop over those runs, with independent accumulators so that it vectorises;
//  * columns: the outputs are adjacent in memory and the reduced dims are outer (sum over dim 0 of [N, D]);
//    a row of accumulators takes one contiguous input row at a time, vectorised across outputs.
// Long reductions are cut into blocks whose boundaries depend only on the geometry, and block results are
// combined in block order, so a result never depends on the number of threads or on timing. float32
// accumulates in double (a 1e7-element sum keeps float32 precision); integer sums wrap in uint64 as
// PyTorch's int64 sums do.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "loom/core/parallel.h"
#include "loom/ops/cpu/cpu_backend.h"
#include "loom/ops/cpu/vec_math.h"

namespace loom {
namespace {

constexpr int64_t kGrain = 1 << 15;  // elements below which a parallel task is not worth a thread
constexpr int64_t kBlock = 1 << 14;  // reduced elements per block in the row layout
constexpr int64_t kMaxColumnBlocks = 64;
constexpr int64_t kChunk = 256;     // outputs per accumulator row in the column layout (fits in L1)
constexpr int64_t kMinColumns = 8;  // fewer adjacent outputs than this: the row layout is better
constexpr int kSets = 3;            // stride sets a walk tracks (input and up to two outputs)

// Dims of a walk after dropping size-1 dims and merging neighbours contiguous in every stride set.
struct Dims {
  Shape sizes;
  Shape strides[kSets];

  int rank() const { return static_cast<int>(sizes.size()); }
  void push(int64_t size, int64_t s0, int64_t s1 = 0, int64_t s2 = 0) {
    if (size == 1) return;
    const int64_t s[kSets] = {s0, s1, s2};
    bool merge = !sizes.empty();
    for (int k = 0; merge && k < kSets; ++k) merge = strides[k].back() == s[k] * size;
    if (merge) {
      sizes.back() *= size;
      for (int k = 0; k < kSets; ++k) strides[k].back() = s[k];
    } else {
      sizes.push_back(size);
      for (int k = 0; k < kSets; ++k) strides[k].push_back(s[k]);
    }
  }
};

// Row-major walk over the first `n` dims of `d`, keeping the element offset in each stride set.
struct Cursor {
  const Dims& d;
  int n;
  int64_t idx[kMaxDims] = {};
  int64_t off[kSets] = {};

  Cursor(const Dims& dims, int n_dims, int64_t linear) : d(dims), n(n_dims) {
    for (int k = n - 1; k >= 0; --k) {
      idx[k] = linear % d.sizes[k];
      linear /= d.sizes[k];
      for (int s = 0; s < kSets; ++s) off[s] += idx[k] * d.strides[s][k];
    }
  }
  void next() {
    for (int k = n - 1; k >= 0; --k) {
      for (int s = 0; s < kSets; ++s) off[s] += d.strides[s][k];
      if (++idx[k] < d.sizes[k]) return;
      for (int s = 0; s < kSets; ++s) off[s] -= d.strides[s][k] * d.sizes[k];
      idx[k] = 0;
    }
  }
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---- reduction policies -----------------------------------------------------------------------------------
// identity(), step(acc, x) folds one input, combine(a, b) merges two partials (a first), finish(acc, count)
// makes the output. kLanes > 1 lets unit-stride runs use that many independent accumulators (vectorised).
// Policies with kRunHook fold unit-stride runs themselves through run(), and those with kColumnHook fold
// blocks of the column layout through fold_columns() (var and logsumexp take two vectorised passes there);
// their step() still serves strided walks.

// Folds n elements x[0], x[stride], ...
template <typename P>
typename P::acc_t fold_run(const P& p, const typename P::in_t* x, int64_t n, int64_t stride) {
  using A = typename P::acc_t;
  constexpr int L = P::kLanes;
  if constexpr (P::kRunHook) {
    if (stride == 1) return p.run(x, n);
  }
  if (L > 1 && stride == 1 && n >= 2 * L) {
    A lane[L];
    for (int l = 0; l < L; ++l) lane[l] = p.identity();
    int64_t i = 0;
    for (; i + L <= n; i += L)
      for (int l = 0; l < L; ++l) p.step(lane[l], x[i + l]);
    A tail = p.identity();
    for (; i < n; ++i) p.step(tail, x[i]);
    for (int w = L / 2; w >= 1; w /= 2)
      for (int l = 0; l < w; ++l) lane[l] = p.combine(lane[l], lane[l + w]);
    return p.combine(lane[0], tail);
  }
  A a = p.identity();
  for (int64_t i = 0; i < n; ++i) p.step(a, x[i * stride]);
  return a;
}

// Accumulator of sums and products: double for floats, wrapping uint64 for integers and bool.
template <typename T>
using wide_t = std::conditional_t<std::is_floating_point_v<T>, double, uint64_t>;
template <typename T>
using wide_out_t = std::conditional_t<std::is_floating_point_v<T>, T, int64_t>;

template <typename T>
inline wide_t<T> widen(T x) {
  if constexpr (std::is_floating_point_v<T>) {
    return x;
  } else {
    return static_cast<uint64_t>(static_cast<int64_t>(x));  // sign-extends int32
  }
}

template <typename T>
struct SumOp {
  using in_t = T;
  using acc_t = wide_t<T>;
  using out_t = wide_out_t<T>;
  static constexpr int kLanes = 16;
  static constexpr bool kRunHook = false;
  static constexpr bool kColumnHook = false;
  acc_t identity() const { return 0; }
  void step(acc_t& a, T x) const { a += widen(x); }
  acc_t combine(acc_t a, acc_t b) const { return a + b; }
  out_t finish(acc_t a, int64_t) const { return static_cast<out_t>(a); }
};

template <typename T>
struct MeanOp : SumOp<T> {
  using out_t = T;
  out_t finish(double a, int64_t n) const { return static_cast<T>(a / static_cast<double>(n)); }
};

template <typename T>
struct ProdOp {
  using in_t = T;
  using acc_t = wide_t<T>;
  using out_t = wide_out_t<T>;
  static constexpr int kLanes = 16;
  static constexpr bool kRunHook = false;
  static constexpr bool kColumnHook = false;
  acc_t identity() const { return 1; }
  void step(acc_t& a, T x) const { a *= widen(x); }
  acc_t combine(acc_t a, acc_t b) const { return a * b; }
  out_t finish(acc_t a, int64_t) const { return static_cast<out_t>(a); }
};

// Max/min propagate NaN: once the accumulator is NaN it stays NaN. (Bitwise | keeps the step branch-free.)
// The vector ExtremumOp::run keeps its running extrema in: cpu::vec::Vec for float and double, 64 bytes for
// the integer types.
template <typename T>
struct ExtremumLanes {
  typedef T V __attribute__((vector_size(64)));
};
template <>
struct ExtremumLanes<float> {
  using V = cpu::vec::Vec<float>;
};
template <>
struct ExtremumLanes<double> {
  using V = cpu::vec::Vec<double>;
};

template <typename T, bool kMax>
struct ExtremumOp {
  using in_t = T;
  using acc_t = T;
  using out_t = T;
  static constexpr int kLanes = 16;
  static constexpr bool kRunHook = !std::is_same_v<T, bool>;
  static constexpr bool kColumnHook = false;
  T identity() const {
    if constexpr (std::is_same_v<T, bool>) {
      return !kMax;
    } else if constexpr (std::is_floating_point_v<T>) {
      return kMax ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
    } else {
      return kMax ? std::numeric_limits<T>::lowest() : std::numeric_limits<T>::max();
    }
  }
  void step(T& a, T x) const { a = ((kMax ? x > a : x < a) || x != x) ? x : a; }
  T combine(T a, T b) const {
    step(a, b);
    return a;
  }
  T finish(T a, int64_t) const { return a; }
  // GCC does not vectorise the NaN-aware select over an array of lanes, so the lanes are vector registers
  // (ExtremumLanes: the machine's width for float and double, where a wider GCC vector is split lane by lane
  // under AVX2, 4 ns an element), two of them so consecutive selects do not wait on each other.
  T run(const T* x, int64_t n) const {
    using V = typename ExtremumLanes<T>::V;
    constexpr int64_t W = sizeof(V) / sizeof(T);
    T a = identity();
    int64_t i = 0;
    if (n >= 2 * W) {
      // Written out rather than as a helper: a function returning a 64-byte vector changes the ABI without
      // AVX-512 (-Wpsabi).
      V acc0 = V{} + a, acc1 = acc0;
      for (; i + 2 * W <= n; i += 2 * W) {
        V v0, v1;
        std::memcpy(&v0, x + i, sizeof(V));
        std::memcpy(&v1, x + i + W, sizeof(V));
        acc0 = ((kMax ? v0 > acc0 : v0 < acc0) | (v0 != v0)) ? v0 : acc0;
        acc1 = ((kMax ? v1 > acc1 : v1 < acc1) | (v1 != v1)) ? v1 : acc1;
      }
      acc0 = ((kMax ? acc1 > acc0 : acc1 < acc0) | (acc1 != acc1)) ? acc1 : acc0;
      for (int64_t l = 0; l < W; ++l) step(a, acc0[l]);
    }
    for (; i < n; ++i) step(a, x[i]);
    return a;
  }
};

template <typename T, bool kAny>
struct AnyAllOp {
  using in_t = T;
  using acc_t = bool;
  using out_t = bool;
  static constexpr int kLanes = 16;
  static constexpr bool kRunHook = false;
  static constexpr bool kColumnHook = false;
  bool identity() const { return !kAny; }
  void step(bool& a, T x) const { a = kAny ? (a | (x != T(0))) : (a & (x != T(0))); }
  bool combine(bool a, bool b) const { return kAny ? (a | b) : (a & b); }
  bool finish(bool a, int64_t) const { return a; }
};

// Sum of squared deviations from a fixed mean: var's second pass.
template <typename T>
struct SquaredDeviationOp : SumOp<T> {
  double mean;
  void step(double& a, T x) const {
    double d = static_cast<double>(x) - mean;
    a += d * d;
  }
};
// logsumexp as (m, s): m the max, s the sum of exp(x - m). Infinite maxima are kept exactly (an x equal to m
// adds 1 instead of exp(inf - inf)), so all -inf gives -inf, any +inf gives +inf, and any NaN gives NaN.
struct LseAcc {
  double m;
  double s;
};
template <typename T>
struct LogSumExpOp {
  using in_t = T;
  using acc_t = LseAcc;
  using out_t = T;
  static constexpr int kLanes = 1;
  static constexpr bool kRunHook = true;
  static constexpr bool kColumnHook = true;
  static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  LseAcc identity() const { return {-std::numeric_limits<double>::infinity(), 0.0}; }
  void step(LseAcc& a, T xv) const {  // online form, for strided walks
    double x = xv;
    if (x > a.m) {
      a.s = a.s * std::exp(a.m - x) + 1.0;
      a.m = x;
    } else if (x == a.m) {
      a.s += 1.0;
    } else if (x < a.m) {
      a.s += std::exp(x - a.m);
    } else {
      a.m = kNaN;
    }
  }
  LseAcc combine(LseAcc a, LseAcc b) const {
    if (std::isnan(a.m) || std::isnan(b.m)) return {kNaN, 1.0};
    if (b.m > a.m) std::swap(a, b);
    if (a.m == b.m) return {a.m, a.s + b.s};
    return {a.m, a.s + b.s * std::exp(b.m - a.m)};
  }
  T finish(LseAcc a, int64_t) const { return static_cast<T>(a.m + std::log(a.s)); }

  // (m, s) of n elements whose max is m; a non-finite max needs no second pass.
  LseAcc from_max(T m, int64_t n, double s_if_finite) const {
    if (m != m) return {kNaN, 1.0};
    if (m == std::numeric_limits<T>::infinity()) return {static_cast<double>(m), 1.0};
    if (m == -std::numeric_limits<T>::infinity()) return {static_cast<double>(m), static_cast<double>(n)};
    return {static_cast<double>(m), s_if_finite};
  }
  LseAcc run(const T* x, int64_t n) const {
    T m = fold_run(ExtremumOp<T, true>{}, x, n, 1);
    if (!std::isfinite(m)) return from_max(m, n, 0.0);
    // exp into a small buffer (an elementwise loop GCC vectorises), then a lane-parallel sum in double.
    T buf[kChunk];
    double s = 0.0;
    for (int64_t i = 0; i < n; i += kChunk) {
      int64_t len = std::min(kChunk, n - i);
      for (int64_t j = 0; j < len; ++j) buf[j] = cpu::vec::exp<T>(x[i + j] - m);
      s += fold_run(SumOp<T>{}, buf, len, 1);
    }
    return from_max(m, n, s);
  }
  template <typename ForRows>
  void fold_columns(const ForRows& for_rows, int64_t rows, int64_t len, LseAcc* acc) const {
    T m[kChunk], shift[kChunk];
    double s[kChunk];
    ExtremumOp<T, true> mx;
    for (int64_t j = 0; j < len; ++j) m[j] = mx.identity(), s[j] = 0.0;
    for_rows([&](const T* row) {
      for (int64_t j = 0; j < len; ++j) mx.step(m[j], row[j]);
    });
    for (int64_t j = 0; j < len; ++j) shift[j] = std::isfinite(m[j]) ? m[j] : T(0);
    for_rows([&](const T* row) {
      for (int64_t j = 0; j < len; ++j) s[j] += static_cast<double>(cpu::vec::exp<T>(row[j] - shift[j]));
    });
    for (int64_t j = 0; j < len; ++j) acc[j] = from_max(m[j], rows, s[j]);
  }
};

// Variance from (count, mean, m2 = sum of squared deviations), merged with Chan's formula. Runs and column
// blocks take two passes (mean, then deviations), which keeps large common offsets from cancelling.
struct VarAcc {
  int64_t n;
  double mean;
  double m2;
};
template <typename T>
struct VarOp {
  using in_t = T;
  using acc_t = VarAcc;
  using out_t = T;
  static constexpr int kLanes = 1;
  static constexpr bool kRunHook = true;
  static constexpr bool kColumnHook = true;
  double correction = 1;
  VarAcc identity() const { return {0, 0.0, 0.0}; }
  void step(VarAcc& a, T xv) const {  // Welford's update, for strided walks
    double x = xv;
    ++a.n;
    double d = x - a.mean;
    a.mean += d / static_cast<double>(a.n);
    a.m2 += d * (x - a.mean);
  }
  VarAcc combine(VarAcc a, VarAcc b) const {
    if (a.n == 0) return b;
    if (b.n == 0) return a;
    int64_t n = a.n + b.n;
    double d = b.mean - a.mean;
    double fa = static_cast<double>(a.n), fb = static_cast<double>(b.n), fn = static_cast<double>(n);
    return {n, a.mean + d * fb / fn, a.m2 + b.m2 + d * d * fa * fb / fn};
  }
  T finish(VarAcc a, int64_t) const {
    double divisor = std::max(0.0, static_cast<double>(a.n) - correction);
    return static_cast<T>(a.m2 / divisor);
  }

  VarAcc run(const T* x, int64_t n) const {
    if (n == 0) return identity();
    SquaredDeviationOp<T> dev;
    dev.mean = fold_run(SumOp<T>{}, x, n, 1) / static_cast<double>(n);
    return {n, dev.mean, fold_run(dev, x, n, 1)};
  }
  template <typename ForRows>
  void fold_columns(const ForRows& for_rows, int64_t rows, int64_t len, VarAcc* acc) const {
    double mean[kChunk], m2[kChunk];
    for (int64_t j = 0; j < len; ++j) mean[j] = 0.0, m2[j] = 0.0;
    for_rows([&](const T* row) {
      for (int64_t j = 0; j < len; ++j) mean[j] += static_cast<double>(row[j]);
    });
    for (int64_t j = 0; j < len; ++j) mean[j] /= static_cast<double>(rows);
    for_rows([&](const T* row) {
      for (int64_t j = 0; j < len; ++j) {
        double d = static_cast<double>(row[j]) - mean[j];
        m2[j] += d * d;
      }
    });
    for (int64_t j = 0; j < len; ++j) acc[j] = {rows, mean[j], m2[j]};
  }
};

// ---- the two layouts --------------------------------------------------------------------------------------

// Folds reduced positions [lo, hi) (row-major over red's dims) of the reduction starting at x.
template <typename P>
typename P::acc_t fold_range(const P& p, const typename P::in_t* x, const Dims& red, int64_t lo, int64_t hi) {
  int nr = red.rank();
  int64_t inner = red.sizes[nr - 1], stride = red.strides[0][nr - 1];
  if (nr == 1) return fold_run(p, x + lo * stride, hi - lo, stride);
  Cursor c(red, nr - 1, lo / inner);
  int64_t j = lo % inner;
  typename P::acc_t acc = p.identity();
  while (lo < hi) {
    int64_t n = std::min(inner - j, hi - lo);
    acc = p.combine(acc, fold_run(p, x + c.off[0] + j * stride, n, stride));
    lo += n;
    j = 0;
    c.next();
  }
  return acc;
}

template <typename P>
void reduce_rows(const P& p, const typename P::in_t* x, typename P::out_t* y, const Dims& kept,
                 const Dims& red, int64_t n_out, int64_t n_red) {
  using A = typename P::acc_t;
  int64_t n_blocks = ceil_div(n_red, kBlock);
  auto block = [&](int64_t in_off, int64_t b) {
    return fold_range(p, x + in_off, red, b * kBlock, std::min(n_red, (b + 1) * kBlock));
  };
  int nk = kept.rank();
  if (n_blocks == 1 || n_out >= get_num_threads()) {
    parallel_for(0, n_out, std::max<int64_t>(1, kGrain / n_red), [&](int64_t lo, int64_t hi) {
      Cursor c(kept, nk, lo);
      for (int64_t o = lo; o < hi; ++o, c.next()) {
        A acc = p.identity();
        for (int64_t b = 0; b < n_blocks; ++b) acc = p.combine(acc, block(c.off[0], b));
        y[c.off[1]] = p.finish(acc, n_red);
      }
    });
    return;
  }
  // Few long reductions: the blocks of every output run in parallel, then combine in block order (the same
  // order as above, so both paths give identical results).
  std::unique_ptr<A[]> partial(new A[n_out * n_blocks]);
  parallel_for(0, n_out * n_blocks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) partial[t] = block(Cursor(kept, nk, t / n_blocks).off[0], t % n_blocks);
  });
  Cursor c(kept, nk, 0);
  for (int64_t o = 0; o < n_out; ++o, c.next()) {
    A acc = p.identity();
    for (int64_t b = 0; b < n_blocks; ++b) acc = p.combine(acc, partial[o * n_blocks + b]);
    y[c.off[1]] = p.finish(acc, n_red);
  }
}

template <typename P>
void reduce_columns(const P& p, const typename P::in_t* x, typename P::out_t* y, const Dims& kept,
                    const Dims& red, int64_t n_out, int64_t n_red) {
  using A = typename P::acc_t;
  int nk = kept.rank();
  int64_t cols = kept.sizes[nk - 1], out_stride = kept.strides[1][nk - 1];
  int64_t chunks_per_row = ceil_div(cols, kChunk);
  int64_t n_tasks = n_out / cols * chunks_per_row;
  int64_t rows_per_block =
      std::max(ceil_div(kBlock, std::min(cols, kChunk)), ceil_div(n_red, kMaxColumnBlocks));
  int64_t n_blocks = ceil_div(n_red, rows_per_block);
  struct Task {
    int64_t in_off, out_off, len;
  };
  auto task = [&](int64_t t) {
    Cursor c(kept, nk - 1, t / chunks_per_row);
    int64_t col = t % chunks_per_row * kChunk;
    return Task{c.off[0] + col, c.off[1] + col * out_stride, std::min(kChunk, cols - col)};
  };
  auto fold_block = [&](const Task& tk, int64_t b, A* acc) {
    int64_t lo = b * rows_per_block, hi = std::min(n_red, lo + rows_per_block);
    auto for_rows = [&](auto&& fn) {
      Cursor c(red, red.rank(), lo);
      for (int64_t i = lo; i < hi; ++i, c.next()) fn(x + tk.in_off + c.off[0]);
    };
    if constexpr (P::kColumnHook) {
      p.fold_columns(for_rows, hi - lo, tk.len, acc);
    } else {
      for (int64_t j = 0; j < tk.len; ++j) acc[j] = p.identity();
      for_rows([&](const typename P::in_t* row) {
        for (int64_t j = 0; j < tk.len; ++j) p.step(acc[j], row[j]);
      });
    }
  };
  auto merge = [&](A* acc, const A* part, int64_t len) {
    for (int64_t j = 0; j < len; ++j) acc[j] = p.combine(acc[j], part[j]);
  };
  auto finish = [&](const Task& tk, const A* acc) {
    for (int64_t j = 0; j < tk.len; ++j) y[tk.out_off + j * out_stride] = p.finish(acc[j], n_red);
  };
  if (n_blocks == 1 || n_tasks >= get_num_threads()) {
    parallel_for(0, n_tasks, std::max<int64_t>(1, kGrain / (n_red * std::min(cols, kChunk))),
                 [&](int64_t lo, int64_t hi) {
                   A acc[kChunk], part[kChunk];
                   for (int64_t t = lo; t < hi; ++t) {
                     Task tk = task(t);
                     for (int64_t j = 0; j < tk.len; ++j) acc[j] = p.identity();
                     for (int64_t b = 0; b < n_blocks; ++b) {
                       fold_block(tk, b, part);
                       merge(acc, part, tk.len);
                     }
                     finish(tk, acc);
                   }
                 });
    return;
  }
  std::unique_ptr<A[]> partial(new A[n_tasks * n_blocks * kChunk]);  // not std::vector: A may be bool
  parallel_for(0, n_tasks * n_blocks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) fold_block(task(t / n_blocks), t % n_blocks, &partial[t * kChunk]);
  });
  A acc[kChunk];
  for (int64_t t = 0; t < n_tasks; ++t) {
    Task tk = task(t);
    for (int64_t j = 0; j < tk.len; ++j) acc[j] = p.identity();
    for (int64_t b = 0; b < n_blocks; ++b) merge(acc, &partial[(t * n_blocks + b) * kChunk], tk.len);
    finish(tk, acc);
  }
}

template <typename P>
void reduce_with(const P& p, const Tensor& in, const Shape& dims, const Tensor& out) {
  using O = typename P::out_t;
  LOOM_CHECK(out.dtype() == dtype_of_v<O>, "reduce: internal error: output dtype ", dtype_name(out.dtype()),
             " where ", dtype_name(dtype_of_v<O>), " was expected");
  const typename P::in_t* x = in.data<typename P::in_t>();
  O* y = out.data<O>();
  std::vector<bool> reduced(static_cast<size_t>(in.dim()), false);
  for (int64_t d : dims) reduced[d] = true;
  Dims kept, red;
  int64_t n_red = 1;
  for (int64_t d = 0; d < in.dim(); ++d) {
    if (reduced[d]) {
      red.push(in.size(d), in.stride(d));
      n_red *= in.size(d);
    } else {
      kept.push(in.size(d), in.stride(d), out.stride(d));
    }
  }
  int64_t n_out = out.numel();
  if (n_out == 0) return;
  if (n_red == 0) {
    Cursor c(kept, kept.rank(), 0);
    for (int64_t o = 0; o < n_out; ++o, c.next()) y[c.off[1]] = p.finish(p.identity(), 0);
    return;
  }
  if (red.rank() == 0) {  // every reduced dim has size 1: one element per output
    red.sizes.push_back(1);
    for (Shape& s : red.strides) s.push_back(0);
  }
  bool columns = kept.rank() > 0 && kept.strides[0].back() == 1 && kept.sizes.back() >= kMinColumns &&
                 red.strides[0].back() != 1;
  if (columns) {
    reduce_columns(p, x, y, kept, red, n_out, n_red);
  } else {
    reduce_rows(p, x, y, kept, red, n_out, n_red);
  }
}

// ---- arg-reductions and scans -----------------------------------------------------------------------------

// True when v should replace the current extremum: strictly better, or the first NaN.
template <typename T, bool kMax>
inline bool better(T v, T best) {
  return (kMax ? v > best : v < best) || (v != v && best == best);
}

template <typename T, bool kMax>
void arg_reduce_impl(const Tensor& in, int64_t dim, const Tensor& values, const Tensor& indices) {
  const T* x = in.data<T>();
  T* vals = values.data<T>();
  int64_t* idx = indices.data<int64_t>();
  Dims kept;
  for (int64_t d = 0; d < in.dim(); ++d)
    if (d != dim) kept.push(in.size(d), in.stride(d), values.stride(d), indices.stride(d));
  int64_t n = in.size(dim), st = in.stride(dim), n_out = values.numel();
  if (n_out == 0) return;
  int nk = kept.rank();
  if (nk > 0 && kept.strides[0].back() == 1 && kept.sizes.back() >= kMinColumns && st != 1) {
    // Columns: one pass over the input rows updates a row of running extrema.
    int64_t cols = kept.sizes[nk - 1], chunks_per_row = ceil_div(cols, kChunk);
    int64_t n_tasks = n_out / cols * chunks_per_row;
    parallel_for(0, n_tasks, std::max<int64_t>(1, kGrain / (n * std::min(cols, kChunk))),
                 [&](int64_t lo, int64_t hi) {
                   T best[kChunk];
                   int64_t at[kChunk];
                   for (int64_t t = lo; t < hi; ++t) {
                     Cursor c(kept, nk - 1, t / chunks_per_row);
                     int64_t col = t % chunks_per_row * kChunk, len = std::min(kChunk, cols - col);
                     const T* base = x + c.off[0] + col;
                     for (int64_t j = 0; j < len; ++j) best[j] = base[j], at[j] = 0;
                     for (int64_t i = 1; i < n; ++i) {
                       const T* row = base + i * st;
                       for (int64_t j = 0; j < len; ++j) {
                         bool take = better<T, kMax>(row[j], best[j]);
                         best[j] = take ? row[j] : best[j];
                         at[j] = take ? i : at[j];
                       }
                     }
                     for (int64_t j = 0; j < len; ++j) {
                       vals[c.off[1] + (col + j) * kept.strides[1][nk - 1]] = best[j];
                       idx[c.off[2] + (col + j) * kept.strides[2][nk - 1]] = at[j];
                     }
                   }
                 });
    return;
  }
  parallel_for(0, n_out, std::max<int64_t>(1, kGrain / n), [&](int64_t lo, int64_t hi) {
    Cursor c(kept, nk, lo);
    for (int64_t o = lo; o < hi; ++o, c.next()) {
      const T* p = x + c.off[0];
      T best = p[0];
      int64_t at = 0;
      if (st == 1) {
        // Two passes: the extremum (vectorised), then the first position holding it (or the first NaN).
        best = fold_run(ExtremumOp<T, kMax>{}, p, n, 1);
        if (best == best) {
          while (p[at] != best) ++at;
        } else {
          while (p[at] == p[at]) ++at;
        }
      } else {
        for (int64_t i = 1; i < n && best == best; ++i) {
          if (better<T, kMax>(p[i * st], best)) best = p[i * st], at = i;
        }
      }
      vals[c.off[1]] = best;
      idx[c.off[2]] = at;
    }
  });
}

template <typename T, bool kProd>
void scan_impl(const Tensor& in, int64_t dim, const Tensor& out) {
  using A = wide_t<T>;
  using O = wide_out_t<T>;
  LOOM_CHECK(out.dtype() == dtype_of_v<O>, "scan: internal error: output dtype ", dtype_name(out.dtype()),
             " where ", dtype_name(dtype_of_v<O>), " was expected");
  const T* x = in.data<T>();
  O* y = out.data<O>();
  Dims kept;
  for (int64_t d = 0; d < in.dim(); ++d)
    if (d != dim) kept.push(in.size(d), in.stride(d), out.stride(d));
  int64_t n = in.size(dim), si = in.stride(dim), so = out.stride(dim);
  int64_t n_lines = in.numel() / std::max<int64_t>(n, 1);
  if (in.numel() == 0) return;
  auto fold = [](A& a, T v) {
    if constexpr (kProd) {
      a *= widen(v);
    } else {
      a += widen(v);
    }
  };
  int nk = kept.rank();
  if (nk > 0 && kept.strides[0].back() == 1 && kept.strides[1].back() == 1 &&
      kept.sizes.back() >= kMinColumns && si != 1) {
    int64_t cols = kept.sizes[nk - 1], chunks_per_row = ceil_div(cols, kChunk);
    int64_t n_tasks = n_lines / cols * chunks_per_row;
    parallel_for(0, n_tasks, std::max<int64_t>(1, kGrain / (n * std::min(cols, kChunk))),
                 [&](int64_t lo, int64_t hi) {
                   A acc[kChunk];
                   for (int64_t t = lo; t < hi; ++t) {
                     Cursor c(kept, nk - 1, t / chunks_per_row);
                     int64_t col = t % chunks_per_row * kChunk, len = std::min(kChunk, cols - col);
                     for (int64_t j = 0; j < len; ++j) acc[j] = kProd ? 1 : 0;
                     for (int64_t i = 0; i < n; ++i) {
                       const T* row = x + c.off[0] + col + i * si;
                       O* dst = y + c.off[1] + col + i * so;
                       for (int64_t j = 0; j < len; ++j) {
                         fold(acc[j], row[j]);
                         dst[j] = static_cast<O>(acc[j]);
                       }
                     }
                   }
                 });
    return;
  }
  parallel_for(0, n_lines, std::max<int64_t>(1, kGrain / n), [&](int64_t lo, int64_t hi) {
    Cursor c(kept, nk, lo);
    for (int64_t line = lo; line < hi; ++line, c.next()) {
      A acc = kProd ? 1 : 0;
      for (int64_t i = 0; i < n; ++i) {
        fold(acc, x[c.off[0] + i * si]);
        y[c.off[1] + i * so] = static_cast<O>(acc);
      }
    }
  });
}

}  // namespace

void CpuBackend::reduce(ReduceOp op, const Tensor& in, const Shape& dims, const Tensor& out, double param) {
  LOOM_DISPATCH_ALL(in.dtype(), reduce_op_name(op), [&] {
    using T = scalar_t;
    switch (op) {
      case ReduceOp::Sum:
        return reduce_with(SumOp<T>{}, in, dims, out);
      case ReduceOp::Prod:
        return reduce_with(ProdOp<T>{}, in, dims, out);
      case ReduceOp::Max:
        return reduce_with(ExtremumOp<T, true>{}, in, dims, out);
      case ReduceOp::Min:
        return reduce_with(ExtremumOp<T, false>{}, in, dims, out);
      case ReduceOp::Any:
        return reduce_with(AnyAllOp<T, true>{}, in, dims, out);
      case ReduceOp::All:
        return reduce_with(AnyAllOp<T, false>{}, in, dims, out);
      case ReduceOp::Mean:
      case ReduceOp::LogSumExp:
      case ReduceOp::Var:
        if constexpr (std::is_floating_point_v<T>) {
          if (op == ReduceOp::Mean) return reduce_with(MeanOp<T>{}, in, dims, out);
          if (op == ReduceOp::LogSumExp) return reduce_with(LogSumExpOp<T>{}, in, dims, out);
          VarOp<T> var;
          var.correction = param;
          return reduce_with(var, in, dims, out);
        }
        LOOM_FAIL(reduce_op_name(op), ": expected a floating dtype, got ", dtype_name(in.dtype()));
    }
  });
}

void CpuBackend::arg_reduce(ArgReduceOp op, const Tensor& in, int64_t dim, const Tensor& values,
                            const Tensor& indices) {
  LOOM_DISPATCH_ALL(in.dtype(), op == ArgReduceOp::Max ? "max" : "min", [&] {
    if (op == ArgReduceOp::Max) {
      arg_reduce_impl<scalar_t, true>(in, dim, values, indices);
    } else {
      arg_reduce_impl<scalar_t, false>(in, dim, values, indices);
    }
  });
}

void CpuBackend::scan(ScanOp op, const Tensor& in, int64_t dim, const Tensor& out) {
  LOOM_DISPATCH_ALL(in.dtype(), op == ScanOp::Cumsum ? "cumsum" : "cumprod", [&] {
    if (op == ScanOp::Cumsum) {
      scan_impl<scalar_t, false>(in, dim, out);
    } else {
      scan_impl<scalar_t, true>(in, dim, out);
    }
  });
}

}  // namespace loom
