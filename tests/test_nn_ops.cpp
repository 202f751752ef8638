// nn ops and random kernels: softmax / log_softmax (masks, any dim, extreme logits), layer_norm, dropout,
// embedding, cross_entropy, and the Philox draws behind rand / randn / dropout.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "loom/loom.h"
#include "loom/ops/backend.h"
#include "support/expect.h"

using namespace loom;
using test::expect_error;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

template <typename T>
void expect_near_all(const std::vector<T>& got, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isinf(want[i])) {
      EXPECT_EQ(static_cast<double>(got[i]), want[i]) << "at " << i;
    } else {
      EXPECT_NEAR(static_cast<double>(got[i]), want[i], tol * std::max(1.0, std::fabs(want[i])))
          << "at " << i;
    }
  }
}

// Reference softmax over rows of length d (masked entries excluded); log gives log-probabilities.
std::vector<double> ref_softmax(const std::vector<double>& x, int64_t d, bool log,
                                const std::vector<bool>& mask = {}) {
  std::vector<double> out(x.size());
  for (size_t r = 0; r < x.size() / d; ++r) {
    double mx = -INFINITY;
    for (int64_t i = 0; i < d; ++i)
      if (mask.empty() || !mask[r * d + i]) mx = std::max(mx, x[r * d + i]);
    double sum = 0;
    for (int64_t i = 0; i < d; ++i)
      if (mask.empty() || !mask[r * d + i]) sum += std::exp(x[r * d + i] - mx);
    for (int64_t i = 0; i < d; ++i) {
      bool excluded = !mask.empty() && mask[r * d + i];
      if (mx == -INFINITY) {
        out[r * d + i] = log ? -INFINITY : 0.0;
      } else if (log) {
        out[r * d + i] = excluded ? -INFINITY : x[r * d + i] - mx - std::log(sum);
      } else {
        out[r * d + i] = excluded ? 0.0 : std::exp(x[r * d + i] - mx) / sum;
      }
    }
  }
  return out;
}

std::vector<double> as_double(const Tensor& t) { return t.to_vector<double>(); }

}  // namespace

TEST(Softmax, LastDimMatchesReference) {
  Tensor x = randn({7, 13}, PhiloxState{1, 0});
  std::vector<double> xs = as_double(x);
  expect_near_all(softmax(x, -1).to_vector<float>(), ref_softmax(xs, 13, false), 1e-6);
  expect_near_all(log_softmax(x, 1).to_vector<float>(), ref_softmax(xs, 13, true), 1e-6);
  Tensor x64 = x.to(kFloat64);
  expect_near_all(softmax(x64, -1).to_vector<double>(), ref_softmax(xs, 13, false), 1e-14);
  expect_near_all(log_softmax(x64, -1).to_vector<double>(), ref_softmax(xs, 13, true), 1e-14);
  // Long rows split over threads.
  Tensor big = randn({300, 1000}, PhiloxState{2, 0});
  expect_near_all(softmax(big, -1).to_vector<float>(), ref_softmax(as_double(big), 1000, false), 1e-6);
}

TEST(Softmax, OtherDimsAndStridedInputs) {
  Tensor x = randn({3, 4, 5}, PhiloxState{3, 0});
  for (int64_t dim : {0, 1}) {
    // Reference: move dim last on a contiguous copy, then move back.
    Tensor moved = x.transpose(dim, -1).contiguous();
    Tensor want = tensor(ref_softmax(as_double(moved), moved.size(-1), false), moved.shape())
                      .transpose(dim, -1)
                      .contiguous();
    Tensor got = softmax(x, dim);
    EXPECT_EQ(got.shape(), x.shape());
    EXPECT_TRUE(got.is_contiguous());
    expect_near_all(got.to_vector<float>(), as_double(want), 1e-6);
  }
  Tensor xt = x.transpose(0, 2);  // [5, 4, 3], non-contiguous
  expect_near_all(log_softmax(xt, -1).to_vector<float>(), as_double(log_softmax(xt.contiguous(), -1)), 1e-7);
}

