// Indexing and ordering kernels on the CPU: gather/scatter, index_select/index_add, sort/topk, arange,
// tril/triu. Work is split over independent rows (every position of the non-indexed dims), never over index
// entries, so accumulating kernels are race-free and give the same result on any number of threads.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <utility>
#include <vector>

#include "loom/core/parallel.h"
#include "loom/ops/cpu/cpu_backend.h"
#include "loom/ops/cpu/strided.h"
#include "loom/ops/index_views.h"

namespace loom {
namespace {

constexpr int64_t kGrain = 1 << 15;

template <typename T>
inline void accumulate(T& dst, T v) {
  if constexpr (std::is_same_v<T, bool>) {
    dst = dst || v;
  } else {
    dst += v;
  }
}

// --- gather / scatter -----------------------------------------------------------------------------------

template <typename T>
void gather_kernel(const Tensor& in, int64_t dim, const Tensor& index, const Tensor& out) {
  cpu::StridedLoop loop({out, index, row_starts(in, index.shape(), dim)});
  const int64_t sd = in.stride(dim);
  cpu::for_each_run(loop, kGrain, [sd](char** p, const int64_t* st, int64_t n) {
    T* o = reinterpret_cast<T*>(p[0]);
    const int64_t* idx = reinterpret_cast<const int64_t*>(p[1]);
    const T* row = reinterpret_cast<const T*>(p[2]);
    if (st[0] == 1 && st[1] == 1 && st[2] == 0) {  // gather along the last dim: one row, many picks
      for (int64_t i = 0; i < n; ++i) o[i] = row[idx[i] * sd];
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * st[0]] = row[i * st[2] + idx[i * st[1]] * sd];
    }
  });
}

// For each row (fixed non-indexed coordinates) the index entries j are applied in order, so repeated indices
// accumulate deterministically; rows are spread over threads and the run over rows is the inner loop, which
// keeps the common layouts (index_add into [V, D] rows, scatter along dim 0) streaming through memory.
template <typename T, bool kAccumulate>
void scatter_kernel(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) {
  const Shape& shape = index.shape();
  const int64_t n = shape[dim];
  const int64_t sd = self.stride(dim), si = index.stride(dim), ss = src.stride(dim);
  cpu::StridedLoop loop({rows_of(self, shape, dim), rows_of(index, shape, dim), rows_of(src, shape, dim)});
  auto apply = [](T& dst, T v) {
    if constexpr (kAccumulate) {
      accumulate(dst, v);
    } else {
      dst = v;
    }
  };
  cpu::for_each_run(loop, std::max<int64_t>(1, kGrain / n), [&](char** p, const int64_t* st, int64_t len) {
    T* dst = reinterpret_cast<T*>(p[0]);
    const int64_t* idx = reinterpret_cast<const int64_t*>(p[1]);
    const T* s = reinterpret_cast<const T*>(p[2]);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t* idx_j = idx + j * si;
      const T* s_j = s + j * ss;
      if (st[1] == 0) {  // one index for the whole run (index_add, one_hot): a plain row update
        T* d = dst + idx_j[0] * sd;
        if (st[0] == 1 && st[2] == 1) {
          for (int64_t i = 0; i < len; ++i) apply(d[i], s_j[i]);
        } else {
          for (int64_t i = 0; i < len; ++i) apply(d[i * st[0]], s_j[i * st[2]]);
        }
      } else {
        for (int64_t i = 0; i < len; ++i) apply(dst[i * st[0] + idx_j[i * st[1]] * sd], s_j[i * st[2]]);
      }
    }
  });
}

// --- sorting --------------------------------------------------------------------------------------------

