// Reductions, arg-reductions and scans against naive double-precision references, on contiguous and strided
// inputs, in both kernel layouts (reduced elements adjacent, or outputs adjacent) and across block
// boundaries.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>

#include "loom/loom.h"
#include "support/expect.h"

using namespace loom;
using test::expect_error;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::vector<double> random_values(int64_t n, uint64_t seed, double lo = -2, double hi = 2) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = dist(rng);
  return v;
}

Tensor make(const std::vector<double>& v, const Shape& shape, DType dtype = kFloat32) {
  return tensor(v, shape).to(dtype);
}

// The same values with permuted strides: a non-contiguous input for every kernel.
Tensor strided_copy(const Tensor& x) {
  if (x.dim() < 2) return x;
  return x.transpose(0, x.dim() - 1).contiguous().transpose(0, x.dim() - 1);
}

using Fold = std::function<double(const std::vector<double>&)>;

// Reference reduction of row-major `v` with `shape` over `dims`, in keepdim order.
std::vector<double> reference(const std::vector<double>& v, const Shape& shape,
                              const std::vector<int64_t>& dims, const Fold& fold) {
  Shape out_shape = shape;
  for (int64_t d : dims) out_shape[d] = 1;
  Shape out_strides = contiguous_strides(out_shape);
  std::vector<std::vector<double>> groups(static_cast<size_t>(shape_numel(out_shape)));
  for (int64_t i = 0; i < shape_numel(shape); ++i) {
    int64_t rem = i, o = 0;
    for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
      int64_t idx = rem % shape[d];
      rem /= shape[d];
      if (out_shape[d] != 1) o += idx * out_strides[d];
    }
    groups[o].push_back(v[i]);
  }
  std::vector<double> result;
  for (const auto& g : groups) result.push_back(fold(g));
  return result;
}

double ref_sum(const std::vector<double>& g) {
  double s = 0;
  for (double x : g) s += x;
  return s;
}
double ref_mean(const std::vector<double>& g) { return ref_sum(g) / static_cast<double>(g.size()); }
double ref_prod(const std::vector<double>& g) {
  double p = 1;
  for (double x : g) p *= x;
  return p;
}
double ref_max(const std::vector<double>& g) { return *std::max_element(g.begin(), g.end()); }
double ref_min(const std::vector<double>& g) { return *std::min_element(g.begin(), g.end()); }
double ref_var(const std::vector<double>& g) {
  double m = ref_mean(g), s = 0;
  for (double x : g) s += (x - m) * (x - m);
  return s / static_cast<double>(g.size() - 1);
}
double ref_lse(const std::vector<double>& g) {
  double m = ref_max(g), s = 0;
  for (double x : g) s += std::exp(x - m);
  return m + std::log(s);
}

// Against a host-side reference vector (not a Tensor, so not test::expect_close).
void expect_close(const Tensor& got, const std::vector<double>& want, double rtol, double atol,
                  const std::string& what) {
  std::vector<double> g = got.to_vector<double>();
  ASSERT_EQ(g.size(), want.size()) << what;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(g[i])) << what << " at " << i << ": got " << g[i];
    } else if (std::isinf(want[i])) {
      EXPECT_EQ(g[i], want[i]) << what << " at " << i;
    } else {
      EXPECT_NEAR(g[i], want[i], atol + rtol * std::abs(want[i])) << what << " at " << i;
    }
  }
}

Shape without(const Shape& shape, const std::vector<int64_t>& dims, bool keepdim) {
  Shape out;
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    bool r = std::find(dims.begin(), dims.end(), d) != dims.end();
    if (!r)
      out.push_back(shape[d]);
    else if (keepdim)
      out.push_back(1);
  }
  return out;
}

}  // namespace

