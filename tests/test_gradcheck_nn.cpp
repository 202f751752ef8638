// Derivatives of the nn ops (ops/nn_ops.cpp): gradcheck against finite differences, the masked and ignored
// cases by value, and the CPU backend's fused backward kernels against the Backend defaults composed of ops.
#include <gtest/gtest.h>

#include <cmath>

#include "loom/loom.h"
#include "loom/ops/backend.h"
#include "support/expect.h"

using namespace loom;
using test::all_finite;
using test::leaf;

namespace {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

Tensor bools(std::vector<bool> v, Shape shape) { return tensor(v, shape); }

bool check(const Fn& fn, const std::vector<Tensor>& inputs) { return gradcheck(fn, inputs); }

}  // namespace

// ---- softmax / log_softmax
// ----------------------------------------------------------------------------------

TEST(GradcheckNn, SoftmaxAndLogSoftmaxOverEveryDim) {
  Tensor x = leaf({3, 4}, 1);
  Tensor x3 = leaf({2, 3, 4}, 2);
  for (int64_t dim : {0, 1, -1}) {
    EXPECT_TRUE(check([dim](const auto& in) { return softmax(in[0], dim); }, {x})) << dim;
    EXPECT_TRUE(check([dim](const auto& in) { return log_softmax(in[0], dim); }, {x})) << dim;
  }
  for (int64_t dim : {0, 1, 2}) {
    EXPECT_TRUE(check([dim](const auto& in) { return softmax(in[0], dim); }, {x3})) << dim;
    EXPECT_TRUE(check([dim](const auto& in) { return log_softmax(in[0], dim); }, {x3})) << dim;
  }
  Tensor s = leaf({}, 3);
  EXPECT_TRUE(check([](const auto& in) { return softmax(in[0], 0); }, {s}));
  EXPECT_TRUE(check([](const auto& in) { return log_softmax(in[0], -1); }, {s}));
}

TEST(GradcheckNn, SoftmaxOfNonContiguousInputs) {
  Tensor x = leaf({4, 3}, 4);
  Tensor w = leaf({3, 8}, 5);
  EXPECT_TRUE(check([](const auto& in) { return softmax(in[0].transpose(0, 1), -1); }, {x}));
  EXPECT_TRUE(check([](const auto& in) { return log_softmax(in[0].transpose(0, 1), 0); }, {x}));
  EXPECT_TRUE(check([](const auto& in) { return log_softmax(in[0].slice(1, 1, 8, 2), 1); }, {w}));
  // A consumer of the output: the gradient reaching softmax is not all ones.
  Tensor c = leaf({4, 3}, 11);
  EXPECT_TRUE(check([](const auto& in) { return softmax(in[0], 1) * in[1]; }, {x, c}));
  EXPECT_TRUE(check([](const auto& in) { return log_softmax(in[0], 0) * in[1]; }, {x, c}));
}

TEST(GradcheckNn, MaskedSoftmax) {
  Tensor x = leaf({3, 5}, 6);
  // Row 1 fully masked; broadcast [1, 5] and [3, 1] masks; a mask along dim 0.
  Tensor m =
      bools({false, true, false, false, true, true, true, true, true, true, false, false, true, false, false},
            {3, 5});
  Tensor row = bools({true, false, false, true, false}, {1, 5});
  Tensor col = bools({false, true, false}, {3, 1});
  EXPECT_TRUE(check([m](const auto& in) { return softmax(in[0], -1, m); }, {x}));
  EXPECT_TRUE(check([row](const auto& in) { return softmax(in[0], 1, row); }, {x}));
  EXPECT_TRUE(check([col](const auto& in) { return softmax(in[0], 1, col); }, {x}));
  EXPECT_TRUE(check([m](const auto& in) { return softmax(in[0], 0, m); }, {x}));
  Tensor strided_mask = m.transpose(0, 1).contiguous().transpose(0, 1);
  EXPECT_TRUE(
      check([strided_mask](const auto& in) { return softmax(in[0].transpose(0, 1), 1, strided_mask); },
            {leaf({5, 3}, 7)}));
}

