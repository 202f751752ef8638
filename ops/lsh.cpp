// LSH hashing: Philox-drawn Gaussian rotations and the argmax bucket of each vector, per hash round and
// factor.
#include "loom/ops/lsh.h"

#include <algorithm>
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
  // The projections of all rows at once would be [..., L, nr, K] floats, and the argmax's [part, -part] twice
  // that: at a million positions with 128 x 128 buckets, 10 KB per position, more than the rest of an LSH
  // layer's training step. Rows are hashed in slices of about kSliceValues projected values instead (the same
  // buckets: each row's projection and argmax do not depend on the other rows).
  constexpr int64_t kSliceValues = int64_t{1} << 22;
  const int64_t l = x.size(-2), others = x.numel() / std::max<int64_t>(1, l * d);
  const int64_t rows = std::max<int64_t>(1, kSliceValues / std::max<int64_t>(1, others * nr * k));
  auto hash_rows = [&](const Tensor& xs) {
    Shape rot_shape = xs.shape();  // [..., n, d] -> [..., n, nr, K]
    rot_shape[rot_shape.size() - 1] = nr;
    rot_shape.push_back(k);
    Tensor rot = matmul(xs, r).view(rot_shape);  // [..., n, nr, K]
    Tensor bucket;
    int64_t col = 0, stride = 1;
    for (int64_t f : n_buckets) {
      Tensor part = rot.narrow(-1, col, f / 2);
      Tensor b = argmax(cat({part, neg(part)}, -1), -1);  // [..., n, nr], in [0, f)
      bucket = bucket.defined() ? add(bucket, mul(b, static_cast<double>(stride))) : b;
      col += f / 2;
      stride *= f;
    }
    return bucket.transpose(-2, -1);  // [..., nr, n]
  };
  if (rows >= l) return hash_rows(x).contiguous();
  Shape out_shape = x.shape();  // [..., nr, L]
  out_shape[out_shape.size() - 2] = nr;
  out_shape[out_shape.size() - 1] = l;
  Tensor out = Tensor::empty(out_shape, {DType::Int64, x.device()});
  for (int64_t start = 0; start < l; start += rows) {
    const int64_t n = std::min(rows, l - start);
    out.narrow(-1, start, n).copy_(hash_rows(x.narrow(-2, start, n)));
  }
  return out;
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
