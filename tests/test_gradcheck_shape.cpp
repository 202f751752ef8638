// Derivatives of the shape and indexing ops (ops/shape_ops.cpp), of the view methods (core/tensor.cpp) and of
// the copies (contiguous, clone, to), checked against finite differences with gradcheck.
#include <gtest/gtest.h>

#include <cmath>

#include "loom/loom.h"

using namespace loom;

namespace {

using Inputs = std::vector<Tensor>;

// A float64 leaf of `shape` holding distinct, irregular values (no ties, so sort/topk are differentiable).
// (Not test::leaf: random draws would not guarantee the spacing.)
Tensor leaf(const Shape& shape, double seed = 0.0) {
  int64_t n = shape_numel(shape);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = 1.5 * std::sin(1.37 * static_cast<double>(i) + seed) + 0.01 * i;
  return tensor(v, shape).requires_grad_();
}

Tensor f64(std::vector<double> v, Shape shape) { return tensor(std::move(v), shape).requires_grad_(); }

Tensor ints(std::vector<int64_t> v, Shape shape) { return tensor(std::move(v), shape); }

// gradcheck of a function of one tensor whose outputs are several tensors (split, chunk, sort).
std::vector<Tensor> weighted(const std::vector<Tensor>& pieces) {
  // Distinct weights per piece, so a gradient sent to the wrong piece shows.
  std::vector<Tensor> out;
  for (size_t i = 0; i < pieces.size(); ++i) out.push_back(mul(pieces[i], static_cast<double>(i + 1)));
  return out;
}

}  // namespace

// ---- cat / stack / split / chunk --------------------------------------------------------------------------

TEST(GradcheckShape, Cat) {
  for (int64_t dim : {0, 1, -1, -2}) {
    SCOPED_TRACE(::testing::Message() << "dim " << dim);
    EXPECT_TRUE(gradcheck([&](const Inputs& in) { return cat({in[0], in[1], in[2]}, dim); },
                          {leaf({2, 3}), leaf({2, 3}, 1.0), leaf({2, 3}, 2.0)}));
  }
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return cat({in[0], in[1]}, 1); }, {leaf({2, 1, 2}), leaf({2, 3, 2})}));
  // A constant among the inputs, the same tensor twice, and a non-contiguous piece.
  Tensor c = tensor(std::vector<double>{7, 8}, {1, 2});
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return cat({in[0], c, in[0].t(), in[1]}, 0); },
                        {leaf({2, 2}), leaf({1, 2}, 1.0)}));
  // A 1-d empty tensor is skipped by cat; it still gets an (empty) gradient.
  Tensor empty = f64({}, {0});
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return cat({in[0], in[1]}, 1); }, {leaf({2, 3}), empty}));
  Tensor x = leaf({2, 3});
  sum(cat({x, empty}, 1)).backward();
  EXPECT_EQ(empty.grad().shape(), Shape{0});
  EXPECT_EQ(x.grad().to_vector<double>(), std::vector<double>(6, 1.0));
}

TEST(GradcheckShape, CatGivesEachInputItsOwnDtype) {
  Tensor a = tensor(std::vector<float>{1, 2}, {2}).requires_grad_();
  Tensor b = f64({3}, {1});
  Tensor i = tensor(std::vector<int64_t>{4}, {1});
  Tensor y = cat({a, b, i});
  EXPECT_EQ(y.dtype(), kFloat64);
  sum(mul(y, tensor(std::vector<double>{1, 2, 3, 4}, {4}))).backward();
  EXPECT_EQ(a.grad().dtype(), kFloat32);
  EXPECT_EQ(a.grad().to_vector<float>(), (std::vector<float>{1, 2}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{3}));
}

TEST(GradcheckShape, Stack) {
  for (int64_t dim : {0, 1, 2, -1, -3}) {
    SCOPED_TRACE(::testing::Message() << "dim " << dim);
    EXPECT_TRUE(gradcheck([&](const Inputs& in) { return stack({in[0], in[1].t(), in[0]}, dim); },
                          {leaf({2, 3}), leaf({3, 2}, 1.0)}));
  }
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return stack({in[0], in[1]}); }, {f64({1.5}, {}), f64({-2}, {})}));
  autograd::TapeGuard tape;
  Tensor y = stack({leaf({2}), leaf({2}, 1.0)}, 1);
  EXPECT_EQ(y.grad_fn_name(), "stack");
  EXPECT_EQ(tape.tape().recorded_entries(), 1);
}