// Order-preserving unsigned keys: comparing keys compares values, with every NaN above +inf (PyTorch sorts
// NaN last ascending and first descending) and -0.0 equal to +0.0 so that stability holds across signed
// zeros.
template <typename T>
struct SortKey;
template <>
struct SortKey<float> {
  using type = uint32_t;
  static type of(float x) {
    if (std::isnan(x)) return ~type(0);
    uint32_t u = std::bit_cast<uint32_t>(x == 0 ? 0.0f : x);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  }
};
template <>
struct SortKey<double> {
  using type = uint64_t;
  static type of(double x) {
    if (std::isnan(x)) return ~type(0);
    uint64_t u = std::bit_cast<uint64_t>(x == 0 ? 0.0 : x);
    return (u & (uint64_t(1) << 63)) ? ~u : (u | (uint64_t(1) << 63));
  }
};
template <>
struct SortKey<int64_t> {
  using type = uint64_t;
  static type of(int64_t x) { return static_cast<uint64_t>(x) ^ (uint64_t(1) << 63); }
};
template <>
struct SortKey<int32_t> {
  using type = uint32_t;
  static type of(int32_t x) { return static_cast<uint32_t>(x) ^ 0x80000000u; }
};
template <>
struct SortKey<bool> {
  using type = uint32_t;
  static type of(bool x) { return x; }
};

template <typename K>
struct SortScratch {
  std::vector<K> keys, keys2;
  std::vector<int64_t> idx, idx2;
  std::vector<int64_t> counts;
  std::vector<std::pair<K, int64_t>> pairs;  // topk's selection
};

// Scratch for rows of n keys. Rows up to 1M keys reuse a per-thread buffer, since fresh large allocations
// would page-fault on every call (that alone tripled the cost of sorting 64K-key rows); longer rows allocate
// their own so a one-off huge sort does not pin its memory to the thread.
template <typename K>
SortScratch<K>& scratch_for(int64_t n, SortScratch<K>& local) {
  thread_local SortScratch<K> cached;
  return n <= (int64_t(1) << 20) ? cached : local;
}

// Stable ascending sort of keys[0, n); returns the permutation (entry j = original position of the j-th key).
// Small rows use a comparison sort; narrow key ranges (bucket ids) one counting pass; the rest an LSD radix
// sort over 8-bit digits of key - min that skips digits every key shares.
template <typename K>
const int64_t* stable_sort_keys(int64_t n, SortScratch<K>& s) {
  K* keys = s.keys.data();
  s.idx.resize(n);
  std::iota(s.idx.begin(), s.idx.end(), int64_t(0));
  if (n < 64) {
    std::stable_sort(s.idx.begin(), s.idx.end(), [keys](int64_t a, int64_t b) { return keys[a] < keys[b]; });
    return s.idx.data();
  }
  K lo = keys[0], hi = keys[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = std::min(lo, keys[i]);
    hi = std::max(hi, keys[i]);
  }
  if (lo == hi) return s.idx.data();
  const K range = hi - lo;
  s.idx2.resize(n);
  if (range < static_cast<K>(std::max<int64_t>(n, 4096))) {
    s.counts.assign(static_cast<size_t>(range) + 2, 0);
    int64_t* count = s.counts.data() + 1;
    for (int64_t i = 0; i < n; ++i) ++count[keys[i] - lo];
    std::partial_sum(s.counts.begin(), s.counts.end(), s.counts.begin());
    count = s.counts.data();  // count[k] is now the first output slot of key lo + k
    for (int64_t i = 0; i < n; ++i) s.idx2[count[keys[i] - lo]++] = i;
    return s.idx2.data();
  }
  const int passes = (std::bit_width(range) + 7) / 8;
  s.counts.assign(static_cast<size_t>(passes) * 256, 0);
  for (int64_t i = 0; i < n; ++i) {
    K k = keys[i] - lo;
    for (int p = 0; p < passes; ++p) ++s.counts[p * 256 + ((k >> (8 * p)) & 0xff)];
  }
  s.keys2.resize(n);
  K* k_in = keys;
  K* k_out = s.keys2.data();
  int64_t* i_in = s.idx.data();
  int64_t* i_out = s.idx2.data();
  for (int p = 0; p < passes; ++p) {
    int64_t* count = s.counts.data() + p * 256;
    if (count[((k_in[0] - lo) >> (8 * p)) & 0xff] == n) continue;  // every key has this digit
    int64_t sum = 0;
    for (int b = 0; b < 256; ++b) {  // exclusive prefix sum: first output slot of each digit
      int64_t c = count[b];
      count[b] = sum;
      sum += c;
    }
    for (int64_t i = 0; i < n; ++i) {
      int64_t slot = count[((k_in[i] - lo) >> (8 * p)) & 0xff]++;
      k_out[slot] = k_in[i];
      i_out[slot] = i_in[i];
    }
    std::swap(k_in, k_out);
    std::swap(i_in, i_out);
  }
  return i_in;
}