TEST(Reduce, EveryOpOverEveryDimSubset) {
  Shape shape{3, 4, 5};
  std::vector<double> v = random_values(60, 1);
  struct Case {
    const char* name;
    std::function<Tensor(const Tensor&, const std::vector<int64_t>&, bool)> op;
    Fold ref;
    double rtol;
  };
  std::vector<Case> cases = {
      {"sum", [](const Tensor& x, const std::vector<int64_t>& d, bool k) { return sum(x, d, k); }, ref_sum,
       1e-5},
      {"mean", [](const Tensor& x, const std::vector<int64_t>& d, bool k) { return mean(x, d, k); }, ref_mean,
       1e-5},
      {"prod", [](const Tensor& x, const std::vector<int64_t>& d, bool k) { return prod(x, d, k); }, ref_prod,
       1e-5},
      {"amax", [](const Tensor& x, const std::vector<int64_t>& d, bool k) { return amax(x, d, k); }, ref_max,
       0},
      {"amin", [](const Tensor& x, const std::vector<int64_t>& d, bool k) { return amin(x, d, k); }, ref_min,
       0},
      {"var", [](const Tensor& x, const std::vector<int64_t>& d, bool k) { return var(x, d, 1, k); }, ref_var,
       1e-5},
      {"logsumexp", [](const Tensor& x, const std::vector<int64_t>& d, bool k) { return logsumexp(x, d, k); },
       ref_lse, 1e-5},
  };
  for (DType dtype : {kFloat32, kFloat64}) {
    Tensor x = make(v, shape, dtype);
    std::vector<double> rounded = x.to_vector<double>();
    for (const Tensor& input : {x, strided_copy(x)}) {
      for (int mask = 1; mask < 8; ++mask) {
        std::vector<int64_t> dims;
        for (int d = 0; d < 3; ++d)
          if (mask & (1 << d)) dims.push_back(d);
        for (const Case& c : cases) {
          for (bool keepdim : {false, true}) {
            std::string what = std::string(c.name) + " " + dtype_name(dtype) + " mask " +
                               std::to_string(mask) + (input.is_contiguous() ? "" : " strided") +
                               (keepdim ? " keepdim" : "");
            Tensor got = c.op(input, dims, keepdim);
            EXPECT_EQ(got.shape(), without(shape, dims, keepdim)) << what;
            EXPECT_EQ(got.dtype(), dtype) << what;
            expect_close(got, reference(rounded, shape, dims, c.ref), c.rtol, 1e-6, what);
          }
        }
      }
    }
  }
}

TEST(Reduce, NegativeDimsAndEmptyListMeanAllDims) {
  Tensor x = arange(24, kFloat32).view({2, 3, 4});
  EXPECT_EQ(sum(x, {-1}).to_vector<float>(), sum(x, {2}).to_vector<float>());
  EXPECT_EQ(sum(x, {-3, -1}).shape(), (Shape{3}));
  Tensor all_dims = sum(x);
  EXPECT_EQ(all_dims.dim(), 0);
  EXPECT_EQ(all_dims.item<float>(), 276.0f);
  EXPECT_EQ(sum(x, {}, true).shape(), (Shape{1, 1, 1}));
  EXPECT_FLOAT_EQ(mean(x).item<float>(), 11.5f);
}

TEST(Reduce, ScalarInputs) {
  Tensor s = scalar_tensor(3.0);
  EXPECT_EQ(sum(s).dim(), 0);
  EXPECT_EQ(sum(s, {0}).item<float>(), 3.0f);
  EXPECT_EQ(sum(s, {-1}, true).dim(), 0);
  ValuesIndices m = max(s, 0);
  EXPECT_EQ(m.values.item<float>(), 3.0f);
  EXPECT_EQ(m.indices.item<int64_t>(), 0);
  EXPECT_EQ(cumsum(s, 0).dim(), 0);
  expect_error([&] { sum(s, {1}); }, "sum: dim 1 out of range");
}

TEST(Reduce, ColumnLayoutAndBlocks) {
  // Outputs adjacent in memory (reducing outer dims), with enough rows to be cut into several blocks, and the
  // row layout with several blocks per output; every path must match the reference.
  struct Case {
    Shape shape;
    std::vector<int64_t> dims;
  };
  for (const Case& c : std::vector<Case>{{{20000, 16}, {0}},
                                         {{300, 600}, {0}},
                                         {{3, 2000, 40}, {0, 1}},
                                         {{40, 50, 30}, {1}},
                                         {{70000, 3}, {0}},
                                         {{3, 70000}, {1}},
                                         {{200000}, {0}}}) {
    std::vector<double> v = random_values(shape_numel(c.shape), 7);
    Tensor x = make(v, c.shape);
    std::vector<double> rounded = x.to_vector<double>();
    std::string what = "shape " + shape_str(c.shape);
    expect_close(sum(x, c.dims), reference(rounded, c.shape, c.dims, ref_sum), 1e-5, 1e-4, "sum " + what);
    expect_close(amax(x, c.dims), reference(rounded, c.shape, c.dims, ref_max), 0, 0, "amax " + what);
    expect_close(var(x, c.dims), reference(rounded, c.shape, c.dims, ref_var), 1e-5, 1e-6, "var " + what);
    expect_close(logsumexp(x, c.dims), reference(rounded, c.shape, c.dims, ref_lse), 1e-5, 1e-6,
                 "lse " + what);
  }
}

