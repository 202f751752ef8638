// Shape, indexing and ordering ops: cat/stack/split/chunk, gather/scatter, index_select/index_add, sort/topk,
// one_hot, tril/triu and arange, against hand-computed values or naive references.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>

#include "loom/loom.h"
#include "support/expect.h"

using namespace loom;
using test::expect_error;

namespace {

Tensor farange(int64_t n, const Shape& shape) {
  return arange(0, static_cast<double>(n), 1, kFloat32).view(shape);
}

std::vector<int64_t> random_ints(size_t n, int64_t lo, int64_t hi, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> dist(lo, hi);
  std::vector<int64_t> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Stable argsort of each row of a row-major [rows, n] buffer (the reference for sort and topk).
template <typename T, typename Less>
std::vector<int64_t> reference_argsort(const std::vector<T>& v, int64_t rows, int64_t n, Less less) {
  std::vector<int64_t> out(v.size());
  for (int64_t r = 0; r < rows; ++r) {
    auto first = out.begin() + r * n;
    std::iota(first, first + n, int64_t(0));
    std::stable_sort(first, first + n,
                     [&](int64_t a, int64_t b) { return less(v[r * n + a], v[r * n + b]); });
  }
  return out;
}

// Runs f under several thread counts (restoring the original): results must not depend on how rows are split.
template <typename F>
void with_thread_counts(F&& f) {
  const int saved = get_num_threads();
  for (int threads : {1, 3, 8}) {
    SCOPED_TRACE("threads " + std::to_string(threads));
    set_num_threads(threads);
    f();
  }
  set_num_threads(saved);
}

}  // namespace

// --- arange ---------------------------------------------------------------------------------------------

TEST(Arange, FloatAndIntegerRanges) {
  EXPECT_EQ(arange(5).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(arange(1, 2, 0.25, kFloat32).to_vector<float>(), (std::vector<float>{1, 1.25, 1.5, 1.75}));
  EXPECT_EQ(arange(5, 0, -2, kFloat64).to_vector<double>(), (std::vector<double>{5, 3, 1}));
  EXPECT_EQ(arange(0.5, 3, 1, kInt64).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2}));  // as PyTorch
  EXPECT_EQ(arange(3, 3).numel(), 0);
  Tensor big = arange(0, 100000, 1, kInt32);
  std::vector<int32_t> v = big.to_vector<int32_t>();
  for (int32_t i = 0; i < 100000; ++i) ASSERT_EQ(v[i], i);
}

// --- cat / stack / split / chunk ------------------------------------------------------------------------

TEST(Cat, ConcatenatesAlongAnyDim) {
  Tensor a = farange(6, {2, 3});
  Tensor b = farange(4, {2, 2});
  Tensor c = cat({a, b}, 1);
  EXPECT_EQ(c.shape(), (Shape{2, 5}));
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{0, 1, 2, 0, 1, 3, 4, 5, 2, 3}));
  EXPECT_EQ(cat({a, b}, -1).to_vector<float>(), c.to_vector<float>());
  Tensor r = cat({a, a}, 0);
  EXPECT_EQ(r.shape(), (Shape{4, 3}));
  EXPECT_EQ(r.to_vector<float>(), (std::vector<float>{0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5}));
}

TEST(Cat, NonContiguousInputsPromotionAndEmpties) {
  Tensor t = farange(6, {2, 3}).t();  // [3, 2] transposed view
  Tensor ints = arange(0, 2, 1, kInt64).view({1, 2});
  Tensor c = cat({t, ints}, 0);
  EXPECT_EQ(c.dtype(), kFloat32);
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5, 0, 1}));
  // 1-d empty tensors are skipped whatever the other shapes (PyTorch's legacy rule); others must match.
  Tensor skipped = cat({Tensor::empty({0}), farange(4, {2, 2}), Tensor::empty({0}, kFloat64)}, 1);
  EXPECT_EQ(skipped.shape(), (Shape{2, 2}));
  EXPECT_EQ(skipped.dtype(), kFloat64);
  EXPECT_EQ(cat({Tensor::empty({2, 0}), farange(2, {2, 1})}, 1).to_vector<float>(),
            (std::vector<float>{0, 1}));
  EXPECT_EQ(cat({Tensor::empty({0}), Tensor::empty({0})}).shape(), (Shape{0}));
  EXPECT_EQ(cat({tensor<bool>({true}), tensor<int32_t>({7})}).dtype(), kInt32);
}

TEST(Cat, Errors) {
  expect_error([] { cat({}); }, "cat: expected a non-empty list");
  expect_error(
      [] {
        cat({farange(6, {2, 3}), farange(8, {2, 4})}, 0);
      },
      "cat: shapes must match except in dim 0, but tensor 0 has shape [2, 3] and tensor 1 has shape [2, 4]");
  expect_error([] { cat({farange(6, {2, 3}), farange(6, {6})}, 0); }, "tensor 1 has shape [6]");
  expect_error([] { cat({farange(6, {2, 3}), farange(6, {2, 3})}, 2); }, "cat: dim 2 out of range");
  expect_error([] { cat({scalar_tensor(1)}); }, "cat: tensor 0 is 0-d");
  expect_error([] { cat({farange(2, {2}), Tensor()}); }, "cat: tensor 1 is undefined");
}