// Loads one row's keys into s.keys; `flip` complements them so that ascending key order is the wanted order.
template <typename T, typename K>
void load_keys(const T* x, int64_t stride, int64_t n, bool flip, SortScratch<K>& s) {
  s.keys.resize(n);
  const K mask = flip ? ~K(0) : K(0);
  for (int64_t j = 0; j < n; ++j) s.keys[j] = SortKey<T>::of(x[j * stride]) ^ mask;
}

template <typename T>
void sort_kernel(const Tensor& in, int64_t dim, bool descending, const Tensor& values,
                 const Tensor& indices) {
  using K = typename SortKey<T>::type;
  const Shape& shape = in.shape();
  const int64_t n = shape[dim];
  const int64_t sx = in.stride(dim), sv = values.stride(dim), si = indices.stride(dim);
  cpu::StridedLoop loop({rows_of(values, shape, dim), rows_of(indices, shape, dim), rows_of(in, shape, dim)});
  cpu::for_each_run(loop, std::max<int64_t>(1, kGrain / n), [&](char** p, const int64_t* st, int64_t len) {
    SortScratch<K> local;
    SortScratch<K>& scratch = scratch_for(n, local);
    for (int64_t r = 0; r < len; ++r) {
      const T* x = reinterpret_cast<const T*>(p[2]) + r * st[2];
      T* v = reinterpret_cast<T*>(p[0]) + r * st[0];
      int64_t* ix = reinterpret_cast<int64_t*>(p[1]) + r * st[1];
      load_keys(x, sx, n, descending, scratch);
      const int64_t* perm = stable_sort_keys(n, scratch);
      for (int64_t j = 0; j < n; ++j) {
        v[j * sv] = x[perm[j] * sx];
        ix[j * si] = perm[j];
      }
    }
  });
}

