// matmul / bmm / linear against a naive double-precision triple loop: every rank combination with batch
// broadcasting, transposed and sliced views, sizes that make the kernel split rows or columns across threads,
// empty dims, and the error messages.
#include <gtest/gtest.h>

#include <random>

#include "loom/loom.h"
#include "support/expect.h"

using namespace loom;
using test::expect_error;

namespace {

Tensor random_tensor(const Shape& shape, uint64_t seed, DType dtype = kFloat32) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(-1, 1);
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (double& x : v) x = dist(rng);
  return tensor(v, shape).to(dtype);
}

// torch.matmul computed naively in double.
Tensor reference_matmul(const Tensor& a, const Tensor& b) {
  Tensor a2 = a.dim() == 1 ? a.unsqueeze(0) : a;
  Tensor b2 = b.dim() == 1 ? b.unsqueeze(-1) : b;
  std::vector<double> va = a2.to_vector<double>(), vb = b2.to_vector<double>();  // row-major
  int64_t m = a2.size(-2), k = a2.size(-1), n = b2.size(-1);
  Shape ba(a2.shape().begin(), a2.shape().end() - 2), bb(b2.shape().begin(), b2.shape().end() - 2);
  Shape batch = broadcast_shapes(ba, bb, "reference");
  // Offset of batch entry `idx` in an operand with batch dims `own` (broadcast dims contribute nothing).
  auto batch_offset = [&](const Shape& own, const Shape& idx, int64_t matrix) {
    int64_t off = 0, stride = matrix;
    for (int64_t d = static_cast<int64_t>(own.size()) - 1; d >= 0; --d) {
      int64_t i = idx[batch.size() - own.size() + d];
      off += (own[d] == 1 ? 0 : i) * stride;
      stride *= own[d];
    }
    return off;
  };
  int64_t nb = shape_numel(batch);
  std::vector<double> out(static_cast<size_t>(nb * m * n));
  for (int64_t bi = 0; bi < nb; ++bi) {
    Shape idx(batch.size());
    int64_t rem = bi;
    for (int64_t d = static_cast<int64_t>(batch.size()) - 1; d >= 0; --d) {
      idx[d] = rem % batch[d];
      rem /= batch[d];
    }
    const double* pa = va.data() + batch_offset(ba, idx, m * k);
    const double* pb = vb.data() + batch_offset(bb, idx, k * n);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p) s += pa[i * k + p] * pb[p * n + j];
        out[(bi * m + i) * n + j] = s;
      }
  }
  Shape shape = batch;
  if (a.dim() > 1) shape.push_back(m);
  if (b.dim() > 1) shape.push_back(n);
  return tensor(out, shape);
}

void expect_matches(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
  double tol = got.dtype() == kFloat64 ? 1e-12 : 2e-5;
  for (size_t i = 0; i < g.size(); ++i) {
    ASSERT_NEAR(g[i], w[i], tol * (1 + std::abs(w[i]))) << what << " at " << i;
  }
}

}  // namespace

TEST(Matmul, EveryRankCombination) {
  // Batch shapes chosen so that every pairing broadcasts (size-1 dims against 2 and 3).
  const std::vector<Shape> batches = {{}, {3}, {2, 1}, {1, 2, 3}};
  const int64_t m = 4, k = 5, n = 6;
  uint64_t seed = 1;
  for (DType dtype : {kFloat32, kFloat64}) {
    for (int ra = 1; ra <= 5; ++ra) {
      for (int rb = 1; rb <= 5; ++rb) {
        Shape sa = ra == 1 ? Shape{k} : batches[ra - 2];
        if (ra > 1) sa.push_back(m), sa.push_back(k);
        Shape sb = rb == 1 ? Shape{k} : batches[rb - 2];
        if (rb > 1) sb.push_back(k), sb.push_back(n);
        Tensor a = random_tensor(sa, seed++, dtype), b = random_tensor(sb, seed++, dtype);
        Tensor got = matmul(a, b);
        EXPECT_EQ(got.dtype(), dtype);
        expect_matches(got, reference_matmul(a, b), shape_str(sa) + " @ " + shape_str(sb));
      }
    }
  }
}

TEST(Matmul, DotProductIsZeroDim) {
  Tensor a = tensor<float>({1, 2, 3}), b = tensor<float>({4, 5, 6});
  Tensor d = matmul(a, b);
  EXPECT_EQ(d.dim(), 0);
  EXPECT_EQ(d.item<float>(), 32.0f);
}