TEST(Stack, InsertsANewDim) {
  Tensor a = farange(6, {2, 3});
  Tensor b = farange(6, {3, 2}).t();  // same shape, non-contiguous
  Tensor s = stack({a, b});
  EXPECT_EQ(s.shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(s.to_vector<float>(), (std::vector<float>{0, 1, 2, 3, 4, 5, 0, 2, 4, 1, 3, 5}));
  Tensor last = stack({a, b}, -1);
  EXPECT_EQ(last.shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(last.to_vector<float>(), (std::vector<float>{0, 0, 1, 2, 2, 4, 3, 1, 4, 3, 5, 5}));
  EXPECT_EQ(stack({scalar_tensor(1), scalar_tensor(2)}).to_vector<float>(), (std::vector<float>{1, 2}));
  EXPECT_EQ(stack({Tensor::empty({0}), Tensor::empty({0})}).shape(), (Shape{2, 0}));
  expect_error(
      [&] {
        stack({a, farange(6, {3, 2})});
      },
      "stack: expected tensors of equal shape, but tensor 0 has [2, 3] and tensor 1 has [3, 2]");
  expect_error([&] { stack({a}, 3); }, "stack: dim 3 out of range");
  expect_error([] { stack({}); }, "stack: expected a non-empty list");
}

TEST(Split, BySizeAndBySizes) {
  Tensor x = farange(10, {5, 2});
  std::vector<Tensor> p = split(x, 2);
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0].shape(), (Shape{2, 2}));
  EXPECT_EQ(p[2].shape(), (Shape{1, 2}));
  EXPECT_EQ(p[2].to_vector<float>(), (std::vector<float>{8, 9}));
  EXPECT_EQ(p[1].storage().get(), x.storage().get());  // views
  std::vector<Tensor> q = split(x, {1, 0, 4}, 0);
  ASSERT_EQ(q.size(), 3u);
  EXPECT_EQ(q[1].shape(), (Shape{0, 2}));
  EXPECT_EQ(q[2].to_vector<float>(), (std::vector<float>{2, 3, 4, 5, 6, 7, 8, 9}));
  std::vector<Tensor> cols = split(x, 1, -1);
  ASSERT_EQ(cols.size(), 2u);
  EXPECT_EQ(cols[1].to_vector<float>(), (std::vector<float>{1, 3, 5, 7, 9}));
  EXPECT_EQ(split(Tensor::empty({0}), 0).size(), 1u);
  expect_error(
      [&] {
        split(x, std::vector<int64_t>{1, 1});
      },
      "split: sizes [1, 1] sum to 2 but dim 0 of shape [5, 2] has size 5");
  expect_error([&] { split(x, std::vector<int64_t>{6, -1}); }, "split: sizes must be non-negative");
  expect_error([&] { split(x, 0); }, "split: split_size must be positive");
  expect_error([&] { split(x, 2, 2); }, "split: dim 2 out of range");
}