TEST(Reduce, LargeFloatSumIsAccurateAndDeterministic) {
  const int64_t n = 10'000'000;
  Tensor x = full({n}, 0.1, kFloat32);
  double want = static_cast<double>(0.1f) * static_cast<double>(n);
  float got = sum(x).item<float>();
  EXPECT_NEAR(got, want, want * 1e-6);
  EXPECT_NEAR(mean(x).item<float>(), 0.1f, 1e-7);

  std::vector<double> v = random_values(1 << 20, 3);
  Tensor y = make(v, {1 << 20});
  Tensor cols = make(v, {1 << 14, 64});
  int threads = get_num_threads();
  set_num_threads(1);
  float one = sum(y).item<float>();
  std::vector<float> one_cols = sum(cols, {0}).to_vector<float>();
  set_num_threads(std::max(threads, 2));
  float many = sum(y).item<float>();
  std::vector<float> many_cols = sum(cols, {0}).to_vector<float>();
  set_num_threads(threads);
  EXPECT_EQ(one, many);
  EXPECT_EQ(one_cols, many_cols);
}

TEST(Reduce, IntegerAndBoolDtypes) {
  Tensor i32 = tensor<int32_t>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor s = sum(i32, {1});
  EXPECT_EQ(s.dtype(), kInt64);
  EXPECT_EQ(s.to_vector<int64_t>(), (std::vector<int64_t>{6, 15}));
  EXPECT_EQ(prod(i32).dtype(), kInt64);
  EXPECT_EQ(prod(i32).item<int64_t>(), 720);
  EXPECT_EQ(amax(i32, {0}).dtype(), kInt32);
  EXPECT_EQ(amax(i32, {0}).to_vector<int32_t>(), (std::vector<int32_t>{4, 5, 6}));
  EXPECT_EQ(amin(i32).item<int32_t>(), 1);

  Tensor big = tensor<int64_t>({int64_t{1} << 40, int64_t{1} << 40, -3}, {3});
  EXPECT_EQ(sum(big).item<int64_t>(), (int64_t{1} << 41) - 3);

  Tensor b = tensor<bool>({true, false, true, true, false, false}, {2, 3});
  EXPECT_EQ(sum(b).dtype(), kInt64);
  EXPECT_EQ(sum(b, {1}).to_vector<int64_t>(), (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(any(b, {1}).to_vector<bool>(), (std::vector<bool>{true, true}));
  EXPECT_EQ(all(b, {0}).to_vector<bool>(), (std::vector<bool>{true, false, false}));
  EXPECT_EQ(any(b, {0}).dtype(), kBool);
  EXPECT_TRUE(amax(b).item<bool>());
  EXPECT_FALSE(amin(b).item<bool>());

  Tensor f = tensor<float>({0.0f, static_cast<float>(kNaN), 2.0f}, {3});
  EXPECT_TRUE(any(f).item<bool>());
  EXPECT_FALSE(all(f).item<bool>());
  EXPECT_TRUE(all(tensor<int64_t>({1, 2})).item<bool>());

  // Wide bool/int inputs take the column layout too.
  std::vector<int32_t> wide(64 * 40);
  for (size_t i = 0; i < wide.size(); ++i) wide[i] = static_cast<int32_t>(i % 7) - 3;
  Tensor w = tensor(wide, {64, 40});
  std::vector<int64_t> col_sums = sum(w, {0}).to_vector<int64_t>();
  for (int64_t j = 0; j < 40; ++j) {
    int64_t want = 0;
    for (int64_t i = 0; i < 64; ++i) want += wide[i * 40 + j];
    EXPECT_EQ(col_sums[j], want);
  }
}

TEST(Reduce, EmptyReductionsGiveIdentities) {
  Tensor e = empty({0});
  EXPECT_EQ(sum(e).item<float>(), 0.0f);
  EXPECT_EQ(prod(e).item<float>(), 1.0f);
  EXPECT_TRUE(std::isnan(mean(e).item<float>()));
  EXPECT_EQ(logsumexp(e, {0}).item<float>(), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(var(e).item<float>()));
  EXPECT_FALSE(any(e).item<bool>());
  EXPECT_TRUE(all(e).item<bool>());

  Tensor z = empty({2, 0});
  EXPECT_EQ(sum(z, {1}).to_vector<float>(), (std::vector<float>{0, 0}));
  EXPECT_EQ(sum(z, {0}).shape(), (Shape{0}));
  EXPECT_EQ(amax(empty({0, 3}), {1}).shape(), (Shape{0}));
  expect_error([&] { amax(e); }, "amax: expected reduction dim 0 to have non-zero size");
  expect_error([&] { amin(z, {1}); }, "non-zero size");
  expect_error([&] { max(z, 1); }, "max: expected reduction dim 1 to have non-zero size");
}

TEST(Reduce, LogSumExpIsStable) {
  Tensor x = tensor<float>({1000.0f, 1000.0f, -1000.0f, -1000.0f}, {2, 2});
  expect_close(logsumexp(x, {1}), {1000.0 + std::log(2.0), -1000.0 + std::log(2.0)}, 1e-6, 0, "huge");
  expect_close(logsumexp(tensor<double>({-kInf, -kInf}), {0}), {-kInf}, 0, 0, "all -inf");
  expect_close(logsumexp(tensor<double>({kInf, 1.0, kInf}), {0}), {kInf}, 0, 0, "+inf");
  expect_close(logsumexp(tensor<double>({-kInf, 2.0}), {0}), {2.0}, 1e-12, 0, "-inf and finite");
  expect_close(logsumexp(tensor<double>({1.0, kNaN, kInf}), {0}), {kNaN}, 0, 0, "nan");
  // Integers are reduced as float32, as in PyTorch.
  Tensor li = logsumexp(tensor<int64_t>({1, 2}), {0});
  EXPECT_EQ(li.dtype(), kFloat32);
  EXPECT_NEAR(li.item<float>(), std::log(std::exp(1.0) + std::exp(2.0)), 1e-6);
  // Special columns in the column layout (dim 0 of [20, 16]) and, transposed, in the row layout.
  std::vector<double> cols = random_values(20 * 16, 12);
  for (int i = 0; i < 20; ++i) {
    cols[i * 16 + 0] = -kInf;
    if (i == 7) cols[i * 16 + 1] = kInf;
    if (i == 3) cols[i * 16 + 2] = kNaN;
    if (i == 5) cols[i * 16 + 3] = -kInf;
  }
  std::vector<double> want = reference(cols, {20, 16}, {0}, ref_lse);
  want[0] = -kInf;
  want[1] = kInf;
  want[2] = kNaN;
  for (DType dtype : {kFloat32, kFloat64}) {
    Tensor c = make(cols, {20, 16}, dtype);
    expect_close(logsumexp(c, {0}), want, 1e-6, 0, std::string("columns ") + dtype_name(dtype));
    Tensor rows = c.t().contiguous();
    expect_close(logsumexp(rows, {1}), want, 1e-6, 0, std::string("rows ") + dtype_name(dtype));
    expect_close(logsumexp(strided_copy(rows), {1}), want, 1e-6, 0,
                 std::string("strided ") + dtype_name(dtype));
  }
  // Long rows with the max far from the start (exercises the running rescale).
  std::vector<double> v = random_values(50000, 11, -50, 50);
  v[40000] = 300;
  expect_close(logsumexp(make(v, {50000}, kFloat64), {0}), {ref_lse(v)}, 1e-12, 0, "long");
}

TEST(Reduce, VarianceCorrectionAndPrecision) {
  Tensor x = tensor<double>({1, 2, 3, 4}, {4});
  EXPECT_DOUBLE_EQ(var(x).item<double>(), 5.0 / 3.0);
  EXPECT_DOUBLE_EQ(var(x, {}, 0).item<double>(), 1.25);
  EXPECT_TRUE(std::isnan(var(tensor<double>({7.0}), {0}).item<double>()));
  EXPECT_TRUE(std::isinf(var(tensor<double>({1.0, 2.0}), {0}, 2).item<double>()));
  // A large common offset must not cancel the small spread (a sum-of-squares formula loses every digit here).
  std::vector<double> v = random_values(100000, 5, -1, 1);
  for (double& e : v) e += 1e8;
  expect_close(var(make(v, {100000}, kFloat64)), {ref_var(v)}, 1e-7, 0, "offset");
}

TEST(Reduce, MaxMinWithIndicesTiesAndNaN) {
  Tensor x = tensor<float>({1, 5, 5, 2, 0, 0, 3, 3}, {2, 4});
  ValuesIndices m = max(x, 1);
  EXPECT_EQ(m.values.to_vector<float>(), (std::vector<float>{5, 3}));
  EXPECT_EQ(m.indices.to_vector<int64_t>(), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(m.indices.dtype(), kInt64);
  EXPECT_EQ(argmin(x, 1).to_vector<int64_t>(), (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(argmax(x, -1, true).shape(), (Shape{2, 1}));
  EXPECT_EQ(max(x, 0, true).values.shape(), (Shape{1, 4}));

  float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor n = tensor<float>({1, nan, 3, nan}, {4});
  ValuesIndices mn = max(n, 0);
  EXPECT_TRUE(std::isnan(mn.values.item<float>()));
  EXPECT_EQ(mn.indices.item<int64_t>(), 1);
  EXPECT_EQ(argmin(n, 0).item<int64_t>(), 1);
  EXPECT_TRUE(std::isnan(amax(n).item<float>()));
  EXPECT_TRUE(std::isnan(amin(n).item<float>()));

  // Column layout: reduce dim 0 of [5, 16] (outputs adjacent), with ties and a NaN in one column.
  std::vector<float> v(5 * 16);
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 16; ++j) v[i * 16 + j] = static_cast<float>((i * 7 + j) % 5);
  v[3 * 16 + 2] = nan;
  Tensor c = tensor(v, {5, 16});
  for (bool is_max : {true, false}) {
    ValuesIndices r = is_max ? max(c, 0) : min(c, 0);
    std::vector<float> vals = r.values.to_vector<float>();
    std::vector<int64_t> idx = r.indices.to_vector<int64_t>();
    for (int j = 0; j < 16; ++j) {
      int best = 0;
      for (int i = 1; i < 5; ++i) {
        float a = v[i * 16 + j], b = v[best * 16 + j];
        if (std::isnan(b)) break;
        if (std::isnan(a) || (is_max ? a > b : a < b)) best = i;
      }
      EXPECT_EQ(idx[j], best) << "column " << j;
      if (std::isnan(v[best * 16 + j])) {
        EXPECT_TRUE(std::isnan(vals[j]));
      } else {
        EXPECT_EQ(vals[j], v[best * 16 + j]);
      }
    }
    // The same on a strided copy (row layout with a strided walk).
    EXPECT_EQ(r.indices.to_vector<int64_t>(),
              (is_max ? argmax(strided_copy(c), 0) : argmin(strided_copy(c), 0)).to_vector<int64_t>());
  }

  Tensor b = tensor<bool>({false, true, true}, {3});
  EXPECT_EQ(max(b, 0).indices.item<int64_t>(), 1);
  EXPECT_TRUE(max(b, 0).values.item<bool>());
}

// Long contiguous rows go through the vector lanes of the extremum kernel (two registers at a time, a scalar
// tail): every row's extremum, its first index and NaN propagation must match a scalar scan, whichever lane
// or tail position holds them, in float32 and float64.
TEST(Reduce, ExtremumOfLongRowsMatchesScalarScan) {
  for (DType dt : {kFloat32, kFloat64})
    for (int64_t n : {16, 37, 64, 200}) {
      const int64_t rows = 12;
      std::vector<double> v(static_cast<size_t>(rows * n));
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < n; ++i)
          v[static_cast<size_t>(r * n + i)] = static_cast<double>((i * 37 + r * 11) % 23);
      // Row r holds a NaN at position (r * 5) % n for rows 8 and up; rows 0..7 have extra ties at the end.
      const double nan = std::numeric_limits<double>::quiet_NaN();
      for (int64_t r = 8; r < rows; ++r) v[static_cast<size_t>(r * n + (r * 5) % n)] = nan;
      for (int64_t r = 0; r < 8; ++r) v[static_cast<size_t>(r * n + n - 1 - r % 3)] = 22.0;
      Tensor x = tensor(v, {rows, n}).to(dt);
      for (bool is_max : {true, false}) {
        std::vector<int64_t> got = (is_max ? argmax(x, 1) : argmin(x, 1)).to_vector<int64_t>();
        std::vector<double> got_v = (is_max ? amax(x, {1}) : amin(x, {1})).to(kFloat64).to_vector<double>();
        for (int64_t r = 0; r < rows; ++r) {
          int64_t best = 0;
          for (int64_t i = 1; i < n; ++i) {
            double a = v[static_cast<size_t>(r * n + i)], b = v[static_cast<size_t>(r * n + best)];
            if (std::isnan(b)) break;
            if (std::isnan(a) || (is_max ? a > b : a < b)) best = i;
          }
          const double want = v[static_cast<size_t>(r * n + best)];
          EXPECT_EQ(got[static_cast<size_t>(r)], best) << dtype_name(dt) << " n " << n << " row " << r;
          if (std::isnan(want)) {
            EXPECT_TRUE(std::isnan(got_v[static_cast<size_t>(r)]))
                << dtype_name(dt) << " n " << n << " row " << r;
          } else {
            EXPECT_EQ(got_v[static_cast<size_t>(r)], want) << dtype_name(dt) << " n " << n << " row " << r;
          }
        }
      }
    }
}

TEST(Reduce, ArgumentErrors) {
  Tensor x = zeros({2, 3});
  expect_error([&] { sum(x, {2}); }, "sum: dim 2 out of range");
  expect_error([&] { sum(x, {1, 1}); }, "sum: dim 1 appears multiple times");
  expect_error([&] { sum(x, {1, -1}); }, "appears multiple times");
  expect_error([&] { mean(zeros({2}, kInt64)); }, "mean: expected a floating dtype");
  expect_error([&] { var(zeros({2}, kInt32)); }, "var: expected a floating dtype");
  expect_error([&] { argmax(x, -3); }, "argmax: dim -3 out of range");
  expect_error([&] { cumsum(x, 2); }, "cumsum: dim 2 out of range");
}

TEST(Scan, CumsumAndCumprod) {
  std::vector<double> v = random_values(3 * 20, 9, 0.5, 1.5);
  Tensor x = make(v, {3, 20}, kFloat64);
  for (const Tensor& input : {x, strided_copy(x)}) {
    for (int64_t dim : {0, 1, -1}) {
      int64_t d = dim < 0 ? dim + 2 : dim;
      std::vector<double> want_sum(v.size()), want_prod(v.size());
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 20; ++j) {
          int idx = i * 20 + j, prev = d == 0 ? idx - 20 : idx - 1;
          bool first = d == 0 ? i == 0 : j == 0;
          want_sum[idx] = v[idx] + (first ? 0 : want_sum[prev]);
          want_prod[idx] = v[idx] * (first ? 1 : want_prod[prev]);
        }
      expect_close(cumsum(input, dim), want_sum, 1e-12, 1e-12, "cumsum dim " + std::to_string(dim));
      expect_close(cumprod(input, dim), want_prod, 1e-12, 1e-12, "cumprod dim " + std::to_string(dim));
    }
  }
  Tensor i32 = tensor<int32_t>({1, 2, 3, 4}, {4});
  EXPECT_EQ(cumsum(i32, 0).dtype(), kInt64);
  EXPECT_EQ(cumsum(i32, 0).to_vector<int64_t>(), (std::vector<int64_t>{1, 3, 6, 10}));
  EXPECT_EQ(cumprod(i32, 0).to_vector<int64_t>(), (std::vector<int64_t>{1, 2, 6, 24}));
  Tensor b = tensor<bool>({true, false, true}, {3});
  EXPECT_EQ(cumsum(b, 0).to_vector<int64_t>(), (std::vector<int64_t>{1, 1, 2}));
  EXPECT_EQ(cumsum(tensor<float>({1, 2}), 0).dtype(), kFloat32);
  EXPECT_EQ(cumsum(empty({0, 3}), 1).shape(), (Shape{0, 3}));
  // float32 running sums accumulate in double.
  Tensor ones_f = full({(1 << 24) + 8}, 1.0, kFloat32);
  EXPECT_EQ(cumsum(ones_f, 0).select(0, -1).item<float>(), static_cast<float>((1 << 24) + 8));
}

TEST(Reduce, ExpandedInput) {
  Tensor row = tensor<float>({1, 2, 3}, {1, 3});
  Tensor x = row.expand({1000, 3});
  EXPECT_EQ(sum(x, {0}).to_vector<float>(), (std::vector<float>{1000, 2000, 3000}));
  EXPECT_EQ(sum(x, {1}).to_vector<float>(), std::vector<float>(1000, 6.0f));
  EXPECT_EQ(argmax(x, 1).to_vector<int64_t>(), std::vector<int64_t>(1000, 2));
}