TEST(Matmul, TransposedAndSlicedViews) {
  Tensor base_a = random_tensor({2, 33, 17}, 11), base_b = random_tensor({2, 17, 29}, 12);
  Tensor ta = random_tensor({2, 17, 33}, 13).transpose(1, 2);  // unit stride in dim -2
  Tensor tb = random_tensor({2, 29, 17}, 14).transpose(1, 2);
  Tensor wide = random_tensor({2, 33, 40}, 15);
  Tensor sliced_a = wide.narrow(2, 3, 17);                             // row stride 40 > 17 columns
  Tensor stepped = random_tensor({2, 33, 34}, 16).slice(2, 0, 34, 2);  // no unit stride: copied first
  Tensor b_cols = random_tensor({17, 29}, 17);
  for (const Tensor& a : {base_a, ta, sliced_a, stepped}) {
    for (const Tensor& b : {base_b, tb}) {
      expect_matches(matmul(a, b), reference_matmul(a, b),
                     "a strides " + shape_str(a.strides()) + ", b strides " + shape_str(b.strides()));
    }
    expect_matches(matmul(a, b_cols), reference_matmul(a, b_cols),
                   "3-d @ 2-d, a strides " + shape_str(a.strides()));
    expect_matches(matmul(a, b_cols.t().contiguous().t()), reference_matmul(a, b_cols),
                   "3-d @ transposed 2-d");
  }
  Tensor x = random_tensor({6, 4}, 18);
  expect_matches(matmul(x.t(), x), reference_matmul(x.t(), x), "x^T x");
  expect_matches(matmul(x, x.t()), reference_matmul(x, x.t()), "x x^T");
  // Batch dims that are themselves permuted.
  Tensor p = random_tensor({3, 2, 4, 5}, 19).permute({1, 0, 2, 3});
  Tensor q = random_tensor({2, 3, 5, 6}, 20);
  expect_matches(matmul(p, q), reference_matmul(p, q), "permuted batch");
}

TEST(Matmul, BroadcastOperands) {
  Tensor a = random_tensor({4, 5}, 21);
  Tensor b = random_tensor({3, 5, 6}, 22);
  expect_matches(matmul(a, b), reference_matmul(a, b), "2-d @ 3-d");
  Tensor e = random_tensor({1, 5, 6}, 23).expand({3, 5, 6});
  Tensor c = random_tensor({3, 4, 5}, 24);
  expect_matches(matmul(c, e), reference_matmul(c, e.contiguous()), "expanded b");
  Tensor g = random_tensor({2, 1, 4, 5}, 25), h = random_tensor({1, 3, 5, 6}, 26);
  expect_matches(matmul(g, h), reference_matmul(g, h), "both broadcast");
}

TEST(Matmul, LargeProductsSplitAcrossThreads) {
  // One product big enough to split its rows, one split by columns (n > m), both with transposed operands,
  // and many small batches; the result must not depend on the thread count.
  struct Case {
    Tensor a, b;
  };
  std::vector<Case> cases = {
      {random_tensor({300, 200}, 31), random_tensor({200, 250}, 32)},
      {random_tensor({200, 300}, 33).t(), random_tensor({250, 200}, 34).t()},
      {random_tensor({70, 200}, 35), random_tensor({200, 700}, 36)},
      {random_tensor({200, 70}, 37).t(), random_tensor({700, 200}, 38).t()},
      {random_tensor({64, 128, 64}, 39), random_tensor({64, 64, 128}, 40)},
  };
  int threads = get_num_threads();
  for (const Case& c : cases) {
    std::string what = shape_str(c.a.shape()) + " @ " + shape_str(c.b.shape());
    set_num_threads(1);
    Tensor serial = matmul(c.a, c.b);
    set_num_threads(std::max(threads, 2));
    Tensor split = matmul(c.a, c.b);
    set_num_threads(threads);
    expect_matches(split, reference_matmul(c.a, c.b), what);
    expect_matches(serial, split, what + " serial");
  }
  Tensor a = random_tensor({3, 40, 30}, 41), b = random_tensor({3, 30, 20}, 42);
  expect_matches(matmul(a, b), reference_matmul(a, b), "small batched");
}