TEST(GradcheckShape, Split) {
  for (int64_t dim : {0, 1, -1}) {
    SCOPED_TRACE(::testing::Message() << "dim " << dim);
    EXPECT_TRUE(gradcheck([&](const Inputs& in) { return weighted(split(in[0], 2, dim)); }, {leaf({5, 3})}));
  }
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return weighted(split(in[0], {1, 0, 3, 1}, 1)); }, {leaf({2, 5})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return weighted(split(in[0].t(), {2, 1}, 0)); }, {leaf({4, 3})}));
  // Only one piece used: the others' gradients are zeros.
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return exp(split(in[0], 2, 0)[1]); }, {leaf({5})}));
  // One tape entry for all the pieces.
  autograd::TapeGuard tape;
  std::vector<Tensor> pieces = split(leaf({6, 2}), 2, 0);
  EXPECT_EQ(tape.tape().recorded_entries(), 1);
  EXPECT_EQ(pieces[2].grad_fn_name(), "split");
}

TEST(GradcheckShape, Chunk) {
  for (int64_t chunks : {1, 2, 3, 4, 7}) {
    SCOPED_TRACE(::testing::Message() << "chunks " << chunks);
    EXPECT_TRUE(gradcheck([&](const Inputs& in) { return weighted(chunk(in[0], chunks, -1)); }, {leaf({2, 5})}));
  }
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return weighted(chunk(in[0].permute({1, 0}), 2, 0)); },
                        {leaf({3, 4})}));
  Tensor x = leaf({4});
  std::vector<Tensor> c = chunk(x, 2);
  EXPECT_EQ(c[0].grad_fn_name(), "chunk");
  sum(mul(c[1], 3.0)).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 0, 3, 3}));
}

// ---- indexing ------------------------------------------------------------------------------------------------

TEST(GradcheckShape, Gather) {
  // Repeated indices read one element several times: their gradients add.
  Tensor idx0 = ints({0, 2, 1, 0, 0, 2}, {2, 3});
  Tensor idx1 = ints({1, 1, 0, 2, 2, 2}, {3, 2});
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return gather(in[0], 0, idx0); }, {leaf({3, 3})}));
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return gather(in[0], -1, idx1); }, {leaf({3, 3})}));
  // An index smaller than x in the other dims, and larger along dim.
  Tensor idx2 = ints({3, 0, 0, 3, 1, 1, 2, 0}, {4, 2});
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return gather(in[0], 0, idx2); }, {leaf({4, 3})}));
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return gather(in[0].t(), 1, idx1.t()); }, {leaf({3, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return gather(in[0], 0, ints({0}, {})); }, {f64({2.5}, {})}));
  Tensor x = f64({1, 2, 3}, {3});
  sum(gather(x, 0, ints({2, 2, 0, 2}, {4}))).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1, 0, 3}));
}

TEST(GradcheckShape, Scatter) {
  // Distinct targets along dim (with repeated indices one write wins and the derivative is not defined).
  Tensor idx = ints({2, 0, 1, 0, 2, 2}, {2, 3});
  auto fn = [&](const Inputs& in) { return scatter(in[0], 0, idx, in[1]); };
  EXPECT_TRUE(gradcheck(fn, {leaf({3, 3}), leaf({2, 3}, 1.0)}));
  // src larger than index: its extra elements are unused and get zero gradient.
  EXPECT_TRUE(gradcheck(fn, {leaf({3, 3}), leaf({3, 4}, 1.0)}));
  Tensor idx1 = ints({1, 0, 2, 1}, {2, 2});
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return scatter(in[0].t(), 1, idx1, in[1]); },
                        {leaf({3, 2}), leaf({2, 2}, 1.0)}));
  // Only x, only src.
  Tensor c = tensor(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return scatter(in[0], 0, idx, in[1]); }, {leaf({3, 3}), c}));
  Tensor c33 = arange(9, kFloat64).reshape({3, 3});
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return scatter(in[1], 0, idx, in[0]); }, {leaf({2, 3}), c33}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return scatter(in[0], 0, ints({0}, {}), in[1]); },
                        {f64({2.5}, {}), f64({-1}, {})}));
  Tensor x = f64({1, 2, 3}, {3}), s = f64({9}, {1});
  sum(mul(scatter(x, 0, ints({1}, {1}), s), 2.0)).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 0, 2}));
  EXPECT_EQ(s.grad().to_vector<double>(), (std::vector<double>{2}));
}