TEST(GradcheckNn, MaskedLogSoftmax) {
  // Excluded outputs are -inf, where finite differences give NaN: the check looks through masked_fill, whose
  // own backward drops the gradient of the excluded entries (checked by value in the next test).
  Tensor x = leaf({3, 5}, 8);
  Tensor m =
      bools({false, true, false, false, true, true, true, true, true, true, false, false, true, false, false},
            {3, 5});
  Tensor row = bools({true, false, false, true, false}, {1, 5});
  EXPECT_TRUE(check([m](const auto& in) { return masked_fill(log_softmax(in[0], -1, m), m, 0.0); }, {x}));
  EXPECT_TRUE(
      check([row](const auto& in) { return masked_fill(log_softmax(in[0], 1, row), row, 0.0); }, {x}));
  EXPECT_TRUE(check([m](const auto& in) { return masked_fill(log_softmax(in[0], 0, m), m, 0.0); }, {x}));
}

TEST(GradcheckNn, MaskedEntriesAndFullyMaskedRowsGetZeroGradient) {
  Tensor m =
      bools({false, true, false, false, true, true, true, true, true, true, false, false, true, false, false},
            {3, 5});
  std::vector<double> mv{0, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0};
  for (bool log : {false, true}) {
    for (int64_t dim : {1, 0}) {
      Tensor x = leaf({3, 5}, 9);
      Tensor y = log ? log_softmax(x, dim, m) : softmax(x, dim, m);
      // A gradient that is non-zero (and large) on the excluded entries too.
      Tensor g = add(randn({3, 5}, PhiloxState{10, 0}, kFloat64), mul(tensor(mv, {3, 5}), 1e6));
      y.backward(g);
      Tensor gx = x.grad();
      ASSERT_TRUE(all_finite(gx)) << gx.to_string();
      std::vector<double> gv = gx.to_vector<double>();
      for (size_t i = 0; i < mv.size(); ++i)
        if (mv[i] != 0) {
          EXPECT_EQ(gv[i], 0.0) << "log " << log << " dim " << dim << " element " << i;
        }
      // The allowed entries get exactly what the unmasked op on the allowed entries would give.
      std::vector<double> xv = x.to_vector<double>(), gin = g.to_vector<double>();
      int64_t rows = dim == 1 ? 3 : 5, cols = dim == 1 ? 5 : 3;
      for (int64_t r = 0; r < rows; ++r) {
        auto at = [&](int64_t c) { return static_cast<size_t>(dim == 1 ? r * 5 + c : c * 5 + r); };
        double mx = -INFINITY, z = 0, gs = 0, gp = 0;
        for (int64_t c = 0; c < cols; ++c)
          if (mv[at(c)] == 0) mx = std::max(mx, xv[at(c)]);
        for (int64_t c = 0; c < cols; ++c)
          if (mv[at(c)] == 0) z += std::exp(xv[at(c)] - mx);
        for (int64_t c = 0; c < cols; ++c) {
          if (mv[at(c)] != 0) continue;
          double p = std::exp(xv[at(c)] - mx) / z;
          gs += gin[at(c)];
          gp += gin[at(c)] * p;
        }
        for (int64_t c = 0; c < cols; ++c) {
          if (mv[at(c)] != 0) continue;
          double p = std::exp(xv[at(c)] - mx) / z;
          double want = log ? gin[at(c)] - p * gs : p * (gin[at(c)] - gp);
          EXPECT_NEAR(gv[at(c)], want, 1e-12);
        }
      }
    }
  }
}