TEST(Matmul, EmptyDims) {
  EXPECT_EQ(matmul(zeros({0, 3}), zeros({3, 2})).shape(), (Shape{0, 2}));
  Tensor z = matmul(ones({2, 0}), ones({0, 2}));
  EXPECT_EQ(z.to_vector<float>(), std::vector<float>(4, 0.0f));
  EXPECT_EQ(matmul(zeros({0, 2, 3}), zeros({3, 4})).shape(), (Shape{0, 2, 4}));
  EXPECT_EQ(bmm(zeros({2, 3, 0}), zeros({2, 0, 4})).to_vector<float>(), std::vector<float>(24, 0.0f));
}

TEST(Matmul, Errors) {
  expect_error(
      [] {
        matmul(zeros({2, 3}), zeros({4, 5}));
      },
      "matmul: shapes [2, 3] and [4, 5] cannot be multiplied (3 != 4)");
  expect_error([] { matmul(zeros({3}), zeros({4})); },
               "matmul: shapes [3] and [4] cannot be multiplied (3 != 4)");
  expect_error(
      [] {
        matmul(zeros({2, 3}, kInt64), zeros({3, 2}, kInt64));
      },
      "matmul: expected float32 or float64 tensors, got int64 and int64");
  expect_error(
      [] {
        matmul(zeros({2, 3}), zeros({3, 2}, kFloat64));
      },
      "matmul: dtype mismatch (float32 and float64)");
  expect_error([] { matmul(zeros({}), zeros({3})); }, "matmul: both arguments need to be at least 1-d");
  expect_error(
      [] {
        matmul(zeros({2, 2, 3}), zeros({3, 3, 4}));
      },
      "matmul: the batch dims of shapes [2, 2, 3] and [3, 3, 4] cannot be broadcast");
  expect_error([] { bmm(zeros({2, 3}), zeros({2, 3, 4})); }, "bmm: expected 3-d tensors");
  expect_error([] { bmm(zeros({2, 3, 4}), zeros({3, 4, 5})); }, "bmm: batch sizes differ");
  expect_error(
      [] {
        bmm(zeros({2, 3, 4}), zeros({2, 5, 5}));
      },
      "bmm: shapes [2, 3, 4] and [2, 5, 5] cannot be multiplied");
  expect_error(
      [] {
        linear(zeros({2, 3}), zeros({4, 5}));
      },
      "linear: input shape [2, 3] and weight shape [4, 5]");
  expect_error([] { linear(zeros({2, 3}), zeros({4, 3}), zeros({5})); }, "linear: bias must have shape [4]");
  expect_error([] { linear(zeros({2, 3}), zeros({3})); }, "linear: weight must be 2-d");
}

TEST(Bmm, MatchesReference) {
  Tensor a = random_tensor({5, 7, 3}, 51, kFloat64), b = random_tensor({5, 3, 9}, 52, kFloat64);
  expect_matches(bmm(a, b), reference_matmul(a, b), "bmm");
  Tensor bt = random_tensor({5, 9, 3}, 53, kFloat64).transpose(1, 2);
  expect_matches(bmm(a, bt), reference_matmul(a, bt), "bmm transposed b");
}

TEST(Linear, MatchesMatmulPlusBias) {
  Tensor w = random_tensor({6, 5}, 61), bias = random_tensor({6}, 62);
  for (const Shape& shape : {Shape{5}, Shape{4, 5}, Shape{2, 3, 5}}) {
    Tensor x = random_tensor(shape, 63);
    Tensor want = reference_matmul(x, w.t());
    std::vector<double> wv = want.to_vector<double>(), bv = bias.to_vector<double>();
    for (size_t i = 0; i < wv.size(); ++i) wv[i] += bv[i % 6];
    expect_matches(linear(x, w, bias), tensor(wv, want.shape()), "linear " + shape_str(shape));
    expect_matches(linear(x, w), want, "linear without bias " + shape_str(shape));
  }
  // Non-contiguous input and weight.
  Tensor xt = random_tensor({5, 4}, 64).t();
  Tensor wt = random_tensor({5, 6}, 65).t();
  expect_matches(linear(xt, wt), reference_matmul(xt, wt.t()), "transposed x and weight");
  Tensor x3 = random_tensor({3, 2, 5}, 66).transpose(0, 1);
  expect_matches(linear(x3, w), reference_matmul(x3, w.t()), "permuted 3-d input");
  Tensor scalar_bias = linear(ones({2, 5}), ones({6, 5}), full({1}, 0.5));
  EXPECT_EQ(scalar_bias.to_vector<float>(), std::vector<float>(12, 5.5f));
}
