// Derivatives of the reductions and scans (ops/reduce.cpp), checked against finite differences with gradcheck,
// plus exact expectations where finite differences cannot decide (ties of max/min).
#include <gtest/gtest.h>

#include <cmath>

#include "loom/loom.h"

using namespace loom;

namespace {

using Inputs = std::vector<Tensor>;

// A float64 leaf of `shape` holding distinct, irregular values (no ties, so max/min/sort are differentiable).
// (Not test::leaf: random draws would not guarantee the spacing.)
Tensor leaf(const Shape& shape, double seed = 0.0) {
  int64_t n = shape_numel(shape);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = 1.5 * std::sin(1.37 * static_cast<double>(i) + seed) + 0.01 * i;
  return tensor(v, shape).requires_grad_();
}

Tensor f64(std::vector<double> v, Shape shape) { return tensor(std::move(v), shape).requires_grad_(); }

std::vector<double> grad_of(const Tensor& x) { return x.grad().to_vector<double>(); }

// Every dim list worth checking on a 3-d tensor, with and without keepdim.
const std::vector<std::vector<int64_t>> kDimLists = {{}, {0}, {1}, {-1}, {0, 2}, {-1, 0}, {0, 1, 2}};

}  // namespace

TEST(GradcheckReduce, SumAndMean) {
  for (const auto& dims : kDimLists) {
    for (bool keepdim : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "dims size " << dims.size() << " keepdim " << keepdim);
      EXPECT_TRUE(gradcheck([&](const Inputs& in) { return sum(in[0], dims, keepdim); }, {leaf({2, 3, 2})}));
      EXPECT_TRUE(gradcheck([&](const Inputs& in) { return mean(in[0], dims, keepdim); }, {leaf({2, 3, 2})}));
    }
  }
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return sum(in[0]); }, {f64({2.5}, {})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return mean(in[0], {0}, true); }, {f64({2.5}, {})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return sum(in[0].transpose(0, 1), {1}); }, {leaf({3, 4})}));
}

TEST(GradcheckReduce, Prod) {
  for (const auto& dims : kDimLists) {
    for (bool keepdim : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "dims size " << dims.size() << " keepdim " << keepdim);
      EXPECT_TRUE(gradcheck([&](const Inputs& in) { return prod(in[0], dims, keepdim); }, {leaf({2, 3, 2})}));
    }
  }
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return prod(in[0]); }, {f64({-1.5}, {})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return prod(in[0], {-1}, true); }, {f64({-1.5}, {})}));
  // Non-contiguous input made inside the function.
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return prod(in[0].permute({2, 0, 1}), {0, 2}); }, {leaf({2, 3, 4})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return prod(in[0].slice(1, 0, 5, 2), {1}); }, {leaf({3, 5})}));
}

TEST(GradcheckReduce, ProdWithZerosDividesByNothing) {
  // Rows with no zero, one zero and two zeros; the product is a polynomial, so finite differences are exact.
  Tensor x = f64({1.5, -2, 0.5,  //
                  0, 3, -0.7,    //
                  0, 2, 0},
                 {3, 3});
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return prod(in[0], {1}); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return prod(in[0], {0}, true); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return prod(in[0].t(), {0}); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return prod(in[0]); }, {x}));
  Tensor one_zero = f64({2, 0, 3, 4}, {2, 2});
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return prod(in[0]); }, {one_zero}));
  prod(one_zero).backward();
  EXPECT_EQ(grad_of(one_zero), (std::vector<double>{0, 24, 0, 0}));
  Tensor zero_d = f64({0}, {});
  prod(zero_d).backward();
  EXPECT_EQ(zero_d.grad().item<double>(), 1.0);
}

TEST(GradcheckReduce, AmaxAmin) {
  for (const auto& dims : kDimLists) {
    for (bool keepdim : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "dims size " << dims.size() << " keepdim " << keepdim);
      EXPECT_TRUE(gradcheck([&](const Inputs& in) { return amax(in[0], dims, keepdim); }, {leaf({2, 3, 2})}));
      EXPECT_TRUE(gradcheck([&](const Inputs& in) { return amin(in[0], dims, keepdim); }, {leaf({2, 3, 2})}));
    }
  }
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return amax(in[0]); }, {f64({0.3}, {})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return amin(in[0], {0}); }, {f64({0.3}, {})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].max(1); }, {leaf({3, 4})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].min(); }, {leaf({3, 4})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return amax(in[0].transpose(0, 1), {0}); }, {leaf({3, 4})}));
}

TEST(GradcheckReduce, AmaxAminSplitTiesEvenly) {
  // As PyTorch: the gradient of each output is shared equally by the elements equal to it.
  Tensor x = f64({1, 3, 3, 2,  //
                  5, 5, 5, -1},
                 {2, 4});
  amax(x, {1}).backward(tensor(std::vector<double>{1, 6}, {2}));
  std::vector<double> want{0, 0.5, 0.5, 0, 2, 2, 2, 0};
  EXPECT_EQ(grad_of(x), want);
  Tensor y = f64({2, -4, -4, 7}, {4});
  amin(y).backward();
  EXPECT_EQ(grad_of(y), (std::vector<double>{0, 0.5, 0.5, 0}));
  Tensor z = f64({1, 1, 1, 1}, {2, 2});
  amax(z, {0, 1}, true).backward(tensor(std::vector<double>{2}, {1, 1}));
  EXPECT_EQ(grad_of(z), (std::vector<double>{0.5, 0.5, 0.5, 0.5}));
}