TEST(Softmax, ExtremeLogitsStayFinite) {
  Tensor x = tensor<float>({1e4f, 0, -1e4f, 1e4f, 1e4f, -kInf}, {2, 3});
  std::vector<float> p = softmax(x, -1).to_vector<float>();
  EXPECT_EQ(p, (std::vector<float>{1, 0, 0, 0.5f, 0.5f, 0}));
  std::vector<float> lp = log_softmax(x, -1).to_vector<float>();
  EXPECT_EQ(lp[0], 0.0f);
  EXPECT_EQ(lp[1], -1e4f);
  EXPECT_EQ(lp[2], -2e4f);
  EXPECT_NEAR(lp[3], -std::log(2.0f), 1e-6);
  EXPECT_EQ(lp[5], -kInf);
  // A row of only -inf is all zeros (log: -inf), never NaN.
  Tensor dead = full({1, 4}, -INFINITY);
  EXPECT_EQ(softmax(dead, -1).to_vector<float>(), (std::vector<float>(4, 0.0f)));
  EXPECT_EQ(log_softmax(dead, -1).to_vector<float>(), (std::vector<float>(4, -kInf)));
  // NaN poisons its row only.
  std::vector<float> n = softmax(tensor<float>({NAN, 1, 1, 1}, {2, 2}), -1).to_vector<float>();
  EXPECT_TRUE(std::isnan(n[0]) && std::isnan(n[1]));
  EXPECT_EQ(n[2], 0.5f);
}

TEST(Softmax, MaskExcludesEntries) {
  Tensor x = randn({2, 3, 4}, PhiloxState{4, 0});
  // A causal [3, 4] mask broadcast over the batch (stride 0), plus one fully masked row.
  std::vector<bool> m2 = {false, true, true, true, false, false, true, true, true, true, true, true};
  Tensor mask = tensor(m2, {3, 4});
  std::vector<bool> full_mask;
  for (int b = 0; b < 2; ++b) full_mask.insert(full_mask.end(), m2.begin(), m2.end());
  std::vector<double> xs = as_double(x);
  expect_near_all(softmax(x, -1, mask).to_vector<float>(), ref_softmax(xs, 4, false, full_mask), 1e-6);
  expect_near_all(log_softmax(x, -1, mask).to_vector<float>(), ref_softmax(xs, 4, true, full_mask), 1e-6);
  // Same as masked_fill(-inf) + softmax where a row keeps something.
  std::vector<float> a = softmax(x, -1, mask).to_vector<float>();
  std::vector<float> b = softmax(masked_fill(x, mask, -INFINITY), -1).to_vector<float>();
  EXPECT_EQ(a, b);
  // Masking along another dim: the mask moves with the data.
  Tensor col_mask = tensor<bool>({true, false, false}, {3, 1});  // excludes row 0 of dim 1
  Tensor got = softmax(x, 1, col_mask);
  std::vector<float> g = got.to_vector<float>();
  for (int bb = 0; bb < 2; ++bb)
    for (int j = 0; j < 4; ++j) {
      EXPECT_EQ(g[bb * 12 + j], 0.0f);
      EXPECT_NEAR(g[bb * 12 + 4 + j] + g[bb * 12 + 8 + j], 1.0f, 1e-6);
    }
}