TEST(Chunk, MatchesTorchChunkSizes) {
  auto sizes = [](const std::vector<Tensor>& pieces) {
    std::vector<int64_t> s;
    for (const Tensor& t : pieces) s.push_back(t.size(0));
    return s;
  };
  EXPECT_EQ(sizes(chunk(farange(5, {5}), 4)), (std::vector<int64_t>{2, 2, 1}));
  EXPECT_EQ(sizes(chunk(farange(6, {6}), 4)), (std::vector<int64_t>{2, 2, 2}));
  EXPECT_EQ(sizes(chunk(farange(6, {6}), 3)), (std::vector<int64_t>{2, 2, 2}));
  EXPECT_EQ(sizes(chunk(farange(2, {2}), 5)), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(sizes(chunk(Tensor::empty({0}), 3)), (std::vector<int64_t>{0, 0, 0}));
  std::vector<Tensor> c = chunk(farange(12, {3, 4}), 2, -1);
  EXPECT_EQ(c[1].to_vector<float>(), (std::vector<float>{2, 3, 6, 7, 10, 11}));
  expect_error([] { chunk(farange(3, {3}), 0); }, "chunk: chunks must be positive, got 0");
  expect_error([] { chunk(scalar_tensor(1), 2); }, "chunk: cannot chunk a 0-d tensor");
}

// --- gather / scatter -----------------------------------------------------------------------------------

TEST(Gather, SmallCasesByHand) {
  Tensor x = farange(6, {2, 3});
  Tensor i1 = tensor<int64_t>({2, 0, 1, 1}, {2, 2});
  EXPECT_EQ(gather(x, 1, i1).to_vector<float>(), (std::vector<float>{2, 0, 4, 4}));
  EXPECT_EQ(gather(x, -1, i1).to_vector<float>(), (std::vector<float>{2, 0, 4, 4}));
  Tensor i0 = tensor<int64_t>({1, 0, 1}, {1, 3});
  EXPECT_EQ(gather(x, 0, i0).to_vector<float>(), (std::vector<float>{3, 1, 5}));
  // Index larger than x along dim, smaller elsewhere.
  Tensor many = tensor<int64_t>({0, 0, 2, 2, 1}, {1, 5});
  EXPECT_EQ(gather(x, 1, many).to_vector<float>(), (std::vector<float>{0, 0, 2, 2, 1}));
  // Transposed x and a sliced index.
  Tensor xt = x.t();  // [[0, 3], [1, 4], [2, 5]]
  Tensor idx = tensor<int64_t>({1, 9, 0, 9, 1, 9}, {3, 2}).narrow(1, 0, 1);
  EXPECT_EQ(gather(xt, 1, idx).to_vector<float>(), (std::vector<float>{3, 1, 5}));
  EXPECT_EQ(gather(scalar_tensor(4), 0, scalar_tensor(0, kInt64)).item<float>(), 4.0f);
  EXPECT_EQ(gather(x, 1, Tensor::empty({2, 0}, kInt64)).shape(), (Shape{2, 0}));
  Tensor ints = arange(6).view({2, 3});
  EXPECT_EQ(gather(ints, 1, i1).to_vector<int64_t>(), (std::vector<int64_t>{2, 0, 4, 4}));
}

TEST(Gather, ThreeDimsAgainstNaiveReference) {
  const int64_t A = 7, B = 33, C = 129;
  std::vector<float> xs = random_floats(A * B * C, 1);
  Tensor x = tensor<float>(xs, {A, B, C});
  for (int64_t dim = 0; dim < 3; ++dim) {
    Shape ishape{A - 1, B - 2, C - 3};
    const int64_t n = Shape{A, B, C}[dim];
    ishape[dim] = 2 * n;
    std::vector<int64_t> iv = random_ints(shape_numel(ishape), 0, n - 1, 10 + dim);
    Tensor out = gather(x, dim, tensor<int64_t>(iv, ishape));
    std::vector<float> got = out.to_vector<float>();
    for (int64_t a = 0; a < ishape[0]; ++a)
      for (int64_t b = 0; b < ishape[1]; ++b)
        for (int64_t c = 0; c < ishape[2]; ++c) {
          int64_t flat = (a * ishape[1] + b) * ishape[2] + c;
          int64_t coord[3] = {a, b, c};
          coord[dim] = iv[flat];
          ASSERT_EQ(got[flat], xs[(coord[0] * B + coord[1]) * C + coord[2]]) << "dim " << dim;
        }
  }
}

TEST(Gather, Errors) {
  Tensor x = farange(9, {3, 3});
  expect_error(
      [&] {
        gather(x, 1, tensor<int64_t>({5}, {1, 1}));
      },
      "gather: index 5 is out of range [0, 3) for dim 1 of float32[3, 3] on cpu");
  expect_error(
      [&] {
        gather(x, 0, tensor<int64_t>({0, -1}, {1, 2}));
      },
      "gather: index -1 is out of range [0, 3)");
  expect_error(
      [&] {
        gather(x, 1, Tensor::empty({4, 1}, kInt64).zero_());
      },
      "gather: index shape [4, 1] exceeds x shape [3, 3] in dim 0");
  expect_error([&] { gather(x, 1, tensor<int64_t>({0})); },
               "gather: index [1] and x [3, 3] must have the same number");
  expect_error(
      [&] {
        gather(x, 1, tensor<int32_t>({0}, {1, 1}));
      },
      "gather: expected an int64 index, got int32");
  expect_error([&] { gather(x, 2, tensor<int64_t>({0}, {1, 1})); }, "gather: dim 2 out of range");
}

TEST(Scatter, AssignsAndAccumulates) {
  Tensor x = Tensor::empty({3, 4}).zero_();
  Tensor idx = tensor<int64_t>({0, 1, 2, 0, 2, 2, 1, 1}, {2, 4});
  Tensor src = tensor<float>({1, 2, 3, 4, 5, 6, 7, 8}, {2, 4});
  EXPECT_EQ(scatter(x, 0, idx, src).to_vector<float>(),
            (std::vector<float>{1, 0, 0, 4, 0, 2, 7, 8, 5, 6, 3, 0}));
  EXPECT_EQ(x.to_vector<float>(), std::vector<float>(12, 0.0f));  // x itself is untouched
  // Repeated indices accumulate; the index may be longer than x along dim.
  Tensor y = Tensor::empty({2, 3}).fill_(0.5);
  Tensor rep = tensor<int64_t>({0, 0, 2, 0, 1, 1, 1, 1}, {2, 4});
  EXPECT_EQ(scatter_add(y, -1, rep, src).to_vector<float>(),
            (std::vector<float>{7.5, 0.5, 3.5, 0.5, 26.5, 0.5}));
  // src larger than index, and transposed: only the index's extent is read.
  Tensor big_src =
      tensor<float>({1, 2, 3, 4, 5, 6, 7, 8, 9}, {3, 3}).t();  // [[1, 4, 7], [2, 5, 8], [3, 6, 9]]
  Tensor one = tensor<int64_t>({2, 0}, {1, 2});
  EXPECT_EQ(
      scatter(Tensor::empty({2, 2}).zero_(), 1, tensor<int64_t>({1, 0}, {1, 2}), big_src).to_vector<float>(),
      (std::vector<float>{4, 1, 0, 0}));
  EXPECT_EQ(scatter(Tensor::empty({2, 3}).zero_(), 1, one, big_src).to_vector<float>(),
            (std::vector<float>{4, 0, 1, 0, 0, 0}));
  Tensor ints = scatter_add(Tensor::empty({3}, kInt64).zero_(), 0, tensor<int64_t>({2, 2, 0}),
                            tensor<int64_t>({5, 6, 7}));
  EXPECT_EQ(ints.to_vector<int64_t>(), (std::vector<int64_t>{7, 0, 11}));
}

TEST(Scatter, AddMatchesSequentialReferenceBitwise) {
  // Floats summed in index order: the kernel must be deterministic and independent of the thread count.
  const int64_t N = 3000, D = 257, V = 40;
  std::vector<float> sv = random_floats(N * D, 3);
  std::vector<int64_t> iv = random_ints(N * D, 0, V - 1, 4);
  std::vector<float> ref(V * D, 0.0f);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < D; ++j) ref[iv[i * D + j] * D + j] += sv[i * D + j];
  Tensor index = tensor<int64_t>(iv, {N, D}), src = tensor<float>(sv, {N, D});
  with_thread_counts([&] {
    EXPECT_EQ(scatter_add(Tensor::empty({V, D}).zero_(), 0, index, src).to_vector<float>(), ref);
    // The same sums along dim 1 of transposed views.
    EXPECT_EQ(
        scatter_add(Tensor::empty({D, V}).zero_(), 1, index.t(), src.t()).t().contiguous().to_vector<float>(),
        ref);
  });
}

