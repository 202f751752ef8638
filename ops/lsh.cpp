// LSH hashing: Philox-drawn Gaussian rotations and the argmax bucket of each vector, per hash round and
// factor.
#include "loom/ops/lsh.h"

#include <cmath>

#include "loom/autograd/grad_mode.h"
#include "loom/core/error.h"
#include "loom/ops/elementwise.h"
#include "loom/ops/factory.h"
#include "loom/ops/linalg.h"
#include "loom/ops/reduce.h"
#include "loom/ops/shape_ops.h"

namespace loom {
namespace {

int64_t rotation_columns(const std::vector<int64_t>& n_buckets) {
  int64_t k = 0;
  for (int64_t f : n_buckets) k += f / 2;
  return k;
}

}  // namespace

int64_t lsh_total_buckets(const std::vector<int64_t>& n_buckets, const char* op) {
  LOOM_CHECK(!n_buckets.empty(), op, ": n_buckets is empty (give one even count or even factors)");
  int64_t total = 1;
  for (int64_t f : n_buckets) {
    LOOM_CHECK(f >= 2 && f % 2 == 0, op,
               ": every bucket count or factor must be even and >= 2, got n_buckets ", list_str(n_buckets));
    LOOM_CHECK(total <= (int64_t{1} << 40) / f, op, ": n_buckets ", list_str(n_buckets),
               " gives too many buckets");
    total *= f;
  }
  return total;
}

Tensor lsh_rotations(int64_t dim, int64_t n_hashes, const std::vector<int64_t>& n_buckets, uint64_t seed,
                     uint64_t offset, DType dtype, int64_t n_heads) {
  const char* op = "lsh_rotations";
  lsh_total_buckets(n_buckets, op);
  LOOM_CHECK(dim > 0 && n_hashes > 0 && n_heads >= 0, op,
             ": expected dim > 0, n_hashes > 0 and n_heads >= 0, got dim ", dim, ", n_hashes ", n_hashes,
             ", n_heads ", n_heads);
  LOOM_CHECK(is_floating(dtype), op, ": expected a floating dtype, got ", dtype_name(dtype));
  Shape shape{dim, n_hashes, rotation_columns(n_buckets)};
  if (n_heads > 0) shape.insert(0, n_heads);
  NoGradGuard no_grad;
  return randn(shape, PhiloxState{seed, offset}, dtype);
}

Tensor lsh_hash(const Tensor& x, const Tensor& rotations, const std::vector<int64_t>& n_buckets) {
  const char* op = "lsh_hash";
  lsh_total_buckets(n_buckets, op);
  LOOM_CHECK(x.defined() && rotations.defined(), op, ": x and rotations must be defined");
  LOOM_CHECK(is_floating(x.dtype()) && x.dtype() == rotations.dtype(), op,
             ": x and rotations must share one floating dtype, got ", describe(x), " and ",
             describe(rotations));
  LOOM_CHECK(x.device() == rotations.device(), op, ": x is on ", x.device(), " but rotations are on ",
             rotations.device());
  const int64_t k = rotation_columns(n_buckets);
  const bool per_head = rotations.dim() == 4;
  LOOM_CHECK((rotations.dim() == 3 || per_head) && rotations.size(-1) == k, op,
             ": expected rotations [d, n_hashes, ", k, "] or [H, d, n_hashes, ", k, "] for n_buckets ",
             list_str(n_buckets), ", got shape ", rotations.shape());
  const int64_t d = rotations.size(-3), nr = rotations.size(-2);
  LOOM_CHECK(x.dim() >= (per_head ? 3 : 2) && x.size(-1) == d, op, ": x of shape ", x.shape(),
             " does not match rotations of shape ", rotations.shape(),
             per_head ? " (expected x [..., H, L, d])" : " (expected x [..., L, d])");
  if (per_head)
    LOOM_CHECK(x.size(-3) == rotations.size(0), op, ": x of shape ", x.shape(), " has ", x.size(-3),
               " heads but rotations of shape ", rotations.shape(), " have ", rotations.size(0));

  NoGradGuard no_grad;
  Tensor r = per_head ? rotations.reshape({rotations.size(0), d, nr * k}) : rotations.reshape({d, nr * k});
  Shape rot_shape = x.shape();  // [..., L, d] -> [..., L, nr, K]
  rot_shape[rot_shape.size() - 1] = nr;
  rot_shape.push_back(k);
  Tensor rot = matmul(x, r).view(rot_shape);  // [..., L, nr, K]
  Tensor bucket;
  int64_t col = 0, stride = 1;
  for (int64_t f : n_buckets) {
    Tensor part = rot.narrow(-1, col, f / 2);
    Tensor b = argmax(cat({part, neg(part)}, -1), -1);  // [..., L, nr], in [0, f)
    bucket = bucket.defined() ? add(bucket, mul(b, static_cast<double>(stride))) : b;
    col += f / 2;
    stride *= f;
  }
  return bucket.transpose(-2, -1).contiguous();  // [..., nr, L]
}

std::vector<int64_t> lsh_default_buckets(int64_t seq_len, int64_t chunk_len) {
  LOOM_CHECK(seq_len > 0 && chunk_len > 0, "lsh_default_buckets: expected positive lengths, got L ", seq_len,
             " and chunk_len ", chunk_len);
  const int64_t n = 2 * std::max<int64_t>(1, seq_len / chunk_len);
  if (n <= 128) return {n};
  int64_t f1 = 1;
  while (f1 * f1 < n) f1 *= 2;  // 2^ceil(log2(sqrt(n))): the smallest power of two with f1^2 >= n
  return {f1, 2 * (n / (2 * f1))};
}

}  // namespace loom