template <typename T>
void topk_kernel(const Tensor& in, int64_t k, int64_t dim, bool largest, const Tensor& values,
                 const Tensor& indices) {
  using K = typename SortKey<T>::type;
  const Shape& shape = in.shape();
  const int64_t n = shape[dim];
  const int64_t sx = in.stride(dim), sv = values.stride(dim), si = indices.stride(dim);
  // A large k costs a full sort anyway; a small one only a selection (a heap for the smallest k, as in
  // sampling from logits) plus a sort of the k winners.
  const bool full_sort = n < 64 || k * 4 >= n;
  constexpr int64_t kHeapTopk = 256;
  cpu::StridedLoop loop({rows_of(values, shape, dim), rows_of(indices, shape, dim), rows_of(in, shape, dim)});
  cpu::for_each_run(loop, std::max<int64_t>(1, kGrain / n), [&](char** p, const int64_t* st, int64_t len) {
    SortScratch<K> local;
    SortScratch<K>& scratch = scratch_for(n, local);
    auto& pairs = scratch.pairs;
    for (int64_t r = 0; r < len; ++r) {
      const T* x = reinterpret_cast<const T*>(p[2]) + r * st[2];
      T* v = reinterpret_cast<T*>(p[0]) + r * st[0];
      int64_t* ix = reinterpret_cast<int64_t*>(p[1]) + r * st[1];
      load_keys(x, sx, n, largest, scratch);
      if (full_sort) {
        const int64_t* perm = stable_sort_keys(n, scratch);
        for (int64_t j = 0; j < k; ++j) {
          v[j * sv] = x[perm[j] * sx];
          ix[j * si] = perm[j];
        }
        continue;
      }
      // (key, position) pairs are totally ordered, so ties go to the lower position whatever the selection
      // does.
      const K* keys = scratch.keys.data();
      if (k <= kHeapTopk) {
        // A max-heap of the best k so far: most keys lose one comparison against its top. A later position
        // never beats an equal key already held, so a strict key comparison suffices.
        pairs.resize(k);
        for (int64_t j = 0; j < k; ++j) pairs[j] = {keys[j], j};
        std::make_heap(pairs.begin(), pairs.end());
        for (int64_t j = k; j < n; ++j) {
          if (keys[j] < pairs.front().first) {
            std::pop_heap(pairs.begin(), pairs.end());
            pairs.back() = {keys[j], j};
            std::push_heap(pairs.begin(), pairs.end());
          }
        }
        std::sort_heap(pairs.begin(), pairs.end());
      } else {
        pairs.resize(n);
        for (int64_t j = 0; j < n; ++j) pairs[j] = {keys[j], j};
        std::nth_element(pairs.begin(), pairs.begin() + k, pairs.end());
        std::sort(pairs.begin(), pairs.begin() + k);
      }
      for (int64_t j = 0; j < k; ++j) {
        v[j * sv] = x[pairs[j].second * sx];
        ix[j * si] = pairs[j].second;
      }
    }
  });
}

// --- triangle -------------------------------------------------------------------------------------------

// Element offset of batch `b` (row-major over every dim but the last two).
int64_t batch_offset(const Tensor& t, int64_t b) {
  int64_t off = 0;
  for (int64_t d = t.dim() - 3; d >= 0; --d) {
    off += (b % t.size(d)) * t.stride(d);
    b /= t.size(d);
  }
  return off;
}

template <typename T>
void triangle_kernel(const Tensor& in, int64_t diagonal, bool upper, const Tensor& out) {
  const int64_t nd = in.dim();
  const int64_t m = in.size(nd - 2), n = in.size(nd - 1);
  const int64_t rx = in.stride(nd - 2), cx = in.stride(nd - 1);
  const int64_t ry = out.stride(nd - 2), cy = out.stride(nd - 1);
  const T* x0 = in.data<T>();
  T* y0 = out.data<T>();
  parallel_for(0, in.numel() / n, std::max<int64_t>(1, kGrain / n), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t b = r / m, i = r % m;
      const T* x = x0 + batch_offset(in, b) + i * rx;
      T* y = y0 + batch_offset(out, b) + i * ry;
      // Columns [keep_lo, keep_hi) satisfy j - i <= diagonal (lower) or j - i >= diagonal (upper).
      const int64_t keep_lo = upper ? std::clamp<int64_t>(i + diagonal, 0, n) : 0;
      const int64_t keep_hi = upper ? n : std::clamp<int64_t>(i + diagonal + 1, 0, n);
      for (int64_t j = 0; j < keep_lo; ++j) y[j * cy] = T(0);
      for (int64_t j = keep_lo; j < keep_hi; ++j) y[j * cy] = x[j * cx];
      for (int64_t j = keep_hi; j < n; ++j) y[j * cy] = T(0);
    }
  });
}

}  // namespace

void CpuBackend::gather(const Tensor& in, int64_t dim, const Tensor& index, const Tensor& out) {
  if (out.numel() == 0) return;
  LOOM_DISPATCH_ALL(in.dtype(), "gather", [&] { gather_kernel<scalar_t>(in, dim, index, out); });
}