TEST(Scatter, Errors) {
  Tensor x = Tensor::empty({3, 3}).zero_();
  Tensor idx = tensor<int64_t>({0, 1, 2, 0}, {2, 2});
  expect_error(
      [&] {
        scatter(x, 0, idx, Tensor::empty({1, 2}).zero_());
      },
      "scatter: index shape [2, 2] exceeds src shape [1, 2] in dim 0");
  expect_error(
      [&] {
        scatter_add(x, 0, idx, Tensor::empty({2, 2}, kFloat64).zero_());
      },
      "scatter_add: src dtype float64 does not match x dtype float32");
  expect_error(
      [&] {
        scatter(x, 1, tensor<int64_t>({3}, {1, 1}), x);
      },
      "scatter: index 3 is out of range [0, 3) for dim 1 of float32[3, 3] on cpu");
  expect_error(
      [&] {
        scatter_add(x, 0, Tensor::empty({2, 4}, kInt64).zero_(), Tensor::empty({2, 4}).zero_());
      },
      "scatter_add: index shape [2, 4] exceeds x shape [3, 3] in dim 1");
  expect_error([&] { scatter(x, 0, tensor<int64_t>({0}), x); }, "must have the same number of dims");
}

// --- index_select / index_add ---------------------------------------------------------------------------

TEST(IndexSelect, RowsColumnsAndViews) {
  Tensor w = farange(64 * 5, {5, 64});  // rows of 64 floats take the row-copy path
  Tensor rows = index_select(w, 0, tensor<int64_t>({4, 0, 4}));
  EXPECT_EQ(rows.shape(), (Shape{3, 64}));
  std::vector<float> r = rows.to_vector<float>();
  for (int64_t j = 0; j < 64; ++j) {
    ASSERT_EQ(r[j], 4 * 64 + j);
    ASSERT_EQ(r[64 + j], j);
    ASSERT_EQ(r[128 + j], 4 * 64 + j);
  }
  Tensor x = farange(6, {2, 3});
  EXPECT_EQ(index_select(x, 1, tensor<int64_t>({2, 2, 0})).to_vector<float>(),
            (std::vector<float>{2, 2, 0, 5, 5, 3}));
  EXPECT_EQ(index_select(x, -1, scalar_tensor(1, kInt64)).shape(), (Shape{2, 1}));
  EXPECT_EQ(index_select(x.t(), 0, tensor<int64_t>({1})).to_vector<float>(), (std::vector<float>{1, 4}));
  Tensor strided_index = tensor<int64_t>({1, 7, 0, 7}).slice(0, 0, 4, 2);
  EXPECT_EQ(index_select(x, 0, strided_index).to_vector<float>(), (std::vector<float>{3, 4, 5, 0, 1, 2}));
  EXPECT_EQ(index_select(w, 0, strided_index).to_vector<float>()[0], 64.0f);
  EXPECT_EQ(index_select(x, 0, Tensor::empty({0}, kInt64)).shape(), (Shape{0, 3}));
  // Middle dim of a contiguous 3-d tensor with long rows.
  Tensor t3 = farange(2 * 3 * 32, {2, 3, 32});
  Tensor mid = index_select(t3, 1, tensor<int64_t>({2, 1}));
  EXPECT_EQ(mid.shape(), (Shape{2, 2, 32}));
  EXPECT_EQ(mid.to_vector<float>()[0], 64.0f);
  EXPECT_EQ(mid.to_vector<float>()[32 * 3], 96 + 32.0f);
  EXPECT_EQ(index_select(scalar_tensor(5), 0, tensor<int64_t>({0})).item<float>(), 5.0f);
}

