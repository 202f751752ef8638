// LSH hashing (ops/lsh.h): bucket range, scale invariance, the antipodal property, factorised buckets,
// agreement with an explicit projection/argmax reference, Philox determinism of the rotations, trax's default
// bucket counts, and argument errors.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "loom/loom.h"
#include "support/expect.h"

using namespace loom;
using test::expect_error;
using test::normal;

namespace {

std::vector<int64_t> values(const Tensor& t) {
  Tensor c = t.contiguous();
  return std::vector<int64_t>(c.data<int64_t>(), c.data<int64_t>() + c.numel());
}

}  // namespace

TEST(LshHash, RangeShapeAndScaleInvariance) {
  for (DType dt : {kFloat32, kFloat64}) {
    Tensor x = normal({2, 3, 40, 8}, 1, dt);
    Tensor r = lsh_rotations(8, 3, {16}, 7, 0, dt);
    Tensor b = lsh_hash(x, r, {16});
    EXPECT_EQ(b.shape(), Shape({2, 3, 3, 40}));
    EXPECT_EQ(b.dtype(), DType::Int64);
    std::vector<int64_t> v = values(b);
    for (int64_t x_ : v) EXPECT_TRUE(x_ >= 0 && x_ < 16);
    // Every bucket is used somewhere among 720 random vectors (the range is really [0, 16)).
    std::vector<int> seen(16, 0);
    for (int64_t x_ : v) seen[static_cast<size_t>(x_)] = 1;
    for (int s : seen) EXPECT_EQ(s, 1);
    // h(c x) = h(x) for c > 0 (powers of two: the products are exact, so even float32 ties cannot move).
    EXPECT_EQ(values(lsh_hash(mul(x, 4.0), r, {16})), v);
    EXPECT_EQ(values(lsh_hash(mul(x, 0.125), r, {16})), v);
    // h(-x) = (h(x) + nb / 2) mod nb.
    std::vector<int64_t> anti = values(lsh_hash(neg(x), r, {16}));
    for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(anti[i], (v[i] + 8) % 16);
  }
}

TEST(LshHash, AgreesWithExplicitArgmax) {
  // Reference straight from the definition, element by element: rot = x R_r, bucket = argmax([rot, -rot]),
  // per factor, combined as b1 + f1 b2.
  const int64_t h = 2, l = 30, d = 6, nr = 2;
  const std::vector<int64_t> nb{4, 6};
  Tensor x = normal({h, l, d}, 3);
  Tensor r = lsh_rotations(d, nr, nb, 11, 5, kFloat64, h);
  ASSERT_EQ(r.shape(), Shape({h, d, nr, 5}));
  std::vector<int64_t> got = values(lsh_hash(x, r, nb));  // [H, nr, L]
  const double* xp = x.data<double>();
  Tensor rc = r.contiguous();
  const double* rp = rc.data<double>();
  for (int64_t hh = 0; hh < h; ++hh)
    for (int64_t rr = 0; rr < nr; ++rr)
      for (int64_t t = 0; t < l; ++t) {
        int64_t bucket = 0, stride = 1, col = 0;
        for (int64_t f : nb) {
          int64_t best = 0;
          double best_v = -1e300;
          for (int64_t j = 0; j < f; ++j) {
            double dot = 0;
            for (int64_t k = 0; k < d; ++k)
              dot += xp[(hh * l + t) * d + k] * rp[((hh * d + k) * nr + rr) * 5 + col + j % (f / 2)];
            double val = j < f / 2 ? dot : -dot;
            if (val > best_v) best_v = val, best = j;
          }
          bucket += stride * best;
          stride *= f;
          col += f / 2;
        }
        EXPECT_EQ(got[static_cast<size_t>((hh * nr + rr) * l + t)], bucket) << hh << " " << rr << " " << t;
      }
}

TEST(LshHash, LongSequencesHashedInSlicesGiveTheSameBuckets) {
  // 2 heads x 2 rounds x 64 columns: slices of 2^22 / 256 = 16,384 rows, so 20,000 rows take two slices, while
  // each half of 10,000 rows is hashed in one pass. Each row's bucket depends on that row alone.
  const int64_t h = 2, l = 20000, d = 8, nr = 2;
  const std::vector<int64_t> nb{128};
  Tensor x = normal({h, l, d}, 1, kFloat64);
  Tensor r = lsh_rotations(d, nr, nb, 3, 0, kFloat64, h);
  Tensor whole = lsh_hash(x, r, nb);
  ASSERT_EQ(whole.shape(), Shape({h, nr, l}));
  Tensor halves = cat({lsh_hash(x.narrow(1, 0, l / 2), r, nb), lsh_hash(x.narrow(1, l / 2, l / 2), r, nb)}, -1);
  EXPECT_EQ(values(whole), values(halves));
}

