// Derivatives of matmul, bmm and linear (ops/linalg.cpp), checked against finite differences with gradcheck:
// every torch.matmul promotion, broadcast batch dims, transposed and expanded operands, and which inputs
// receive gradients.
#include <gtest/gtest.h>

#include <cmath>

#include "loom/loom.h"

using namespace loom;

namespace {

using Inputs = std::vector<Tensor>;

// A float64 leaf of deterministic, irregular values (not test::leaf's normal draws: these tests predate it and
// their tolerances were set on these values).
Tensor leaf(const Shape& shape, double seed = 0.0) {
  int64_t n = shape_numel(shape);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = std::sin(0.91 * static_cast<double>(i) + seed) + 0.02 * i;
  return tensor(v, shape).requires_grad_();
}

void check_matmul(const Shape& a, const Shape& b) {
  SCOPED_TRACE(::testing::Message() << "matmul " << a << " @ " << b);
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return matmul(in[0], in[1]); }, {leaf(a, 0.3), leaf(b, 1.7)}));
}

}  // namespace

TEST(GradcheckLinalg, MatmulPromotions) {
  check_matmul({4}, {4});        // dot product
  check_matmul({3}, {3, 2});     // vector @ matrix
  check_matmul({2, 3}, {3});     // matrix @ vector
  check_matmul({2, 3}, {3, 4});  // matrix product
  check_matmul({1, 3}, {3, 1});
}

TEST(GradcheckLinalg, MatmulBatched) {
  check_matmul({2, 3, 4}, {2, 4, 2});     // same batch
  check_matmul({2, 3, 4}, {4, 2});        // batch @ matrix: the weight gradient is one GEMM over all rows
  check_matmul({2, 2, 3, 4}, {4, 2});
  check_matmul({3, 4}, {2, 4, 2});        // matrix @ batch: the matrix gradient sums over the batch
  check_matmul({2, 3, 4}, {4});           // batch @ vector
  check_matmul({4}, {2, 4, 3});           // vector @ batch
  check_matmul({2, 1, 3, 4}, {3, 4, 2});  // batch dims broadcast both ways: [2, 1] with [3] -> [2, 3]
  check_matmul({1, 3, 4}, {2, 4, 2});     // a size-1 batch dim stretched
  check_matmul({2, 3, 4}, {1, 4, 2});
  check_matmul({2, 3, 4}, {1, 1, 4, 2});  // b has more (size-1) batch dims than a
  check_matmul({1, 2, 3}, {3, 2});
  // Empty rows, and an empty inner dim (zero gradients of the right shapes). Made inside the function: a fresh
  // tensor with a 0 extent after its first dim does not pass as contiguous, which gradcheck requires.
  auto empty_rows = [](const Inputs& in) { return matmul(in[0].narrow(1, 0, 0), in[1]); };
  EXPECT_TRUE(gradcheck(empty_rows, {leaf({2, 1, 3}), leaf({3, 2})}));
  auto empty_inner = [](const Inputs& in) { return matmul(in[0].narrow(-1, 0, 0), in[1].narrow(0, 0, 0)); };
  EXPECT_TRUE(gradcheck(empty_inner, {leaf({2, 3, 1}), leaf({1, 2})}));
}

TEST(GradcheckLinalg, MatmulNonContiguousOperands) {
  // Transposed views read in place by the GEMM, permuted batches that need a copy, expanded (stride-0) batches
  // and slices with a step.
  auto fn1 = [](const Inputs& in) { return matmul(in[0].t(), in[1].t()); };
  EXPECT_TRUE(gradcheck(fn1, {leaf({3, 2}), leaf({4, 3})}));
  auto fn2 = [](const Inputs& in) { return matmul(in[0].permute({1, 0, 2}), in[1].transpose(-1, -2)); };
  EXPECT_TRUE(gradcheck(fn2, {leaf({3, 2, 4}), leaf({5, 4})}));
  auto fn3 = [](const Inputs& in) { return matmul(in[0].expand({2, 3, 4}), in[1]); };
  EXPECT_TRUE(gradcheck(fn3, {leaf({3, 4}), leaf({2, 4, 2})}));
  auto fn4 = [](const Inputs& in) { return matmul(in[0], in[1].expand({3, 4, 2})); };
  EXPECT_TRUE(gradcheck(fn4, {leaf({3, 2, 4}), leaf({4, 2})}));
  auto fn5 = [](const Inputs& in) { return matmul(in[0].slice(1, 0, 6, 2), in[1].slice(0, 1, 4)); };
  EXPECT_TRUE(gradcheck(fn5, {leaf({2, 6}), leaf({4, 3})}));
  auto fn6 = [](const Inputs& in) { return matmul(in[0].permute({2, 0, 1}), in[1]); };  // rows do not fold
  EXPECT_TRUE(gradcheck(fn6, {leaf({2, 3, 4}), leaf({3, 2})}));
}

TEST(GradcheckLinalg, MatmulOnlyTheOperandsThatNeedGradients) {
  Tensor a = leaf({2, 3});
  Tensor b = tensor(std::vector<double>{1, 2, 3, 4, 5, 6}, {3, 2});
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return matmul(in[0], in[1]); }, {a, b}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return matmul(in[1], in[0]); }, {leaf({2, 3, 2}), b.t()}));
  sum(matmul(a, b)).backward();
  EXPECT_FALSE(b.grad().defined());
  EXPECT_EQ(a.grad().shape(), a.shape());
}