TEST(IndexSelect, Errors) {
  Tensor x = farange(6, {2, 3});
  expect_error(
      [&] {
        index_select(x, 1, tensor<int64_t>({0, 3}));
      },
      "index_select: index 3 is out of range [0, 3) for dim 1 of float32[2, 3] on cpu");
  expect_error(
      [&] {
        index_select(x, 0, tensor<int64_t>({0}, {1, 1}));
      },
      "index_select: index must be 0-d or 1-d");
  expect_error([&] { index_select(x, 0, tensor<float>({0})); },
               "index_select: expected an int64 index, got float32");
  expect_error([&] { index_select(x, -3, tensor<int64_t>({0})); }, "index_select: dim -3 out of range");
}

TEST(IndexAdd, AccumulatesRepeatedIndices) {
  Tensor x = Tensor::empty({2, 3}).fill_(1);
  Tensor src = tensor<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(index_add(x, 1, tensor<int64_t>({0, 0, 2}), src).to_vector<float>(),
            (std::vector<float>{4, 1, 4, 10, 1, 7}));
  EXPECT_EQ(index_add(x, 0, tensor<int64_t>({1, 1}), src).to_vector<float>(),
            (std::vector<float>{1, 1, 1, 6, 8, 10}));
  // Transposed src: src.t() is [[1, 4], [2, 5], [3, 6]] of shape [3, 2].
  Tensor y = Tensor::empty({3, 3}).zero_();
  EXPECT_EQ(index_add(y, 1, tensor<int64_t>({2, 2}), src.t()).to_vector<float>(),
            (std::vector<float>{0, 0, 5, 0, 0, 7, 0, 0, 9}));
  EXPECT_EQ(index_add(scalar_tensor(5), 0, tensor<int64_t>({0}), scalar_tensor(2)).item<float>(), 7.0f);
}

TEST(IndexAdd, EmbeddingBackwardMatchesSequentialReferenceBitwise) {
  const int64_t V = 50, D = 512, N = 4096;
  std::vector<float> xv = random_floats(V * D, 5);
  std::vector<float> sv = random_floats(N * D, 6);
  std::vector<int64_t> iv = random_ints(N, 0, V - 1, 7);
  std::vector<float> ref = xv;
  for (int64_t j = 0; j < N; ++j)
    for (int64_t d = 0; d < D; ++d) ref[iv[j] * D + d] += sv[j * D + d];
  Tensor x = tensor<float>(xv, {V, D}), index = tensor<int64_t>(iv), src = tensor<float>(sv, {N, D});
  with_thread_counts([&] { EXPECT_EQ(index_add(x, 0, index, src).to_vector<float>(), ref); });
}

TEST(IndexAdd, Errors) {
  Tensor x = Tensor::empty({3, 3}).zero_();
  expect_error(
      [&] {
        index_add(x, 0, tensor<int64_t>({0, 1}), x);
      },
      "index_add: src shape [3, 3] does not match [2, 3]");
  expect_error(
      [&] {
        index_add(x, 0, tensor<int64_t>({0, 1, 2}), Tensor::empty({3, 3}, kFloat64).zero_());
      },
      "index_add: src dtype float64 does not match x dtype float32");
  expect_error(
      [&] {
        index_add(x, 0, tensor<int64_t>({0, 1, 3}), x);
      },
      "index_add: index 3 is out of range [0, 3) for dim 0");
  expect_error(
      [&] {
        index_add(x, 0, tensor<int64_t>({0, 1, 2}), Tensor::empty({3}).zero_());
      },
      "index_add: src [3] and x [3, 3] must have the same number of dims");
}

// --- sort / argsort / topk ------------------------------------------------------------------------------