TEST(GradcheckNn, FusedSoftmaxBackwardMatchesTheComposite) {
  Backend& cpu = cpu_backend();
  for (DType dtype : {kFloat32, kFloat64}) {
    for (int64_t d : {1, 7, 37, 300}) {
      const int64_t rows = 33;
      Tensor x = mul(randn({rows, d}, PhiloxState{40, 0}, dtype), 3.0);
      Tensor g = randn({rows, d}, PhiloxState{41, 0}, dtype);
      // A mask with fully masked rows, given as an expanded [rows, 1]-strided view like the op layer passes.
      Tensor mask = lt(rand({rows, d}, PhiloxState{42, 0}), 0.3);
      mask.narrow(0, 3, 2).fill_(1.0);
      Tensor col_mask = lt(rand({1, d}, PhiloxState{43, 0}), 0.5).expand({rows, d});
      double tol = dtype == kFloat32 ? 1e-5 : 1e-12;
      {
        Tensor y = softmax(x, -1), fused = empty({rows, d}, dtype), composite = empty({rows, d}, dtype);
        cpu.softmax_backward(g, y, fused);
        cpu.Backend::softmax_backward(g, y, composite);
        EXPECT_TRUE(allclose(fused, composite, tol, tol)) << "softmax " << dtype_name(dtype) << " d " << d;
      }
      for (const Tensor& m : {Tensor(), mask, col_mask}) {
        Tensor y = log_softmax(x, -1, m), fused = empty({rows, d}, dtype),
               composite = empty({rows, d}, dtype);
        cpu.log_softmax_backward(g, y, m, fused);
        cpu.Backend::log_softmax_backward(g, y, m, composite);
        EXPECT_TRUE(all_finite(fused));
        EXPECT_TRUE(allclose(fused, composite, tol, tol))
            << "log_softmax " << dtype_name(dtype) << " d " << d;
      }
    }
  }
}

// ---- layer_norm
// ---------------------------------------------------------------------------------------------

TEST(GradcheckNn, LayerNormWithAndWithoutAffine) {
  Tensor x = leaf({2, 3, 4}, 50, kFloat64, 2.0);
  Tensor w = leaf({4}, 51);
  Tensor b = leaf({4}, 52);
  EXPECT_TRUE(check([](const auto& in) { return layer_norm(in[0], {4}, in[1], in[2]); }, {x, w, b}));
  EXPECT_TRUE(check([](const auto& in) { return layer_norm(in[0], {4}); }, {x}));
  EXPECT_TRUE(check([](const auto& in) { return layer_norm(in[0], {4}, in[1]); }, {x, w}));
  EXPECT_TRUE(check([](const auto& in) { return layer_norm(in[0], {4}, Tensor(), in[1]); }, {x, b}));
  // Only the parameters, or only one of them, requiring grad.
  Tensor xc = x.detach();
  EXPECT_TRUE(check([xc](const auto& in) { return layer_norm(xc, {4}, in[0], in[1]); }, {w, b}));
  EXPECT_TRUE(check([xc, b](const auto& in) { return layer_norm(xc, {4}, in[0], b.detach()); }, {w}));
  EXPECT_TRUE(check([xc, w](const auto& in) { return layer_norm(xc, {4}, w.detach(), in[0]); }, {b}));
}

TEST(GradcheckNn, LayerNormOverSeveralDimsAndStridedInputs) {
  Tensor x = leaf({2, 3, 4}, 53);
  Tensor w = leaf({3, 4}, 54);
  Tensor b = leaf({3, 4}, 55);
  EXPECT_TRUE(check([](const auto& in) { return layer_norm(in[0], {3, 4}, in[1], in[2]); }, {x, w, b}));
  EXPECT_TRUE(check([](const auto& in) { return layer_norm(in[0], {2, 3, 4}); }, {x}));
  // x transposed, weight a strided view: both copied to contiguous rows inside the op.
  Tensor xt = leaf({4, 3}, 56);
  Tensor w2 = leaf({2, 4}, 57);
  EXPECT_TRUE(check([](const auto& in) { return layer_norm(in[0].transpose(0, 1), {4}, in[1].select(0, 1)); },
                    {xt, w2}));
  // A consumer weighting the outputs, so the per-row means in the backward are not trivially zero.
  Tensor c = leaf({2, 3, 4}, 58);
  EXPECT_TRUE(check([](const auto& in) { return layer_norm(in[0], {4}, in[1], in[2]) * in[3]; },
                    {x, leaf({4}, 59), leaf({4}, 60), c}));
}