// Outputs of 16 MiB and more take the streaming-store path (a scratch row, then non-temporal stores); each row
// must equal the same row softmaxed alone, which takes the in-place path. Rows of 1023 floats put every other
// row off the vector alignment, so the scalar head and tail of the streamed row are exercised too.
TEST(Softmax, LargeOutputsStreamedEqualRowsComputedAlone) {
  for (int64_t d : {1024, 1023}) {
    const int64_t rows = (int64_t{17} << 20) / (d * 4) + 1;  // just over 16 MiB of float32
    Tensor x = randn({rows, d}, PhiloxState{9, static_cast<uint64_t>(d)});
    Tensor mask = gt(rand({rows, d}, PhiloxState{10, 0}), 0.9);  // ~10% excluded, row by row
    Tensor y = softmax(x, -1, mask), ly = log_softmax(x, -1, mask), plain = softmax(x, -1);
    for (int64_t r : {int64_t{0}, int64_t{1}, rows / 2 + 1, rows - 1}) {
      Tensor xr = x.narrow(0, r, 1), mr = mask.narrow(0, r, 1);
      EXPECT_EQ(y.narrow(0, r, 1).to_vector<float>(), softmax(xr, -1, mr).to_vector<float>()) << "row " << r;
      EXPECT_EQ(ly.narrow(0, r, 1).to_vector<float>(), log_softmax(xr, -1, mr).to_vector<float>()) << "row " << r;
      EXPECT_EQ(plain.narrow(0, r, 1).to_vector<float>(), softmax(xr, -1).to_vector<float>()) << "row " << r;
    }
    std::vector<double> last = as_double(plain.narrow(0, rows - 1, 1));
    EXPECT_NEAR(std::accumulate(last.begin(), last.end(), 0.0), 1.0, 1e-5);
  }
}

TEST(Softmax, ScalarEmptyAndErrors) {
  EXPECT_EQ(softmax(scalar_tensor(3.0), 0).item<float>(), 1.0f);
  EXPECT_EQ(log_softmax(scalar_tensor(3.0), -1).item<float>(), 0.0f);
  EXPECT_EQ(softmax(Tensor::empty({0, 3}), 1).shape(), (Shape{0, 3}));
  EXPECT_EQ(softmax(tensor<float>({5}, {1, 1}), 1).item<float>(), 1.0f);
  expect_error([] { softmax(tensor<int64_t>({1, 2}), 0); }, "softmax: expected a floating tensor");
  expect_error([] { softmax(Tensor::empty({2, 3}), 2); }, "softmax: dim 2 out of range");
  expect_error(
      [] {
        softmax(Tensor::empty({2, 3}), -1, tensor<float>({1, 0, 1}));
      },
      "softmax: expected a bool mask");
  expect_error(
      [] {
        log_softmax(Tensor::empty({2, 3}), -1, tensor<bool>({true, false}));
      },
      "log_softmax: mask of shape [2] cannot be broadcast to the input shape [2, 3]");
}

TEST(LayerNorm, MatchesReference) {
  const int64_t rows = 6, d = 10;
  Tensor x = randn({2, 3, d}, PhiloxState{5, 0});
  Tensor w = randn({d}, PhiloxState{6, 0});
  Tensor b = randn({d}, PhiloxState{7, 0});
  std::vector<double> xs = as_double(x), ws = as_double(w), bs = as_double(b);
  std::vector<double> want(xs.size()), plain(xs.size());
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < d; ++i) mean += xs[r * d + i] / d;
    for (int64_t i = 0; i < d; ++i) var += (xs[r * d + i] - mean) * (xs[r * d + i] - mean) / d;
    for (int64_t i = 0; i < d; ++i) {
      plain[r * d + i] = (xs[r * d + i] - mean) / std::sqrt(var + 1e-5);
      want[r * d + i] = plain[r * d + i] * ws[i] + bs[i];
    }
  }
  Tensor y = layer_norm(x, {d}, w, b);
  EXPECT_EQ(y.shape(), x.shape());
  expect_near_all(y.to_vector<float>(), want, 2e-6);
  expect_near_all(layer_norm(x, {d}).to_vector<float>(), plain, 2e-6);
  expect_near_all(layer_norm(x.to(kFloat64), {d}, w.to(kFloat64), b.to(kFloat64)).to_vector<double>(), want,
                  1e-13);
  // Only weight, only bias, and normalising over the last two dims.
  std::vector<double> w_only(want.size()), b_only(want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    w_only[i] = plain[i] * ws[i % d];
    b_only[i] = plain[i] + bs[i % d];
  }
  expect_near_all(layer_norm(x, {d}, w).to_vector<float>(), w_only, 2e-6);
  expect_near_all(layer_norm(x, {d}, Tensor(), b).to_vector<float>(), b_only, 2e-6);
  Tensor two = layer_norm(x, {3, d});
  Tensor flat = layer_norm(x.reshape({2, 3 * d}), {3 * d});
  expect_near_all(two.to_vector<float>(), as_double(flat), 1e-6);
  // A non-contiguous input.
  Tensor xt = x.transpose(0, 1);
  expect_near_all(layer_norm(xt, {d}).to_vector<float>(), as_double(layer_norm(xt.contiguous(), {d})), 0);
}

