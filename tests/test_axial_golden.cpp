// nn::AxialPositionEmbedding against PyTorch (tests/golden/axial/make_axial_golden.py writes Hugging Face's
// AxialPositionEmbeddings and trax's AxialPositionalEncoding out independently of Loom): forward(L) and
// forward(x) = x + forward(L) with batch > 1, 2 and 3 axes, lengths equal to and shorter than the grid;
// outputs, input and per-axis weight gradients of sum(out * probe) in float64 and float32; float64 gradcheck
// with respect to the weights (and x).
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "loom/loom.h"
#include "loom/nn/axial_position_embedding.h"
#include "support/compare.h"
#include "support/expect.h"
#include "support/golden_file.h"

using namespace loom;
using test::expect_close;
using test::leaf;
using test::Tolerance;

namespace {

constexpr const char* kGoldenFile = "axial/axial.safetensors";
// The generator's CASES, in its order; the file's "cases" metadata must list the same names.
const std::vector<std::string> kCases = {"two_axes_full", "two_axes_short", "two_axes_one_row",
                                         "three_axes_full", "three_axes_short"};

Tensor golden(const std::string& key) { return test::golden_tensor(kGoldenFile, key); }

// The case's module in `dtype`, its weights loaded from the file under Loom's parameter names "0", "1", ...
std::unique_ptr<nn::AxialPositionEmbedding> load_case(const std::string& n, DType dtype) {
  std::vector<int64_t> shape = golden(n + "/shape").to_vector<int64_t>();
  std::vector<int64_t> dims = golden(n + "/dims").to_vector<int64_t>();
  auto axial = std::make_unique<nn::AxialPositionEmbedding>(shape, dims, dtype);
  std::map<std::string, Tensor> sd;
  for (size_t k = 0; k < shape.size(); ++k)
    sd[std::to_string(k)] = golden(n + "/weight/" + std::to_string(k)).to(dtype);
  axial->load_state_dict(sd);
  return axial;
}

struct Tolerances {
  Tolerance forward, grad;
};

// forward(L) and forward(x) of the case in `dtype` against the float64 references (compared in float64).
void check_case(const std::string& n, DType dtype, Tolerances tol) {
  std::unique_ptr<nn::AxialPositionEmbedding> owner = load_case(n, dtype);
  nn::AxialPositionEmbedding& axial = *owner;
  const size_t K = axial.weights.size();
  Tensor x_ref = golden(n + "/x");
  const int64_t L = x_ref.size(1);

  Tensor emb = axial.forward(L);
  ASSERT_EQ(emb.dtype(), dtype);
  expect_close(emb.to(kFloat64), golden(n + "/emb"), tol.forward, "forward(L)");
  sum(mul(emb, golden(n + "/probe_emb").to(dtype))).backward();
  for (size_t k = 0; k < K; ++k)
    expect_close(axial.weights[k].grad().to(kFloat64), golden(n + "/grad_emb/" + std::to_string(k)), tol.grad,
                 "forward(L): grad of weight " + std::to_string(k));

  axial.zero_grad();
  // detach: to(float64) returns the cached golden tensor itself, which must not start requiring grad.
  Tensor x = x_ref.to(dtype).detach().requires_grad_();
  Tensor out = axial.forward(x);
  expect_close(out.to(kFloat64), golden(n + "/out"), tol.forward, "forward(x)");
  sum(mul(out, golden(n + "/probe").to(dtype))).backward();
  expect_close(x.grad().to(kFloat64), golden(n + "/grad/x"), tol.grad, "forward(x): grad of x");
  for (size_t k = 0; k < K; ++k)
    expect_close(axial.weights[k].grad().to(kFloat64), golden(n + "/grad/" + std::to_string(k)), tol.grad,
                 "forward(x): grad of weight " + std::to_string(k));
}

}  // namespace