TEST(LshHash, FactorisedBucketsCoverTheProduct) {
  Tensor x = normal({20000, 8}, 4);
  Tensor r = lsh_rotations(8, 1, {4, 2, 6}, 2, 0, kFloat64);
  EXPECT_EQ(r.shape(), Shape({8, 1, 6}));
  std::vector<int64_t> v = values(lsh_hash(x, r, {4, 2, 6}));
  std::vector<int> seen(48, 0);
  for (int64_t b : v) {
    ASSERT_TRUE(b >= 0 && b < 48) << b;
    seen[static_cast<size_t>(b)] = 1;
  }
  int used = 0;
  for (int s : seen) used += s;
  EXPECT_EQ(used, 48);
  // Each factor's antipodal property: h(-x) flips every factor's half, i.e. adds f/2 to each digit.
  std::vector<int64_t> anti = values(lsh_hash(neg(x), r, {4, 2, 6}));
  for (size_t i = 0; i < v.size(); ++i) {
    int64_t b = v[i], a = anti[i];
    EXPECT_EQ(a % 4, (b % 4 + 2) % 4);
    EXPECT_EQ(a / 4 % 2, (b / 4 % 2 + 1) % 2);
    EXPECT_EQ(a / 8, (b / 8 + 3) % 6);
  }
}

TEST(LshHash, RotationsAreDeterministicPerSeedAndOffset) {
  Tensor a = lsh_rotations(16, 2, {8, 4}, 42, 3, kFloat32, 4);
  Tensor b = lsh_rotations(16, 2, {8, 4}, 42, 3, kFloat32, 4);
  Tensor c = lsh_rotations(16, 2, {8, 4}, 43, 3, kFloat32, 4);
  Tensor e = lsh_rotations(16, 2, {8, 4}, 42, 4, kFloat32, 4);
  EXPECT_EQ(a.shape(), Shape({4, 16, 2, 6}));
  EXPECT_TRUE(loom::all(eq(a, b)).item<bool>());
  EXPECT_FALSE(loom::all(eq(a, c)).item<bool>());
  EXPECT_FALSE(loom::all(eq(a, e)).item<bool>());
  // The draw is randn at that Philox state: Gaussian, mean ~0 and variance ~1 over 768 numbers.
  EXPECT_TRUE(loom::all(eq(a, randn({4, 16, 2, 6}, PhiloxState{42, 3}, kFloat32))).item<bool>());
  Tensor big = lsh_rotations(64, 4, {64}, 9, 0, kFloat64);
  EXPECT_NEAR(loom::mean(big).item<double>(), 0.0, 0.05);
  EXPECT_NEAR(loom::var(big).item<double>(), 1.0, 0.08);
}

TEST(LshHash, DefaultBuckets) {
  EXPECT_EQ(lsh_default_buckets(64, 64), std::vector<int64_t>({2}));
  EXPECT_EQ(lsh_default_buckets(32, 64), std::vector<int64_t>({2}));
  EXPECT_EQ(lsh_default_buckets(4096, 64), std::vector<int64_t>({128}));
  EXPECT_EQ(lsh_default_buckets(65536, 256), std::vector<int64_t>({32, 16}));       // trax's example
  EXPECT_EQ(lsh_default_buckets(65536, 64), std::vector<int64_t>({64, 32}));        // n = 2048
  EXPECT_EQ(lsh_default_buckets(130 * 64 / 2, 64), std::vector<int64_t>({16, 8}));  // n = 130
}

TEST(LshHash, Errors) {
  Tensor x = normal({10, 8}, 1);
  expect_error([] { lsh_rotations(8, 1, {5}, 0, 0); }, {"lsh_rotations", "even", "[5]"});
  expect_error([] { lsh_rotations(8, 1, {}, 0, 0); }, {"lsh_rotations", "n_buckets is empty"});
  expect_error([] { lsh_rotations(8, 1, {4}, 0, 0, DType::Int64); }, {"lsh_rotations", "floating"});
  Tensor r = lsh_rotations(8, 2, {4}, 0, 0, kFloat64);
  expect_error([&] { lsh_hash(x, r, {8}); }, {"lsh_hash", "[d, n_hashes, 4]", "[8, 2, 2]"});
  expect_error([&] { lsh_hash(normal({10, 7}, 1), r, {4}); }, {"lsh_hash", "[10, 7]", "[8, 2, 2]"});
  expect_error([&] { lsh_hash(x.to(kFloat32), r, {4}); }, {"lsh_hash", "dtype"});
  Tensor rh = lsh_rotations(8, 2, {4}, 0, 0, kFloat64, 3);
  expect_error([&] { lsh_hash(normal({2, 10, 8}, 1), rh, {4}); }, {"lsh_hash", "2 heads", "have 3"});
  expect_error([] { lsh_default_buckets(0, 4); }, {"lsh_default_buckets", "positive"});
}
