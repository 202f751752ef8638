// nn::LSHSelfAttention: HF's parameter names and shapes, the layer equal to lsh_attention over its own
// projections, bucket replay (explicit, and by rewinding the generator as a recompute does), gradients to every
// weight (float64 gradcheck with the buckets frozen), and its errors.
#include <gtest/gtest.h>

#include "loom/loom.h"
#include "support/expect.h"

using namespace loom;
using loom::test::expect_close;
using loom::test::expect_error;
using loom::test::identical;
using loom::test::normal;

namespace {

nn::LSHSelfAttentionOptions small_options() {
  nn::LSHSelfAttentionOptions o;
  o.d_model = 12;
  o.num_heads = 2;
  o.head_dim = 4;
  o.chunk_len = 4;
  o.n_hashes = 2;
  o.n_buckets = {4};
  return o;
}

}  // namespace

TEST(LSHSelfAttention, ParametersFollowHuggingFace) {
  nn::LSHSelfAttention layer(small_options(), {DType::Float64});
  auto params = layer.named_parameters();
  ASSERT_EQ(params.size(), 3u);
  EXPECT_EQ(params[0].first, "query_key.weight");
  EXPECT_EQ(params[1].first, "value.weight");
  EXPECT_EQ(params[2].first, "output.weight");
  EXPECT_EQ(params[0].second.shape(), Shape({8, 12}));
  EXPECT_EQ(params[2].second.shape(), Shape({12, 8}));
}

// The layer is exactly: shared projection, heads, lsh_attention with the layer's buckets, merge, output.
TEST(LSHSelfAttention, EqualsTheOpOverItsProjections) {
  manual_seed(3);
  nn::LSHSelfAttention layer(small_options(), {DType::Float64});
  Tensor x = normal({2, 16, 12}, 1);
  Tensor pad = zeros({2, 16}, {DType::Bool});
  pad.narrow(1, 13, 3).narrow(0, 1, 1).fill_(1.0);
  Tensor y = layer.forward(x, pad);
  ASSERT_TRUE(layer.last_buckets().defined());
  EXPECT_EQ(layer.last_buckets().shape(), Shape({2, 2, 2, 16}));

  auto heads = [&](const Tensor& w) { return matmul(x, w.transpose(0, 1)).view({2, 16, 2, 4}).transpose(1, 2); };
  LshAttentionOptions o;
  o.chunk_len = 4;
  o.n_hashes = 2;
  o.n_buckets = {4};
  Tensor a = lsh_attention(heads(layer.query_key->weight), heads(layer.value->weight), o, pad, layer.last_buckets()).out;
  Tensor want = matmul(a.transpose(1, 2).reshape({2, 16, 8}), layer.output->weight.transpose(0, 1));
  expect_close(y, want, 1e-12, 1e-12, "layer vs op");
}

TEST(LSHSelfAttention, ReplaysBucketsExplicitlyAndByGeneratorRewind) {
  manual_seed(5);
  nn::LSHSelfAttention layer(small_options());
  Tensor x = normal({1, 32, 12}, 2, kFloat32);
  PhiloxState before = default_generator().state();
  Tensor y1 = layer.forward(x);
  Tensor b1 = layer.last_buckets();
  Tensor y_fresh = layer.forward(x);  // new rotations: different buckets (almost surely) and output
  EXPECT_FALSE(identical(layer.last_buckets(), b1));
  EXPECT_FALSE(identical(y_fresh, y1));
  EXPECT_TRUE(identical(layer.forward(x, Tensor(), b1), y1));  // explicit replay
  {
    GeneratorStateGuard rewind(before);  // what a recompute does
    EXPECT_TRUE(identical(layer.forward(x), y1));
    EXPECT_TRUE(identical(layer.last_buckets(), b1));
  }
}

// Gradients to the input and to every weight, the shared query/key weight through both its query and its key
// path, against finite differences with the buckets frozen.
TEST(LSHSelfAttention, GradcheckWithFrozenBuckets) {
  manual_seed(7);
  nn::LSHSelfAttentionOptions opts = small_options();
  opts.d_model = 6;
  opts.head_dim = 3;
  opts.causal = true;
  nn::LSHSelfAttention layer(opts, {DType::Float64});
  Tensor x = normal({1, 8, 6}, 4);
  Tensor buckets;
  {
    NoGradGuard no_grad;
    layer.forward(x);
    buckets = layer.last_buckets();
  }
  std::vector<Tensor> inputs = {x.clone().requires_grad_(), layer.query_key->weight, layer.value->weight,
                                layer.output->weight};
  // inputs[1..3] are the layer's registered weights themselves, which gradcheck perturbs in place.
  auto fn = [&](const std::vector<Tensor>& in) { return layer.forward(in[0], Tensor(), buckets); };
  EXPECT_TRUE(gradcheck(fn, inputs));
}

TEST(LSHSelfAttention, Errors) {
  nn::LSHSelfAttention layer(small_options());
  expect_error([&] { layer.forward(zeros({1, 16, 10})); }, {"LSHSelfAttention(d_model=12)", "[1, 16, 10]"});
  expect_error([&] { layer.forward(zeros({1, 18, 12})); }, {"lsh_attention", "multiple of chunk_len = 4"});
  nn::LSHSelfAttentionOptions bad = small_options();
  bad.head_dim = -1;
  bad.num_heads = 5;
  expect_error([&] { nn::LSHSelfAttention l(bad); }, {"LSHSelfAttention", "not divisible by num_heads 5"});
}