TEST(AxialPositionEmbeddingGolden, FileListsTheCasesAndTheirShapes) {
  const SafetensorsContents& file = test::golden_file(kGoldenFile);
  EXPECT_NE(file.metadata.at("torch_version"), "");
  std::ostringstream names;
  for (size_t i = 0; i < kCases.size(); ++i) names << (i ? " " : "") << kCases[i];
  EXPECT_EQ(file.metadata.at("cases"), names.str());
  // What the cases are meant to cover: 2 and 3 axes, a length shorter than the grid, batch > 1.
  bool two = false, three = false, short_length = false, batched = false;
  for (const std::string& n : kCases) {
    SCOPED_TRACE(n);
    std::unique_ptr<nn::AxialPositionEmbedding> owner = load_case(n, kFloat64);
    const nn::AxialPositionEmbedding& axial = *owner;
    const int64_t K = static_cast<int64_t>(axial.shape().size());
    two = two || K == 2;
    three = three || K == 3;
    Tensor x = golden(n + "/x");
    short_length = short_length || x.size(1) < axial.max_positions();
    batched = batched || x.size(0) > 1;
    EXPECT_EQ(x.size(2), axial.embedding_dim());
    // Loom's layout, which the generator reshapes into HF's (1, .., n_k, .., 1, d_k): parameter k is "<k>"
    // [n_k, d_k].
    std::vector<std::string> params;
    for (const auto& [name, p] : axial.named_parameters()) params.push_back(name + shape_str(p.shape()));
    std::vector<std::string> want;
    for (int64_t k = 0; k < K; ++k)
      want.push_back(std::to_string(k) + shape_str(Shape{axial.shape()[static_cast<size_t>(k)],
                                                         axial.dims()[static_cast<size_t>(k)]}));
    EXPECT_EQ(params, want);
  }
  EXPECT_TRUE(two && three && short_length && batched);
}

TEST(AxialPositionEmbeddingGolden, MatchesPyTorchInFloat64) {
  // The forward only copies weights, so it must be exact; gradients are sums in another order than torch's.
  for (const std::string& n : kCases) {
    SCOPED_TRACE(n);
    check_case(n, kFloat64, {{0, 0}, {1e-12, 1e-13}});
  }
}

TEST(AxialPositionEmbeddingGolden, MatchesPyTorchInFloat32) {
  // forward(L) is the weights rounded to float32 (exact against the rounded reference, within half an ulp of
  // the float64 one); x + emb adds one rounding; a gradient sums at most B * prod(n) / n_k float32 products.
  for (const std::string& n : kCases) {
    SCOPED_TRACE(n);
    check_case(n, kFloat32, {{2e-7, 1e-6}, {1e-5, 1e-5}});
  }
}

TEST(AxialPositionEmbeddingGolden, GradcheckWithRespectToTheWeights) {
  struct Config {
    std::vector<int64_t> shape, dims;
    int64_t length;
  };
  // Lengths that end mid-row (rows never reached get a zero gradient) and the whole grid.
  for (const Config& c : {Config{{2, 3}, {2, 3}, 5}, Config{{3, 2}, {1, 2}, 6},
                          Config{{2, 2, 3}, {1, 2, 2}, 10}, Config{{2, 1, 3}, {2, 1, 1}, 4}}) {
    SCOPED_TRACE("shape " + list_str(c.shape) + " length " + std::to_string(c.length));
    manual_seed(11);
    nn::AxialPositionEmbedding axial(c.shape, c.dims, kFloat64);
    Tensor x = leaf({2, c.length, axial.embedding_dim()}, 12);
    std::vector<Tensor> inputs = axial.weights;  // the same tensors: gradcheck perturbs the module's weights
    inputs.push_back(x);
    EXPECT_TRUE(gradcheck(
        [&axial, L = c.length](const std::vector<Tensor>& in) {
          return std::vector<Tensor>{axial.forward(L), axial.forward(in.back())};
        },
        inputs));
  }
}