TEST(GradcheckNn, FusedLayerNormBackwardMatchesTheComposite) {
  Backend& cpu = cpu_backend();
  for (DType dtype : {kFloat32, kFloat64}) {
    // Shapes with tails, and one with enough rows for several blocks of partial column sums.
    for (auto [rows, d] : std::vector<std::pair<int64_t, int64_t>>{{5, 37}, {1, 1}, {3000, 70}, {17, 512}}) {
      Tensor x = add(mul(randn({rows, d}, PhiloxState{60, 0}, dtype), 2.0), 5.0);
      Tensor w = randn({d}, PhiloxState{61, 0}, dtype);
      Tensor b = randn({d}, PhiloxState{62, 0}, dtype);
      Tensor g = randn({rows, d}, PhiloxState{63, 0}, dtype);
      Tensor out = empty({rows, d}, dtype), mean = empty({rows}, dtype), rstd = empty({rows}, dtype);
      cpu.layer_norm(x, w, b, 1e-5, out, mean, rstd);
      for (const Tensor& weight : {w, Tensor()}) {
        Tensor fx = empty({rows, d}, dtype), fw = empty({d}, dtype), fb = empty({d}, dtype);
        Tensor cx = empty({rows, d}, dtype), cw = empty({d}, dtype), cb = empty({d}, dtype);
        cpu.layer_norm_backward(g, x, mean, rstd, weight, fx, fw, fb);
        cpu.Backend::layer_norm_backward(g, x, mean, rstd, weight, cx, cw, cb);
        double tol = dtype == kFloat32 ? 1e-4 : 1e-10;
        std::string what =
            std::string(dtype_name(dtype)) + " " + std::to_string(rows) + "x" + std::to_string(d);
        EXPECT_TRUE(allclose(fx, cx, tol, tol)) << what;
        EXPECT_TRUE(allclose(fw, cw, tol, tol)) << what;
        EXPECT_TRUE(allclose(fb, cb, tol, tol)) << what;
        // Any subset of the outputs.
        Tensor only_w = empty({d}, dtype), only_x = empty({rows, d}, dtype);
        cpu.layer_norm_backward(g, x, mean, rstd, weight, Tensor(), only_w, Tensor());
        cpu.layer_norm_backward(g, x, mean, rstd, weight, only_x, Tensor(), Tensor());
        EXPECT_TRUE(allclose(only_w, fw, 0, 0)) << what;
        EXPECT_TRUE(allclose(only_x, fx, 0, 0)) << what;
      }
    }
  }
}

TEST(GradcheckNn, LayerNormColumnSumsDoNotDependOnTheThreadCount) {
  const int threads = get_num_threads();
  Tensor x = randn({2000, 33}, PhiloxState{64, 0});
  Tensor g = randn({2000, 33}, PhiloxState{65, 0});
  Tensor out = empty({2000, 33}), mean = empty({2000}), rstd = empty({2000});
  cpu_backend().layer_norm(x, Tensor(), Tensor(), 1e-5, out, mean, rstd);
  Tensor gw1 = empty({33}), gw2 = empty({33});
  cpu_backend().layer_norm_backward(g, x, mean, rstd, Tensor(), Tensor(), gw1, Tensor());
  set_num_threads(1);
  cpu_backend().layer_norm_backward(g, x, mean, rstd, Tensor(), Tensor(), gw2, Tensor());
  set_num_threads(threads);
  EXPECT_TRUE(allclose(gw1, gw2, 0, 0));
}

// ---- dropout
// ------------------------------------------------------------------------------------------------