TEST(Sort, NaNLastAscendingFirstDescendingLikeTorch) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor x = tensor<float>({3, nan, 1, nan, 2, 1});
  ValuesIndices up = sort(x);
  EXPECT_EQ(up.indices.to_vector<int64_t>(), (std::vector<int64_t>{2, 5, 4, 0, 1, 3}));
  std::vector<float> v = up.values.to_vector<float>();
  EXPECT_EQ(std::vector<float>(v.begin(), v.begin() + 4), (std::vector<float>{1, 1, 2, 3}));
  EXPECT_TRUE(std::isnan(v[4]) && std::isnan(v[5]));
  ValuesIndices down = sort(x, 0, true);
  EXPECT_EQ(down.indices.to_vector<int64_t>(), (std::vector<int64_t>{1, 3, 0, 4, 2, 5}));
  // Signed zeros compare equal, so their order is kept.
  EXPECT_EQ(argsort(tensor<float>({0.0f, -0.0f, 0.0f, -0.0f})).to_vector<int64_t>(),
            (std::vector<int64_t>{0, 1, 2, 3}));
  Tensor longrow = tensor<double>({2, -0.0, 1, nan, -5, 0, std::numeric_limits<double>::infinity(), -1, 0});
  longrow =
      cat({longrow, longrow, longrow, longrow, longrow, longrow, longrow, longrow});  // 72: the radix path
  std::vector<double> lv = longrow.to_vector<double>();
  auto less = [](double a, double b) { return (!std::isnan(a) && std::isnan(b)) || a < b; };
  EXPECT_EQ(argsort(longrow).to_vector<int64_t>(), reference_argsort(lv, 1, 72, less));
  EXPECT_EQ(argsort(longrow, 0, true).to_vector<int64_t>(),
            reference_argsort(lv, 1, 72, [&](double a, double b) { return less(b, a); }));
}

TEST(Sort, StableWithManyEqualKeysAcrossDtypes) {
  const int64_t rows = 3, n = 1000;
  std::vector<int64_t> keys = random_ints(rows * n, 0, 3, 8);
  auto asc = [](auto a, auto b) { return a < b; };
  auto desc = [](auto a, auto b) { return a > b; };
  Tensor k64 = tensor<int64_t>(keys, {rows, n});
  EXPECT_EQ(argsort(k64).to_vector<int64_t>(), reference_argsort(keys, rows, n, asc));
  EXPECT_EQ(argsort(k64, -1, true).to_vector<int64_t>(), reference_argsort(keys, rows, n, desc));
  EXPECT_EQ(argsort(k64.to(kInt32)).to_vector<int64_t>(), reference_argsort(keys, rows, n, asc));
  EXPECT_EQ(argsort(k64.to(kFloat32), 1, true).to_vector<int64_t>(), reference_argsort(keys, rows, n, desc));
  EXPECT_EQ(argsort(k64.to(kFloat64)).to_vector<int64_t>(), reference_argsort(keys, rows, n, asc));
  std::vector<int64_t> bits(keys);
  for (auto& b : bits) b = b & 1;
  EXPECT_EQ(argsort(tensor<int64_t>(bits, {rows, n}).to(kBool)).to_vector<int64_t>(),
            reference_argsort(bits, rows, n, asc));
  ValuesIndices s = sort(k64);
  std::vector<int64_t> sorted_vals = s.values.to_vector<int64_t>();
  EXPECT_TRUE(std::is_sorted(sorted_vals.begin(), sorted_vals.begin() + n));
}

TEST(Sort, SixtyFourKInt64KeysMatchStdStableSort) {
  const int64_t rows = 4, n = 1 << 16;
  auto asc = [](int64_t a, int64_t b) { return a < b; };
  auto desc = [](int64_t a, int64_t b) { return a > b; };
  // Bucket ids (the counting pass), a wide range (radix with skipped digits) and full-width keys.
  std::vector<std::pair<int64_t, int64_t>> ranges = {
      {0, 255}, {-3000, 70000}, {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()}};
  uint32_t seed = 20;
  for (auto [lo, hi] : ranges) {
    std::vector<int64_t> keys = random_ints(rows * n, lo, hi, seed++);
    Tensor x = tensor<int64_t>(keys, {rows, n});
    ValuesIndices s = sort(x);
    std::vector<int64_t> ref = reference_argsort(keys, rows, n, asc);
    ASSERT_EQ(s.indices.to_vector<int64_t>(), ref) << "range " << lo << ".." << hi;
    std::vector<int64_t> vals = s.values.to_vector<int64_t>();
    for (int64_t i = 0; i < rows * n; ++i) ASSERT_EQ(vals[i], keys[(i / n) * n + ref[i]]);
    ASSERT_EQ(argsort(x, -1, true).to_vector<int64_t>(), reference_argsort(keys, rows, n, desc));
  }
}