TEST(GradcheckReduce, MaxMinWithDim) {
  for (int64_t dim : {0, 1, 2, -1, -3}) {
    for (bool keepdim : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "dim " << dim << " keepdim " << keepdim);
      EXPECT_TRUE(gradcheck(
          [&](const Inputs& in) {
            ValuesIndices r = max(in[0], dim, keepdim);
            return std::vector<Tensor>{r.values, r.indices};
          },
          {leaf({2, 3, 2})}));
      EXPECT_TRUE(gradcheck([&](const Inputs& in) { return min(in[0], dim, keepdim).values; }, {leaf({2, 3, 2})}));
    }
  }
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return max(in[0], 0).values; }, {f64({1.5}, {})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return min(in[0], -1, true).values; }, {f64({1.5}, {})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return max(in[0].permute({1, 0}), 1).values; }, {leaf({4, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return min(in[0].expand({3, 4}), 0).values; }, {leaf({4})}));
}

TEST(GradcheckReduce, MaxWithDimGivesTheGradientToTheIndexedElement) {
  Tensor x = f64({2, 7, 7, 1}, {4});
  ValuesIndices r = max(x, 0);
  EXPECT_TRUE(r.values.requires_grad());
  EXPECT_FALSE(r.indices.requires_grad());
  EXPECT_EQ(r.values.grad_fn_name(), "max");
  r.values.backward();
  EXPECT_EQ(grad_of(x), (std::vector<double>{0, 1, 0, 0}));  // the first maximum, where the index points
  Tensor y = f64({3, 1, 4, 1, 5, 9}, {2, 3});
  EXPECT_FALSE(argmax(y, 1).requires_grad());
  EXPECT_FALSE(argmin(y, 0).requires_grad());
  EXPECT_FALSE(any(gt(y, 2.0)).requires_grad());
}

TEST(GradcheckReduce, LogSumExp) {
  for (const auto& dims : kDimLists) {
    for (bool keepdim : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "dims size " << dims.size() << " keepdim " << keepdim);
      EXPECT_TRUE(gradcheck([&](const Inputs& in) { return logsumexp(in[0], dims, keepdim); }, {leaf({2, 3, 2})}));
    }
  }
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return logsumexp(in[0], {0}); }, {f64({0.7}, {})}));
  // Large values: the gradient (a softmax) must not overflow.
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return logsumexp(in[0], {1}); },
                        {f64({1000, 1000.5, 999, -1000, -1000.25, -999.5}, {2, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return logsumexp(in[0].t(), {-1}, true); }, {leaf({3, 2})}));
}

TEST(GradcheckReduce, Var) {
  for (double correction : {0.0, 1.0, 2.5}) {
    for (const auto& dims : kDimLists) {
      for (bool keepdim : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "correction " << correction << " dims size " << dims.size()
                                          << " keepdim " << keepdim);
        if (correction >= 2 && dims.size() == 1 && dims[0] != 1) continue;  // only 2 elements: N - c <= 0
        EXPECT_TRUE(gradcheck([&](const Inputs& in) { return var(in[0], dims, correction, keepdim); },
                              {leaf({2, 3, 2})}));
      }
    }
  }
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return var(in[0], {}, 0); }, {f64({0.7}, {})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return var(in[0].transpose(0, 1), {0}); }, {leaf({4, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return var(in[0].expand({2, 3}), {}, 1); }, {leaf({3})}));
}

TEST(GradcheckReduce, Cumsum) {
  for (int64_t dim : {0, 1, 2, -1, -2}) {
    SCOPED_TRACE(::testing::Message() << "dim " << dim);
    EXPECT_TRUE(gradcheck([&](const Inputs& in) { return cumsum(in[0], dim); }, {leaf({2, 3, 4})}));
  }
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return cumsum(in[0], 0); }, {f64({0.7}, {})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return cumsum(in[0].t(), 1); }, {leaf({4, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return cumsum(in[0].slice(0, 1, 7, 2), 0); }, {leaf({7})}));
}

TEST(GradcheckReduce, Cumprod) {
  for (int64_t dim : {0, 1, 2, -1}) {
    SCOPED_TRACE(::testing::Message() << "dim " << dim);
    EXPECT_TRUE(gradcheck([&](const Inputs& in) { return cumprod(in[0], dim); }, {leaf({2, 3, 4})}));
  }
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return cumprod(in[0], -1); }, {f64({0.7}, {})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return cumprod(in[0].t(), 1); }, {leaf({4, 3})}));
}

TEST(GradcheckReduce, CumprodWithZeros) {
  // One zero, two zeros, a zero first, a zero last, no zero: the exact gradient everywhere, no NaN.
  Tensor x = f64({1.5, 0, -2, 0.5, 3,   //
                  0, 2, 0, -1.25, 0.8,  //
                  2, -0.5, 1.5, 3, 0,   //
                  0.9, 1.1, -1.3, 0.7, 2},
                 {4, 5});
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return cumprod(in[0], 1); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return cumprod(in[0].t(), 0); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return cumprod(in[0], 0); }, {x}));
  Tensor y = f64({0, 0}, {2});
  cumprod(y, 0).backward(tensor(std::vector<double>{1, 1}, {2}));
  EXPECT_EQ(grad_of(y), (std::vector<double>{1, 0}));
}

TEST(GradcheckReduce, ChainedReductions) {
  // Several reductions feeding each other through broadcasting, as a normalisation layer would.
  auto fn = [](const Inputs& in) {
    Tensor centered = sub(in[0], amax(in[0], {-1}, true));
    Tensor lse = logsumexp(centered, {-1}, true);
    return sum(mul(sub(centered, lse), var(in[0], {0}, 1, true)), {0});
  };
  EXPECT_TRUE(gradcheck(fn, {leaf({3, 4})}));
}