TEST(GradcheckNn, DropoutWithAFixedState) {
  Tensor x = leaf({4, 5}, 70);
  for (double p : {0.0, 0.3, 0.7, 1.0}) {
    EXPECT_TRUE(check([p](const auto& in) { return dropout(in[0], p, PhiloxState{71, 4}); }, {x})) << p;
  }
  EXPECT_TRUE(check(
      [](const auto& in) {
        return dropout(in[0].transpose(0, 1), 0.4, PhiloxState{72, 0});
      },
      {x}));
  // Not training: the identity, gradient included.
  EXPECT_TRUE(check([](const auto& in) { return dropout(in[0], 0.5, /*training=*/false); }, {x}));
}

TEST(GradcheckNn, DropoutBackwardReusesTheForwardMask) {
  for (DType dtype : {kFloat32, kFloat64}) {
    Tensor x = add(rand({1001}, PhiloxState{73, 0}, dtype), 1.0).requires_grad_();  // never 0
    manual_seed(74);
    Tensor y = dropout(x, 0.3, /*training=*/true);
    // Draws in between must not change the mask the backward replays.
    (void)rand({64});
    Tensor g = randn({1001}, PhiloxState{75, 0}, dtype);
    y.backward(g);
    std::vector<double> yv = y.to_vector<double>(), xv = x.to_vector<double>(), gv = g.to_vector<double>();
    std::vector<double> gx = x.grad().to_vector<double>();
    int64_t dropped = 0;
    double tol = dtype == kFloat32 ? 1e-6 : 1e-15;
    for (size_t i = 0; i < yv.size(); ++i) {
      if (yv[i] == 0) {
        ++dropped;
        EXPECT_EQ(gx[i], 0.0) << i;
      } else {
        EXPECT_NEAR(gx[i], gv[i] / 0.7, tol * std::abs(gv[i]) + tol) << i;
        EXPECT_NEAR(yv[i], xv[i] / 0.7, tol * 3) << i;
      }
    }
    EXPECT_GT(dropped, 200);
    EXPECT_LT(dropped, 400);
  }
}

// ---- embedding
// ----------------------------------------------------------------------------------------------

TEST(GradcheckNn, EmbeddingAccumulatesRepeatedIndices) {
  Tensor w = leaf({5, 3}, 80);
  Tensor idx = tensor(std::vector<int64_t>{1, 3, 1, 0, 1, 4}, {2, 3});
  EXPECT_TRUE(check([idx](const auto& in) { return embedding(idx, in[0]); }, {w}));
  Tensor idx32 = tensor(std::vector<int32_t>{2, 2, 0}, {3});
  EXPECT_TRUE(check([idx32](const auto& in) { return embedding(idx32, in[0]) * 2.0; }, {w}));
  EXPECT_TRUE(check(
      [idx](const auto& in) { return embedding(idx.transpose(0, 1), in[0].transpose(0, 1).t()); }, {w}));
  sum(embedding(idx, w)).backward();
  EXPECT_EQ(w.grad().to_vector<double>(), (std::vector<double>{1, 1, 1, 3, 3, 3, 0, 0, 0, 1, 1, 1, 1, 1, 1}));
  EXPECT_FALSE(idx.requires_grad());
}

// ---- cross_entropy
// ------------------------------------------------------------------------------------------

TEST(GradcheckNn, CrossEntropyEveryReduction) {
  Tensor logits = leaf({4, 5}, 90, kFloat64, 2.0);
  Tensor target = tensor(std::vector<int64_t>{0, 4, 2, 2}, {4});
  for (Reduction r : {Reduction::None, Reduction::Sum, Reduction::Mean}) {
    EXPECT_TRUE(
        check([target, r](const auto& in) { return cross_entropy(in[0], target, -100, r); }, {logits}));
    EXPECT_TRUE(check([target, r](const auto& in) { return cross_entropy(in[0].t().t(), target, -100, r); },
                      {logits}));
  }
  // Logits given as a transposed (non-contiguous) view.
  Tensor lt_ = leaf({5, 4}, 91);
  EXPECT_TRUE(
      check([target](const auto& in) { return cross_entropy(in[0].transpose(0, 1), target); }, {lt_}));
}