TEST(Sort, FloatRowsAndOtherDims) {
  const int64_t rows = 5, n = 3000;
  std::vector<float> v = random_floats(rows * n, 9);
  for (int64_t i = 0; i < rows * n; i += 7) v[i] = std::round(v[i] * 4) / 4;  // some duplicates
  Tensor x = tensor<float>(v, {rows, n});
  EXPECT_EQ(argsort(x).to_vector<int64_t>(),
            reference_argsort(v, rows, n, [](float a, float b) { return a < b; }));
  // Sorting along dim 0 of the transpose is sorting the rows of x.
  ValuesIndices t = sort(x.t(), 0, true);
  EXPECT_EQ(t.indices.shape(), (Shape{n, rows}));
  std::vector<int64_t> ref = reference_argsort(v, rows, n, [](float a, float b) { return a > b; });
  std::vector<int64_t> got = t.indices.t().contiguous().to_vector<int64_t>();
  EXPECT_EQ(got, ref);
  std::vector<float> vals = t.values.t().contiguous().to_vector<float>();
  for (int64_t i = 0; i < rows * n; ++i) ASSERT_EQ(vals[i], v[(i / n) * n + ref[i]]);
  // A 3-d tensor sorted along its middle dim.
  Tensor y = tensor<float>({3, 1, 2, 0, 5, 4, 9, 8, 7, 6, 1, 1}, {2, 3, 2});
  ValuesIndices m = sort(y, 1);
  EXPECT_EQ(m.values.to_vector<float>(), (std::vector<float>{2, 0, 3, 1, 5, 4, 1, 1, 7, 6, 9, 8}));
  EXPECT_EQ(m.indices.to_vector<int64_t>(), (std::vector<int64_t>{1, 1, 0, 0, 2, 2, 2, 2, 1, 1, 0, 0}));
}

TEST(Sort, ScalarsEmptiesAndErrors) {
  ValuesIndices s = sort(scalar_tensor(3));
  EXPECT_EQ(s.values.item<float>(), 3.0f);
  EXPECT_EQ(s.indices.item<int64_t>(), 0);
  EXPECT_EQ(sort(Tensor::empty({0, 5})).indices.shape(), (Shape{0, 5}));
  EXPECT_EQ(sort(Tensor::empty({4, 0}), 1).values.shape(), (Shape{4, 0}));
  expect_error([] { sort(Tensor::empty({2, 2}), 2); }, "sort: dim 2 out of range");
}

TEST(Topk, TiesGoToTheLowerIndex) {
  Tensor x = tensor<float>({1, 2, 2, 1, 2});
  ValuesIndices top = topk(x, 2);
  EXPECT_EQ(top.values.to_vector<float>(), (std::vector<float>{2, 2}));
  EXPECT_EQ(top.indices.to_vector<int64_t>(), (std::vector<int64_t>{1, 2}));
  ValuesIndices low = topk(tensor<float>({1, 2, 2, 1, 1}), 3, -1, false);
  EXPECT_EQ(low.indices.to_vector<int64_t>(), (std::vector<int64_t>{0, 3, 4}));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  ValuesIndices with_nan = topk(tensor<float>({3, nan, 1, nan, 2, 1}), 3);
  EXPECT_EQ(with_nan.indices.to_vector<int64_t>(), (std::vector<int64_t>{1, 3, 0}));  // NaN counts as largest
  EXPECT_EQ(topk(tensor<float>({3, nan, 1, nan, 2, 1}), 2, 0, false).indices.to_vector<int64_t>(),
            (std::vector<int64_t>{2, 5}));
  EXPECT_EQ(topk(x, 0).values.shape(), (Shape{0}));
  EXPECT_EQ(topk(x, 5).indices.to_vector<int64_t>(), (std::vector<int64_t>{1, 2, 4, 0, 3}));
  EXPECT_EQ(topk(Tensor::empty({3, 0}), 0, 1).indices.shape(), (Shape{3, 0}));
}

TEST(Topk, SelectionPathMatchesStableSortReference) {
  const int64_t rows = 6, n = 5000;
  std::vector<int64_t> keys = random_ints(rows * n, -50, 50, 11);  // many ties
  Tensor x = tensor<int64_t>(keys, {rows, n}).t();                 // [n, rows], topk along dim 0
  for (int64_t k : {1, 7, 100, 3000}) {
    for (bool largest : {true, false}) {
      std::vector<int64_t> ref =
          reference_argsort(keys, rows, n, [&](int64_t a, int64_t b) { return largest ? a > b : a < b; });
      ValuesIndices r = topk(x, k, 0, largest);
      ASSERT_EQ(r.indices.shape(), (Shape{k, rows}));
      std::vector<int64_t> got = r.indices.t().contiguous().to_vector<int64_t>();
      std::vector<int64_t> vals = r.values.t().contiguous().to_vector<int64_t>();
      for (int64_t row = 0; row < rows; ++row)
        for (int64_t j = 0; j < k; ++j) {
          ASSERT_EQ(got[row * k + j], ref[row * n + j]) << "k " << k << " largest " << largest;
          ASSERT_EQ(vals[row * k + j], keys[row * n + ref[row * n + j]]);
        }
    }
  }
}