TEST(GradcheckShape, ScatterAdd) {
  Tensor idx = ints({2, 0, 2, 2, 0, 2}, {2, 3});  // repeated targets accumulate
  auto fn = [&](const Inputs& in) { return scatter_add(in[0], 0, idx, in[1]); };
  EXPECT_TRUE(gradcheck(fn, {leaf({3, 3}), leaf({2, 3}, 1.0)}));
  EXPECT_TRUE(gradcheck(fn, {leaf({3, 3}), leaf({4, 5}, 1.0)}));
  Tensor idx1 = ints({1, 1, 0, 1}, {2, 2});
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return scatter_add(in[0].t(), -1, idx1, in[1].expand({2, 2})); },
                        {leaf({3, 2}), leaf({2}, 1.0)}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return scatter_add(in[0], 0, ints({0}, {}), in[1]); },
                        {f64({2.5}, {}), f64({-1}, {})}));
}

TEST(GradcheckShape, IndexSelect) {
  Tensor dup = ints({2, 0, 2, 2}, {4});
  for (int64_t dim : {0, 1, -1}) {
    SCOPED_TRACE(::testing::Message() << "dim " << dim);
    EXPECT_TRUE(gradcheck([&](const Inputs& in) { return index_select(in[0], dim, dup); }, {leaf({3, 3})}));
  }
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return index_select(in[0], 1, ints({1}, {})); }, {leaf({2, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return index_select(in[0], 0, ints({}, {0})); }, {leaf({2, 3})}));
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return index_select(in[0].permute({2, 0, 1}), 0, dup.slice(0, 1, 4)); },
                        {leaf({2, 2, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return index_select(in[0], 0, ints({0, 0}, {2})); }, {f64({2.5}, {})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return index_select(in[0], 0, ints({0}, {})); }, {f64({2.5}, {})}));
  // The embedding lookup pattern: rows of a table, repeated rows accumulate.
  Tensor table = f64({1, 2, 3, 4, 5, 6}, {3, 2});
  sum(index_select(table, 0, ints({1, 1, 2, 1}, {4}))).backward();
  EXPECT_EQ(table.grad().to_vector<double>(), (std::vector<double>{0, 0, 3, 3, 1, 1}));
}

TEST(GradcheckShape, IndexAdd) {
  Tensor dup = ints({2, 0, 2}, {3});
  auto fn = [&](const Inputs& in) { return index_add(in[0], 1, dup, in[1]); };
  EXPECT_TRUE(gradcheck(fn, {leaf({2, 4}), leaf({2, 3}, 1.0)}));
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return index_add(in[0], 0, dup, in[1]); },
                        {leaf({3, 2}), leaf({3, 2}, 1.0)}));
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return index_add(in[0].t(), -1, dup, in[1].t()); },
                        {leaf({4, 2}), leaf({3, 2}, 1.0)}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return index_add(in[0], 0, ints({1}, {}), in[1]); },
                        {leaf({3, 2}), leaf({1, 2}, 1.0)}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return index_add(in[0], 0, ints({0}, {}), in[1]); },
                        {f64({2.5}, {}), f64({-1}, {})}));
  Tensor c = tensor(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return index_add(in[0], 1, dup, in[1]); }, {leaf({2, 4}), c}));
}

// ---- sort / topk / triangles --------------------------------------------------------------------------------