TEST(LayerNorm, LargeOffsetDoesNotCancel) {
  // Values around 1e4 with unit spread: E[x^2] - E[x]^2 would lose every digit in float32; two passes do not.
  const int64_t d = 4096;
  Tensor x = add(randn({4, d}, PhiloxState{8, 0}), 1e4);
  std::vector<double> xs = as_double(x), want(xs.size());
  for (int64_t r = 0; r < 4; ++r) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < d; ++i) mean += xs[r * d + i] / d;
    for (int64_t i = 0; i < d; ++i) var += (xs[r * d + i] - mean) * (xs[r * d + i] - mean) / d;
    for (int64_t i = 0; i < d; ++i) want[r * d + i] = (xs[r * d + i] - mean) / std::sqrt(var + 1e-5);
  }
  expect_near_all(layer_norm(x, {d}).to_vector<float>(), want, 2e-4);
}

TEST(LayerNorm, Errors) {
  Tensor x = Tensor::empty({2, 3});
  expect_error([&] { layer_norm(x, {4}); },
               "layer_norm: normalized_shape [4] does not match the trailing dims of float32[2, 3]");
  expect_error([&] { layer_norm(x, {2, 2, 3}); }, "layer_norm: normalized_shape [2, 2, 3] does not match");
  expect_error([&] { layer_norm(x, {3}, Tensor::empty({4})); },
               "layer_norm: weight shape [4] does not match normalized_shape [3]");
  expect_error([&] { layer_norm(x, {3}, Tensor(), Tensor::empty({3}, kFloat64)); },
               "layer_norm: bias is float64[3] on cpu but the input is float32[2, 3]");
  expect_error([&] { layer_norm(tensor<int64_t>({1, 2}), {2}); }, "layer_norm: expected a floating tensor");
}

TEST(Random, UniformFollowsThePhiloxContract) {
  PhiloxState st{1234, 56};
  std::vector<float> u = rand({10}, st).to_vector<float>();
  for (int i = 0; i < 10; ++i) {
    Philox4x32 b = philox_block(st.seed, st.offset + i / 4);
    EXPECT_EQ(u[i], philox_uniform(b.v[i % 4])) << i;
  }
  std::vector<double> u64 = rand({5}, st, kFloat64).to_vector<double>();
  for (int i = 0; i < 5; ++i) {
    Philox4x32 b = philox_block(st.seed, st.offset + i / 2);
    EXPECT_EQ(u64[i], 1.0 - philox_uniform_double(b.v[2 * (i % 2)], b.v[2 * (i % 2) + 1])) << i;
  }
  // Element i of a non-contiguous output is its row-major index.
  Tensor view = Tensor::empty({4, 3}).t();
  cpu_backend().uniform(view, 0.0, 1.0, st);
  EXPECT_EQ(view.contiguous().to_vector<float>(), rand({3, 4}, st).to_vector<float>());
}