TEST(GradcheckLinalg, MatmulGradientValues) {
  // d(sum(a @ b)) / da = ones @ b^T; d / db = a^T @ ones.
  Tensor a = tensor(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}).requires_grad_();
  Tensor b = tensor(std::vector<double>{1, -1, 2, 0, 0.5, 3}, {3, 2}).requires_grad_();
  sum(matmul(a, b)).backward();
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{0, 2, 3.5, 0, 2, 3.5}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{5, 5, 7, 7, 9, 9}));
}

TEST(GradcheckLinalg, MatmulFloat32GradientsMatchFloat64) {
  Tensor a64 = leaf({2, 3, 4}), b64 = leaf({4, 5}, 1.0);
  Tensor a32 = a64.detach().to(kFloat32).requires_grad_(), b32 = b64.detach().to(kFloat32).requires_grad_();
  sum(exp(matmul(a64, b64) * 0.1)).backward();
  sum(exp(matmul(a32, b32) * 0.1)).backward();
  EXPECT_EQ(a32.grad().dtype(), kFloat32);
  EXPECT_TRUE(allclose(a32.grad().to(kFloat64), a64.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(allclose(b32.grad().to(kFloat64), b64.grad(), 1e-4, 1e-5));
}

TEST(GradcheckLinalg, Bmm) {
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return bmm(in[0], in[1]); }, {leaf({2, 3, 4}), leaf({2, 4, 2})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return bmm(in[0].transpose(1, 2), in[1].transpose(1, 2)); },
                        {leaf({3, 4, 2}), leaf({3, 5, 4})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return bmm(in[0].expand({3, 2, 2}), in[1]); },
                        {leaf({1, 2, 2}), leaf({3, 2, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return bmm(in[0].permute({1, 0, 2}), in[1]); },
                        {leaf({2, 3, 4}), leaf({3, 4, 2})}));
  Tensor b = tensor(std::vector<double>{1, 2, 3, 4}, {1, 2, 2});
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return bmm(in[0], in[1]); }, {leaf({1, 3, 2}), b}));
}

TEST(GradcheckLinalg, Linear) {
  auto with_bias = [](const Inputs& in) { return linear(in[0], in[1], in[2]); };
  auto without_bias = [](const Inputs& in) { return linear(in[0], in[1]); };
  for (const Shape& x : {Shape{3}, Shape{2, 3}, Shape{2, 2, 3}, Shape{0, 3}}) {
    SCOPED_TRACE(::testing::Message() << "x " << x);
    EXPECT_TRUE(gradcheck(with_bias, {leaf(x), leaf({4, 3}, 1.0), leaf({4}, 2.0)}));
    EXPECT_TRUE(gradcheck(without_bias, {leaf(x), leaf({4, 3}, 1.0)}));
  }
  // A one-element bias broadcast over the outputs, and a 0-d one.
  EXPECT_TRUE(gradcheck(with_bias, {leaf({2, 3}), leaf({4, 3}, 1.0), leaf({1}, 2.0)}));
  EXPECT_TRUE(gradcheck(with_bias, {leaf({2, 3}), leaf({4, 3}, 1.0), leaf({}, 2.0)}));
  // Only some inputs require grad.
  Tensor w = tensor(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_TRUE(gradcheck(with_bias, {leaf({2, 3}), w, leaf({2}, 2.0)}));
  EXPECT_TRUE(gradcheck(without_bias, {w.slice(0, 0, 1).reshape({3}).clone(), leaf({4, 3})}));
}

TEST(GradcheckLinalg, LinearNonContiguousOperands) {
  // x transposed (rows that do not fold without a copy), weight stored as [in, out] and transposed, an expanded
  // x, a strided bias.
  auto fn = [](const Inputs& in) { return linear(in[0].transpose(0, 1), in[1].t(), in[2].slice(0, 0, 8, 2)); };
  EXPECT_TRUE(gradcheck(fn, {leaf({3, 2}), leaf({3, 4}, 1.0), leaf({8}, 2.0)}));
  auto fn2 = [](const Inputs& in) { return linear(in[0].expand({2, 2, 3}), in[1], in[2]); };
  EXPECT_TRUE(gradcheck(fn2, {leaf({2, 3}), leaf({4, 3}, 1.0), leaf({4}, 2.0)}));
  auto fn3 = [](const Inputs& in) { return linear(in[0].permute({1, 2, 0}), in[1]); };
  EXPECT_TRUE(gradcheck(fn3, {leaf({3, 2, 2}), leaf({4, 3}, 1.0)}));
}

TEST(GradcheckLinalg, LinearIsOneTapeEntry) {
  Tensor x = leaf({2, 5, 3}), w = leaf({4, 3}, 1.0), b = leaf({4}, 2.0);
  autograd::TapeGuard tape;
  Tensor y = linear(x, w, b);
  EXPECT_EQ(y.grad_fn_name(), "linear");
  EXPECT_EQ(tape.tape().recorded_entries(), 1);
  sum(y).backward();
  EXPECT_EQ(tape.tape().live_entries(), 0);
  EXPECT_EQ(x.grad().shape(), x.shape());
  EXPECT_EQ(w.grad().shape(), w.shape());
  // grad bias = number of rows; grad weight[o] = sum of x rows.
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{10, 10, 10, 10}));
  EXPECT_TRUE(allclose(w.grad(), sum(x.detach(), {0, 1}, true).reshape({1, 3}).expand({4, 3})));
}