TEST(Topk, Errors) {
  Tensor x = farange(3, {3});
  expect_error([&] { topk(x, 4); }, "topk: k 4 is out of range [0, 3] for dim 0 of float32[3] on cpu");
  expect_error([&] { topk(x, -1); }, "topk: k -1 is out of range");
  expect_error([&] { topk(x, 1, 1); }, "topk: dim 1 out of range");
}

// --- one_hot / tril / triu ------------------------------------------------------------------------------

TEST(OneHot, ClassesAndErrors) {
  Tensor h = one_hot(tensor<int64_t>({2, 0, 1, 2}, {2, 2}), 4);
  EXPECT_EQ(h.shape(), (Shape{2, 2, 4}));
  EXPECT_EQ(h.dtype(), kInt64);
  EXPECT_EQ(h.to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0}));
  EXPECT_EQ(one_hot(tensor<int64_t>({1, 3})).shape(), (Shape{2, 4}));
  EXPECT_EQ(one_hot(scalar_tensor(1, kInt64), 2).to_vector<int64_t>(), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(one_hot(Tensor::empty({0}, kInt64), 3).shape(), (Shape{0, 3}));
  expect_error(
      [] {
        one_hot(tensor<int64_t>({1, 5}), 3);
      },
      "one_hot: class value 5 is out of range for num_classes 3");
  expect_error(
      [] {
        one_hot(tensor<int64_t>({1, -1}), 3);
      },
      "one_hot: class values must be non-negative, got -1");
  expect_error([] { one_hot(Tensor::empty({0}, kInt64)); },
               "one_hot: cannot infer num_classes from an empty tensor");
  expect_error([] { one_hot(tensor<int32_t>({1})); }, "one_hot: expected an int64 tensor, got int32");
}

TEST(Triangle, LowerAndUpperWithDiagonals) {
  std::vector<float> v(12);
  std::iota(v.begin(), v.end(), 1.0f);
  Tensor x = tensor<float>(v, {3, 4});
  EXPECT_EQ(tril(x).to_vector<float>(), (std::vector<float>{1, 0, 0, 0, 5, 6, 0, 0, 9, 10, 11, 0}));
  EXPECT_EQ(tril(x, -1).to_vector<float>(), (std::vector<float>{0, 0, 0, 0, 5, 0, 0, 0, 9, 10, 0, 0}));
  EXPECT_EQ(tril(x, 1).to_vector<float>(), (std::vector<float>{1, 2, 0, 0, 5, 6, 7, 0, 9, 10, 11, 12}));
  EXPECT_EQ(triu(x).to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 0, 6, 7, 8, 0, 0, 11, 12}));
  EXPECT_EQ(triu(x, 1).to_vector<float>(), (std::vector<float>{0, 2, 3, 4, 0, 0, 7, 8, 0, 0, 0, 12}));
  EXPECT_EQ(triu(x, -1).to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 0, 10, 11, 12}));
  EXPECT_EQ(triu(x, 5).to_vector<float>(), std::vector<float>(12, 0.0f));
  EXPECT_EQ(tril(x, -5).to_vector<float>(), std::vector<float>(12, 0.0f));
  EXPECT_EQ(tril(x, 10).to_vector<float>(), v);
  EXPECT_EQ(tril(Tensor::empty({2, 0, 3})).shape(), (Shape{2, 0, 3}));
}

TEST(Triangle, BatchedNonContiguousAgainstReference) {
  const int64_t B0 = 2, B1 = 3, M = 5, N = 7;
  std::vector<float> v = random_floats(B0 * B1 * M * N, 12);
  // x[b0, b1, i, j] is stored as data[b1][b0][j][i]: both batch dims and the matrix dims are transposed.
  Tensor x = tensor<float>(v, {B1, B0, N, M}).permute({1, 0, 3, 2});
  for (int64_t diag : {-2, 0, 3}) {
    std::vector<float> lo = tril(x, diag).to_vector<float>();
    std::vector<float> up = triu(x, diag).to_vector<float>();
    for (int64_t b0 = 0; b0 < B0; ++b0)
      for (int64_t b1 = 0; b1 < B1; ++b1)
        for (int64_t i = 0; i < M; ++i)
          for (int64_t j = 0; j < N; ++j) {
            float xv = v[((b1 * B0 + b0) * N + j) * M + i];
            int64_t flat = ((b0 * B1 + b1) * M + i) * N + j;
            ASSERT_EQ(lo[flat], j - i <= diag ? xv : 0.0f);
            ASSERT_EQ(up[flat], j - i >= diag ? xv : 0.0f);
          }
  }
  Tensor mask = triu(Tensor::empty({3, 3}, kBool).fill_(1), 1);
  EXPECT_EQ(mask.to_vector<bool>(),
            (std::vector<bool>{false, true, true, false, false, true, false, false, false}));
}

TEST(Triangle, Errors) {
  expect_error([] { tril(farange(3, {3})); }, "tril: expected a tensor with at least 2 dims, got shape [3]");
  expect_error([] { triu(scalar_tensor(1)); }, "triu: expected a tensor with at least 2 dims, got shape []");
}