TEST(Random, LongDrawsFollowThePhiloxContractAcrossTheCounterCarry) {
  // Thousands of elements (every vector lane and chunk position of the kernels) from a counter just below 2^32,
  // so the blocks' counters carry into their second word mid-draw; odd lengths leave partial chunks.
  PhiloxState st{0x0123456789abcdefULL, (uint64_t{1} << 32) - 37};
  const int64_t n = 4099;
  std::vector<float> u = rand({n}, st).to_vector<float>();
  Tensor x = randn({n}, PhiloxState{5, 5});
  std::vector<float> xv = x.to_vector<float>();
  std::vector<float> y = dropout(x, 0.25, st).to_vector<float>();
  std::vector<double> y64 = dropout(x.to(kFloat64), 0.25, st).to_vector<double>();
  int64_t mismatches = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t w = philox_block(st.seed, st.offset + static_cast<uint64_t>(i / 4)).v[i % 4];
    const bool keep = philox_uniform(w) >= 0.25f;
    mismatches += u[static_cast<size_t>(i)] != philox_uniform(w);
    mismatches += y[static_cast<size_t>(i)] != (keep ? xv[static_cast<size_t>(i)] * (1.0f / 0.75f) : 0.0f);
    mismatches +=
        y64[static_cast<size_t>(i)] != (keep ? static_cast<double>(xv[static_cast<size_t>(i)]) * (1.0 / 0.75) : 0.0);
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(Random, NormalFollowsThePhiloxContract) {
  PhiloxState st{99, 7};
  std::vector<double> z = randn({5}, st, kFloat64).to_vector<double>();
  for (int i = 0; i < 5; ++i) {
    Philox4x32 b = philox_block(st.seed, st.offset + i / 2);
    double r = std::sqrt(-2.0 * std::log(philox_uniform_double(b.v[0], b.v[1])));
    double t = 2.0 * 3.14159265358979323846 * philox_uniform_double(b.v[2], b.v[3]);
    EXPECT_DOUBLE_EQ(z[i], r * (i % 2 == 0 ? std::cos(t) : std::sin(t))) << i;
  }
  // float32 draws are the float64 draws rounded.
  std::vector<float> z32 = randn({5}, st).to_vector<float>();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(z32[i], static_cast<float>(z[i]));
}

TEST(Random, DeterministicAndWellDistributed) {
  const int64_t n = 1 << 20;
  for (DType dtype : {kFloat32, kFloat64}) {
    manual_seed(42);
    Tensor a = rand({n}, dtype);
    Tensor b = rand({n}, dtype);
    manual_seed(42);
    Tensor a2 = rand({n}, dtype);
    EXPECT_EQ(a.to_vector<double>(), a2.to_vector<double>());
    EXPECT_NE(a.to_vector<double>(), b.to_vector<double>());
    std::vector<double> v = a.to_vector<double>();
    double mean = 0, var = 0, lo = 1, hi = 0;
    for (double x : v) {
      mean += x / n;
      lo = std::min(lo, x);
      hi = std::max(hi, x);
    }
    for (double x : v) var += (x - mean) * (x - mean) / n;
    EXPECT_NEAR(mean, 0.5, 2e-3);
    EXPECT_NEAR(var, 1.0 / 12, 1e-3);
    EXPECT_GE(lo, 0.0);
    EXPECT_LT(hi, 1.0);

    Tensor z = randn({n}, dtype);
    std::vector<double> zv = z.to_vector<double>();
    double zm = 0, zvar = 0;
    for (double x : zv) zm += x / n;
    for (double x : zv) zvar += (x - zm) * (x - zm) / n;
    EXPECT_NEAR(zm, 0.0, 5e-3);
    EXPECT_NEAR(zvar, 1.0, 6e-3);
    size_t beyond2 = 0;
    for (double x : zv) beyond2 += std::fabs(x) > 2;
    EXPECT_NEAR(static_cast<double>(beyond2) / n, 0.0455, 2e-3);
  }
}

TEST(Dropout, KeepRateScalingAndDeterminism) {
  const int64_t n = 1 << 20;
  Tensor x = ones({n});
  PhiloxState st{7, 3};
  for (double p : {0.1, 0.5, 0.9}) {
    std::vector<float> y = dropout(x, p, st).to_vector<float>();
    int64_t kept = 0;
    for (float v : y) {
      if (v != 0) {
        ++kept;
        EXPECT_FLOAT_EQ(v, static_cast<float>(1.0 / (1.0 - p)));
      }
    }
    EXPECT_NEAR(static_cast<double>(kept) / n, 1 - p, 3e-3) << p;
    EXPECT_EQ(dropout(x, p, st).to_vector<float>(), y);
  }
  // The mask is the documented Philox word comparison.
  std::vector<float> y = dropout(x, 0.3, st).to_vector<float>();
  for (int i = 0; i < 64; ++i) {
    bool keep = philox_uniform(philox_block(st.seed, st.offset + i / 4).v[i % 4]) >= 0.3f;
    EXPECT_EQ(y[i] != 0, keep) << i;
  }
  // A strided input uses its row-major element order.
  Tensor m = randn({8, 16}, PhiloxState{1, 1});
  EXPECT_EQ(dropout(m.t(), 0.5, st).to_vector<float>(),
            dropout(m.t().contiguous(), 0.5, st).to_vector<float>());
  EXPECT_EQ(dropout(m.to(kFloat64), 0.5, st).to(kFloat32).to_vector<float>(),
            dropout(m, 0.5, st).to_vector<float>());
}

TEST(Dropout, TrainingFlagAndEdgeProbabilities) {
  Tensor x = randn({100}, PhiloxState{2, 0});
  EXPECT_TRUE(dropout(x, 0.5, false).is_same(x));
  EXPECT_TRUE(dropout(x, 0.0, true).is_same(x));
  EXPECT_EQ(dropout(x, 1.0, true).to_vector<float>(), std::vector<float>(100, 0.0f));
  EXPECT_EQ(dropout(x, 0.0, PhiloxState{1, 0}).to_vector<float>(), x.to_vector<float>());
  // Two training calls draw different masks from the default generator.
  EXPECT_NE(dropout(x, 0.5).to_vector<float>(), dropout(x, 0.5).to_vector<float>());
  EXPECT_EQ(dropout(Tensor::empty({0}), 0.5).numel(), 0);
  expect_error([&] { dropout(x, 1.5); }, "dropout: probability has to be between 0 and 1, got 1.5");
  expect_error([&] { dropout(x, -0.1); }, "dropout: probability has to be between 0 and 1");
  expect_error([] { dropout(tensor<int64_t>({1}), 0.5); }, "dropout: expected a floating tensor");
}

TEST(Embedding, PicksRows) {
  Tensor w = arange(15, kFloat32).view({5, 3});
  Tensor idx = tensor<int64_t>({0, 4, 2, 2}, {2, 2});
  Tensor e = embedding(idx, w);
  EXPECT_EQ(e.shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(e.to_vector<float>(), (std::vector<float>{0, 1, 2, 12, 13, 14, 6, 7, 8, 6, 7, 8}));
  EXPECT_EQ(embedding(tensor<int32_t>({1}), w).to_vector<float>(), (std::vector<float>{3, 4, 5}));
  EXPECT_EQ(embedding(scalar_tensor(3, kInt64), w).shape(), (Shape{3}));
  EXPECT_EQ(embedding(Tensor::empty({0}, kInt64), w).shape(), (Shape{0, 3}));
  Tensor strided = tensor<int64_t>({1, 9, 3, 9}).slice(0, 0, 4, 2);  // 1, 3
  EXPECT_EQ(embedding(strided, w).to_vector<float>(), (std::vector<float>{3, 4, 5, 9, 10, 11}));
  expect_error(
      [&] {
        embedding(tensor<int64_t>({1, 5}), w);
      },
      "embedding: index 5 is out of range for 5 embeddings (weight shape [5, 3])");
  expect_error([&] { embedding(tensor<int64_t>({-1}), w); }, "embedding: index -1 is out of range");
  expect_error([&] { embedding(tensor<float>({1}), w); }, "embedding: expected int64 or int32 indices");
  expect_error([&] { embedding(tensor<int64_t>({1}), arange(3, kFloat32)); },
               "embedding: weight must be 2-d");
}

TEST(CrossEntropy, MatchesReference) {
  Tensor logits = randn({4, 5}, PhiloxState{9, 0});
  Tensor target = tensor<int64_t>({1, 0, 4, 2});
  std::vector<double> lg = as_double(logits);
  std::vector<double> lsm = ref_softmax(lg, 5, true);
  std::vector<int64_t> t = {1, 0, 4, 2};
  std::vector<double> per(4);
  double total = 0;
  for (int i = 0; i < 4; ++i) total += per[i] = -lsm[i * 5 + t[i]];
  expect_near_all(cross_entropy(logits, target, -100, Reduction::None).to_vector<float>(), per, 1e-6);
  EXPECT_NEAR(cross_entropy(logits, target, -100, Reduction::Sum).item<float>(), total, 1e-5);
  EXPECT_NEAR(cross_entropy(logits, target).item<float>(), total / 4, 1e-6);
  EXPECT_EQ(cross_entropy(logits, target).shape(), Shape{});
  // Ignored targets contribute nothing and do not count towards the mean.
  Tensor ignored = tensor<int64_t>({1, -100, 4, -100});
  EXPECT_NEAR(cross_entropy(logits, ignored).item<float>(), (per[0] + per[2]) / 2, 1e-6);
  std::vector<float> none = cross_entropy(logits, ignored, -100, Reduction::None).to_vector<float>();
  EXPECT_EQ(none[1], 0.0f);
  EXPECT_EQ(none[3], 0.0f);
  // Every target ignored: 0 / 0.
  EXPECT_TRUE(std::isnan(cross_entropy(logits, tensor<int64_t>({3, 3, 3, 3}), 3).item<float>()));
}

TEST(CrossEntropy, SpatialUnbatchedAndExtremeLogits) {
  // [N, C, d] logits: the class dim is moved last.
  Tensor logits = randn({2, 3, 4}, PhiloxState{10, 0});
  Tensor target = tensor<int64_t>({0, 1, 2, 1, 2, 2, 0, 0}, {2, 4});
  Tensor loss = cross_entropy(logits, target, -100, Reduction::None);
  EXPECT_EQ(loss.shape(), (Shape{2, 4}));
  Tensor flat =
      cross_entropy(logits.permute({0, 2, 1}).reshape({8, 3}), target.reshape({8}), -100, Reduction::None);
  EXPECT_EQ(loss.to_vector<float>(), flat.to_vector<float>());
  // One prediction: [C] logits and a 0-d target.
  Tensor one = cross_entropy(tensor<float>({0, 0, 0}), scalar_tensor(1, kInt64));
  EXPECT_EQ(one.shape(), Shape{});
  EXPECT_NEAR(one.item<float>(), std::log(3.0f), 1e-6);
  // Huge logits stay finite.
  Tensor big = tensor<float>({1e4f, 0, -1e4f}, {1, 3});
  EXPECT_EQ(cross_entropy(big, tensor<int64_t>({0})).item<float>(), 0.0f);
  EXPECT_EQ(cross_entropy(big, tensor<int64_t>({2})).item<float>(), 2e4f);
}

TEST(CrossEntropy, Errors) {
  Tensor logits = Tensor::empty({2, 4});
  expect_error(
      [&] {
        cross_entropy(logits, tensor<int64_t>({0, 4}));
      },
      "cross_entropy: target 4 is out of bounds for 4 classes");
  expect_error(
      [&] {
        cross_entropy(logits, tensor<int64_t>({-3, 0}));
      },
      "cross_entropy: target -3 is out of bounds");
  expect_error(
      [&] {
        cross_entropy(logits, tensor<int64_t>({0, 1, 2}));
      },
      "cross_entropy: target shape [3] does not match logits [2, 4] (expected [2])");
  expect_error(
      [&] {
        cross_entropy(logits, tensor<int32_t>({0, 1}));
      },
      "cross_entropy: expected int64 class targets");
  expect_error(
      [&] {
        cross_entropy(tensor<int64_t>({0, 1}, {1, 2}), tensor<int64_t>({0}));
      },
      "cross_entropy: expected a floating tensor");
}