TEST(GradcheckNn, CrossEntropyIgnoreIndex) {
  Tensor logits = leaf({5, 4}, 92);
  Tensor target = tensor(std::vector<int64_t>{1, -100, 3, -100, 0}, {5});
  Tensor target2 = tensor(std::vector<int64_t>{2, 1, 2, 0, 3}, {5});  // ignore_index 2 is a real class
  for (Reduction r : {Reduction::None, Reduction::Sum, Reduction::Mean}) {
    EXPECT_TRUE(
        check([target, r](const auto& in) { return cross_entropy(in[0], target, -100, r); }, {logits}));
    EXPECT_TRUE(
        check([target2, r](const auto& in) { return cross_entropy(in[0], target2, 2, r); }, {logits}));
  }
  // Ignored rows get exactly zero.
  Tensor y = cross_entropy(logits, target2, 2, Reduction::Mean);
  y.backward();
  std::vector<double> g = logits.grad().to_vector<double>();
  for (int64_t row : {0, 2})
    for (int64_t c = 0; c < 4; ++c) EXPECT_EQ(g[static_cast<size_t>(row * 4 + c)], 0.0);
}

TEST(GradcheckNn, CrossEntropyWithEveryTargetIgnoredHasZeroGradient) {
  Tensor logits = leaf({3, 4}, 93);
  Tensor target = tensor(std::vector<int64_t>{-100, -100, -100}, {3});
  Tensor y = cross_entropy(logits, target);
  EXPECT_TRUE(std::isnan(y.item<double>()));  // 0 / 0, as PyTorch
  y.backward();
  EXPECT_TRUE(allclose(logits.grad(), zeros({3, 4}, kFloat64), 0, 0));
}

TEST(GradcheckNn, CrossEntropySpatialAndUnbatched) {
  Tensor logits3 = leaf({2, 3, 4}, 94);  // [N, C, d1]
  Tensor t3 = tensor(std::vector<int64_t>{0, 2, 1, -100, 2, 2, 0, 1}, {2, 4});
  Tensor logits4 = leaf({2, 3, 2, 2}, 95);  // [N, C, d1, d2]
  Tensor t4 = tensor(std::vector<int64_t>{0, 2, 1, 1, 2, -100, 0, 1}, {2, 2, 2});
  for (Reduction r : {Reduction::None, Reduction::Sum, Reduction::Mean}) {
    EXPECT_TRUE(check([t3, r](const auto& in) { return cross_entropy(in[0], t3, -100, r); }, {logits3}));
    EXPECT_TRUE(check([t4, r](const auto& in) { return cross_entropy(in[0], t4, -100, r); }, {logits4}));
  }
  Tensor logits1 = leaf({5}, 96);
  Tensor t0 = tensor(std::vector<int64_t>{3}, Shape{});
  for (Reduction r : {Reduction::None, Reduction::Sum, Reduction::Mean})
    EXPECT_TRUE(check([t0, r](const auto& in) { return cross_entropy(in[0], t0, -100, r); }, {logits1}));
}

TEST(GradcheckNn, CrossEntropyFloat32GradientHasTheLogitsDtype) {
  Tensor logits = randn({6, 10}, PhiloxState{97, 0}).requires_grad_();
  Tensor target = tensor(std::vector<int64_t>{0, 9, 3, 3, -100, 1}, {6});
  cross_entropy(logits, target).backward();
  ASSERT_EQ(logits.grad().dtype(), kFloat32);
  ASSERT_EQ(logits.grad().shape(), logits.shape());
  // Each non-ignored row sums to zero (softmax - onehot), divided by 5 targets.
  Tensor row_sums = sum(logits.grad(), {1});
  EXPECT_TRUE(allclose(row_sums, zeros({6}), 0, 1e-6));
  std::vector<float> g = logits.grad().to_vector<float>();
  EXPECT_LT(g[0], 0.0f);
}