void CpuBackend::scatter(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src,
                         bool accumulate) {
  if (index.numel() == 0) return;
  LOOM_DISPATCH_ALL(self.dtype(), "scatter", [&] {
    if (accumulate) {
      scatter_kernel<scalar_t, true>(self, dim, index, src);
    } else {
      scatter_kernel<scalar_t, false>(self, dim, index, src);
    }
  });
}

void CpuBackend::index_select(const Tensor& in, int64_t dim, const Tensor& index, const Tensor& out) {
  if (out.numel() == 0) return;
  const int64_t k = index.numel();
  const int64_t n = in.size(dim);
  int64_t inner = 1;
  for (int64_t d = dim + 1; d < in.dim(); ++d) inner *= in.size(d);
  // Whole rows of at least a cache line's worth of elements (embedding lookups): memcpy each picked row.
  if (in.is_contiguous() && out.is_contiguous() && inner * static_cast<int64_t>(in.element_size()) >= 64) {
    const int64_t outer = out.numel() / (k * inner);
    const size_t row_bytes = static_cast<size_t>(inner) * in.element_size();
    const char* src = static_cast<const char*>(in.data_ptr());
    char* dst = static_cast<char*>(out.data_ptr());
    const int64_t* idx = index.data<int64_t>();
    const int64_t is = index.stride(0);
    parallel_for(0, outer * k, std::max<int64_t>(1, kGrain / inner), [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        const int64_t o = r / k, j = r % k;
        std::memcpy(dst + r * row_bytes, src + (o * n + idx[j * is]) * row_bytes, row_bytes);
      }
    });
    return;
  }
  Shape strides(out.dim(), 0);
  strides[dim] = index.stride(0);
  gather(in, dim, index.as_strided(out.shape(), strides, index.offset()), out);
}

void CpuBackend::index_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) {
  if (src.numel() == 0) return;
  // index_add is a scatter-accumulate whose index is the 1-d index broadcast over src's other dims.
  Shape strides(src.dim(), 0);
  strides[dim] = index.stride(0);
  scatter(self, dim, index.as_strided(src.shape(), strides, index.offset()), src, true);
}

void CpuBackend::sort(const Tensor& in, int64_t dim, bool descending, const Tensor& values,
                      const Tensor& indices) {
  if (in.numel() == 0) return;
  LOOM_DISPATCH_ALL(in.dtype(), "sort", [&] { sort_kernel<scalar_t>(in, dim, descending, values, indices); });
}

void CpuBackend::topk(const Tensor& in, int64_t k, int64_t dim, bool largest, const Tensor& values,
                      const Tensor& indices) {
  if (values.numel() == 0) return;
  LOOM_DISPATCH_ALL(in.dtype(), "topk", [&] { topk_kernel<scalar_t>(in, k, dim, largest, values, indices); });
}

void CpuBackend::arange(double start, double step, const Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  const int64_t s = out.stride(0);
  LOOM_DISPATCH_NUMERIC(out.dtype(), "arange", [&] {
    scalar_t* p = out.data<scalar_t>();
    parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) {
      if constexpr (std::is_floating_point_v<scalar_t>) {
        for (int64_t i = lo; i < hi; ++i)
          p[i * s] = static_cast<scalar_t>(start + static_cast<double>(i) * step);
      } else {
        // Integer ranges use the truncated start and step, as PyTorch does.
        const scalar_t a = static_cast<scalar_t>(start), b = static_cast<scalar_t>(step);
        for (int64_t i = lo; i < hi; ++i) p[i * s] = static_cast<scalar_t>(a + static_cast<scalar_t>(i) * b);
      }
    });
  });
}

void CpuBackend::triangle(const Tensor& in, int64_t diagonal, bool upper, const Tensor& out) {
  if (in.numel() == 0) return;
  LOOM_DISPATCH_ALL(in.dtype(), "tril/triu", [&] { triangle_kernel<scalar_t>(in, diagonal, upper, out); });
}

}  // namespace loom