TEST(GradcheckShape, SortValues) {
  for (int64_t dim : {0, 1, -1}) {
    for (bool descending : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "dim " << dim << " descending " << descending);
      EXPECT_TRUE(gradcheck(
          [&](const Inputs& in) {
            ValuesIndices r = sort(in[0], dim, descending);
            return std::vector<Tensor>{mul(r.values, arange(1, 5, 1, kFloat64).reshape({4, 1})), r.indices};
          },
          {leaf({4, 3})}));
    }
  }
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return sort(in[0].t(), 0).values; }, {leaf({4, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return sort(in[0]).values; }, {f64({2.5}, {})}));
  Tensor x = f64({3, 1, 2}, {3});
  ValuesIndices r = sort(x);
  EXPECT_FALSE(r.indices.requires_grad());
  EXPECT_FALSE(argsort(x).requires_grad());
  sum(mul(r.values, tensor(std::vector<double>{1, 10, 100}, {3}))).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{100, 1, 10}));
}

TEST(GradcheckShape, TopkValues) {
  for (int64_t k : {0, 1, 2, 4}) {
    for (bool largest : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "k " << k << " largest " << largest);
      EXPECT_TRUE(gradcheck([&](const Inputs& in) { return topk(in[0], k, -1, largest).values; }, {leaf({3, 4})}));
      if (k <= 3) {
        EXPECT_TRUE(gradcheck([&](const Inputs& in) { return topk(in[0], k, 0, largest).values; }, {leaf({3, 4})}));
      }
    }
  }
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return topk(in[0].t(), 2, 1).values; }, {leaf({4, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return topk(in[0], 1).values; }, {f64({2.5}, {})}));
  Tensor z = f64({2.5}, {});
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return add(sum(topk(in[0], 0).values), in[0]); }, {z}));
}

TEST(GradcheckShape, TrilTriu) {
  for (int64_t diagonal : {-2, -1, 0, 1, 3}) {
    SCOPED_TRACE(::testing::Message() << "diagonal " << diagonal);
    EXPECT_TRUE(gradcheck([&](const Inputs& in) { return tril(in[0], diagonal); }, {leaf({3, 4})}));
    EXPECT_TRUE(gradcheck([&](const Inputs& in) { return triu(in[0], diagonal); }, {leaf({2, 3, 3})}));
  }
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return tril(in[0].transpose(0, 1)); }, {leaf({4, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return triu(in[0].expand({2, 3, 3}), 1); }, {leaf({3, 3})}));
}

// ---- views (core/tensor.cpp) and copies (ops/conversions.cpp) ---------------------------------------------

TEST(GradcheckViews, ViewReshapeFlatten) {
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return exp(in[0].view({3, 2})); }, {leaf({2, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].view({-1}); }, {leaf({2, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].view({1, 1}); }, {f64({2}, {})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].reshape({3, 2}); }, {leaf({2, 3})}));
  // The copy path: a transposed tensor cannot be viewed flat.
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return mul(in[0].t().reshape({6}), arange(1, 7, 1, kFloat64)); },
                        {leaf({2, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].reshape({}); }, {f64({2}, {1, 1})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].flatten(); }, {leaf({2, 3, 2})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].flatten(1, 2); }, {leaf({2, 3, 2})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].permute({2, 0, 1}).flatten(0, 1); }, {leaf({2, 3, 2})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].flatten(); }, {f64({2}, {})}));
}

TEST(GradcheckViews, PermuteTransposeT) {
  auto w = [](const Tensor& t) { return mul(t, arange(1, static_cast<double>(t.numel()) + 1, 1, kFloat64).reshape(t.shape())); };
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return w(in[0].permute({2, 0, 1})); }, {leaf({2, 3, 4})}));
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return w(in[0].permute({-1, -3, -2})); }, {leaf({2, 3, 4})}));
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return w(in[0].transpose(0, 2)); }, {leaf({2, 3, 4})}));
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return w(in[0].transpose(-1, 1)); }, {leaf({2, 3, 4})}));
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return w(in[0].t()); }, {leaf({2, 3})}));
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return w(in[0].t()); }, {leaf({3})}));
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return w(in[0].transpose(0, 0)); }, {leaf({3})}));
}

TEST(GradcheckViews, NarrowSliceSelect) {
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].narrow(1, 1, 2); }, {leaf({3, 4})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].narrow(-1, -3, 2); }, {leaf({3, 4})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].narrow(0, 1, 0); }, {leaf({3, 4})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].slice(1, 0, 7, 3); }, {leaf({2, 7})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].slice(0, -5, -1, 2); }, {leaf({7, 2})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].slice(0, 1, 100); }, {leaf({4})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].t().slice(0, 1, 3, 2).slice(1, 0, 3, 2); }, {leaf({3, 4})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].select(1, 2); }, {leaf({3, 4})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].select(-2, -1); }, {leaf({3, 4})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0][1]; }, {leaf({3})}));
  // Overlapping picks of one tensor accumulate.
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return add(in[0].narrow(0, 0, 3), in[0].slice(0, 1, 6, 2)); },
                        {leaf({6})}));
}

TEST(GradcheckViews, ExpandSqueezeUnsqueeze) {
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return mul(in[0].expand({2, 3, 4}), leaf({2, 3, 4}).detach()); },
                        {leaf({3, 1})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].expand({2, -1}); }, {leaf({3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].expand({3, 2}); }, {f64({1.5}, {})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].t().expand({2, 3, 2}); }, {leaf({2, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].squeeze(); }, {leaf({1, 3, 1, 2})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].squeeze(2); }, {leaf({1, 3, 1, 2})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].squeeze(-1); }, {leaf({3, 1})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].squeeze(); }, {f64({1.5}, {1, 1})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].unsqueeze(0); }, {leaf({2, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].unsqueeze(-1); }, {leaf({2, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].t().unsqueeze(1); }, {leaf({2, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].unsqueeze(0); }, {f64({1.5}, {})}));
}

TEST(GradcheckViews, AsStrided) {
  // Plain, with an offset, on a non-contiguous view, and with an output that reads elements several times
  // (sliding windows): those accumulate.
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].as_strided({2, 3}, {3, 1}, 0); }, {leaf({6})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].as_strided({2, 2}, {1, 3}, 1); }, {leaf({2, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].t().as_strided({2, 2}, {1, 4}, 1); }, {leaf({3, 4})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].slice(0, 2, 6).as_strided({3}, {1}, 3); }, {leaf({6})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].as_strided({4, 3}, {1, 1}, 0); }, {leaf({6})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].as_strided({3, 2}, {0, 2}, 1); }, {leaf({5})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].as_strided({}, {}, 2); }, {leaf({4})}));
  // An input whose own elements overlap (an expanded tensor): each storage element's gradient is shared by the
  // input elements aliasing it, so that expand's backward sums it back to one copy, as in PyTorch.
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].expand({2, 3}).as_strided({3}, {1}, 0); },
                        {leaf({3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].expand({3, 2}).as_strided({2, 2}, {0, 1}, 0); },
                        {leaf({2}) }));
  // A view reaching past the storage is refused (it would read freed or foreign memory).
  EXPECT_THROW((void)leaf({2}).as_strided({2, 2}, {1, 1}, 0), Error);
  Tensor x = f64({1, 2, 3}, {3});
  sum(x.expand({4, 3}).as_strided({3}, {1}, 0)).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1, 1, 1}));
}

TEST(GradcheckViews, ContiguousCloneTo) {
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].t().contiguous(); }, {leaf({2, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].expand({2, 3}).contiguous(); }, {leaf({3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].contiguous(); }, {leaf({2, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return mul(in[0].clone(), in[0]); }, {leaf({2, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].slice(1, 0, 3, 2).clone(); }, {leaf({2, 3})}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return in[0].clone(); }, {f64({1.5}, {})}));
  // A round trip through float32: the values are rounded, so take a wide step on a linear function.
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return mul(in[0].to(kFloat32).to(kFloat64), 3.0); },
                        {f64({0.5, -1.25, 2}, {3})}, {.eps = 1e-2}));
  Tensor x = f64({0.5, -1.25}, {2});
  Tensor y = x.to(kFloat32);
  EXPECT_EQ(y.grad_fn_name(), "to");
  sum(mul(y, 2.0)).backward();
  EXPECT_EQ(x.grad().dtype(), kFloat64);
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 2}));
  EXPECT_FALSE(x.to(kInt64).requires_grad());
}
