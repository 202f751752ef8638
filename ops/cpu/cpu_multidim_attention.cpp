// Multi-dimensional (feature-wise) attention on the CPU: the kernels behind multi_dim_attention
// (ops/multidim_attention.h). Every (sequence n, query i, feature f) has its own softmax over the keys j, so the
// work is elementwise, not a GEMM: for each row (n, i) the kernel walks the allowed keys with one vector of
// features at a time held in registers (the query plus bias, the running sum of exp and the weighted value sum),
// and never stores a score. Scores c * tanh(x / c) lie in (-c, c), so exp needs no running max (biblosa.md P3).
//
// Forward writes out and inv_sum = 1 / sum_j exp(score) per (n, i, f) (0 for a row with no allowed key).
//
// Backward recomputes each score; with P = exp(score) * inv_sum and t = tanh(x / c):
//   dV[j] += P[i, j] dO[i]
//   dX[i, j] = P[i, j] dO[i] (V[j] - O[i]) (1 - t^2)      (softmax's backward, sum_j P[i, j] V[j] being O[i])
//   dQ[i] += dX[i, j],  dK[j] += dX[i, j]
// With at least as many sequences as threads, a task owns a whole sequence and computes each score once, walking
// the sequence one feature vector at a time so that the dK and dV accumulators and the key and value strips
// stay in L1 (accumulating into whole [L, d] rows instead made backward ~4x slower than forward at L = 128).
// With fewer sequences (one long one), a pass over queries writes dQ and a pass over keys writes dK and dV, each
// computing the scores again, so that every core has work. Every task writes only its own rows, so the result
// does not depend on the thread count (the two schedules may differ in the last bit: their sums run in another
// order).
#include <algorithm>
#include <cstring>
#include <vector>

#include "loom/core/parallel.h"
#include "loom/ops/cpu/cpu_backend.h"
#include "loom/ops/cpu/vec_math.h"
#include "loom/ops/multidim_attention_problem.h"

namespace loom {
namespace {

namespace vec = cpu::vec;

template <typename T>
using MultiDim = MultiDimProblem<T>;

// `count` (<= the lane count) elements from p as a vector, zeros after; and the matching store.
template <typename T>
inline vec::Vec<T> load(const T* p, int64_t count) {
  if (count == vec::kLanes<T>) {
    vec::Vec<T> x;
    std::memcpy(&x, p, sizeof(x));
    return x;
  }
  return vec::load_partial(p, count);
}
template <typename T>
inline void store(T* p, const vec::Vec<T>& x, int64_t count) {
  std::memcpy(p, &x, static_cast<size_t>(count) * sizeof(T));
}

// The problem's saved tensors and gradients for backward ([N, L, d], contiguous; gradients may be null).
template <typename T>
struct Backward {
  const T *go, *out, *inv;
  T *gq, *gk, *gv;
};

// ---- forward -----------------------------------------------------------------------------------------------

template <typename T>
void forward_row(const MultiDim<T>& a, int64_t b, int64_t i, T* out, T* inv_sum) {
  using V = vec::Vec<T>;
  constexpr int64_t W = vec::kLanes<T>;
  const int64_t row = (b * a.l + i) * a.d;
  int64_t begin, end, skip;
  a.keys(i, begin, end, skip);
  bool any = false;
  if (!a.query_blocked(b, i))
    for (int64_t j = begin; j < end && !any; ++j) any = j != skip && !a.padded(b, j);
  if (!any) {  // no allowed key: zeros, and inv_sum 0 makes every P of the row 0 in backward
    std::fill(out + row, out + row + a.d, T(0));
    std::fill(inv_sum + row, inv_sum + row + a.d, T(0));
    return;
  }
  const T* qi = a.q_at(b, i);
  for (int64_t f = 0; f < a.d; f += W) {
    const int64_t cnt = std::min(W, a.d - f);
    const V qb = load(qi + f, cnt) + load(a.bias + f, cnt);
    V sum{}, acc{};
    for (int64_t j = begin; j < end; ++j) {
      if (j == skip || a.padded(b, j)) continue;
      const V e = vec::exp(a.c * vec::tanh((load(a.k_at(b, j) + f, cnt) + qb) * a.inv_c));
      sum += e;
      acc += e * load(a.v_at(b, j) + f, cnt);
    }
    // Lanes past cnt hold exp(0) = 1 in sum: they are never stored.
    const V inv = T(1) / sum;
    store(out + row + f, acc * inv, cnt);
    store(inv_sum + row + f, inv, cnt);
  }
}

template <typename T>
void forward_impl(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias, const Tensor& padding,
                  AttentionDirection dir, double c, bool mask_queries, const Tensor& out, const Tensor& inv_sum) {
  MultiDim<T> a(q, k, v, bias, padding, dir, c, mask_queries);
  T* o = out.data<T>();
  T* inv = inv_sum.data<T>();
  // A row costs about L * d exp/tanh pairs; aim for chunks of ~32K of them.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, a.l * a.d));
  parallel_for(0, a.n * a.l, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) forward_row(a, r / a.l, r % a.l, o, inv);
  });
}

// ---- backward ----------------------------------------------------------------------------------------------

// The gradient terms of one score vector (query i, key j, features [f, f + W)), from the row's invariants.
template <typename T>
struct Pair {
  vec::Vec<T> pg;  // P[i, j] dO[i]
  vec::Vec<T> dx;  // dscore * (1 - t^2): the gradient of the score's argument
};

template <typename T>
inline Pair<T> pair_terms(const MultiDim<T>& a, const vec::Vec<T>& qb, const vec::Vec<T>& kj,
                          const vec::Vec<T>& vj, const vec::Vec<T>& inv_go, const vec::Vec<T>& oi) {
  const vec::Vec<T> t = vec::tanh((kj + qb) * a.inv_c);
  const vec::Vec<T> pg = vec::exp(a.c * t) * inv_go;
  return {pg, pg * (vj - oi) * (T(1) - t * t)};
}

// Everything for sequence b in one sweep: dQ, dK and dV (whichever is wanted). One vector of features at a time
// across the whole sequence, so that the dK and dV accumulators (scratch: 2 L vectors) and the key and value
// strips stay in L1 however long the sequence.
template <typename T>
void backward_sequence(const MultiDim<T>& a, const Backward<T>& g, int64_t b, vec::Vec<T>* scratch) {
  using V = vec::Vec<T>;
  constexpr int64_t W = vec::kLanes<T>;
  const int64_t base = b * a.l * a.d;
  V* dk = scratch;
  V* dv = scratch + a.l;
  for (int64_t f = 0; f < a.d; f += W) {
    const int64_t cnt = std::min(W, a.d - f);
    std::fill(dk, dk + 2 * a.l, V{});
    for (int64_t i = 0; i < a.l; ++i) {
      const int64_t row = base + i * a.d + f;
      int64_t begin, end, skip;
      a.keys(i, begin, end, skip);
      if (a.query_blocked(b, i)) end = begin;  // no allowed key: dQ[i] = 0, nothing else
      const V qb = load(a.q_at(b, i) + f, cnt) + load(a.bias + f, cnt);
      const V inv_go = load(g.inv + row, cnt) * load(g.go + row, cnt);
      const V oi = load(g.out + row, cnt);
      V dq{};
      for (int64_t j = begin; j < end; ++j) {
        if (j == skip || a.padded(b, j)) continue;
        const Pair<T> p = pair_terms(a, qb, load(a.k_at(b, j) + f, cnt), load(a.v_at(b, j) + f, cnt), inv_go, oi);
        dq += p.dx;
        dk[j] += p.dx;
        dv[j] += p.pg;
      }
      if (g.gq) store(g.gq + row, dq, cnt);
    }
    for (int64_t j = 0; j < a.l; ++j) {
      if (g.gk) store(g.gk + base + j * a.d + f, dk[j], cnt);
      if (g.gv) store(g.gv + base + j * a.d + f, dv[j], cnt);
    }
  }
}

// Split pass 1: dQ of row (b, i).
template <typename T>
void backward_query(const MultiDim<T>& a, const Backward<T>& g, int64_t b, int64_t i) {
  using V = vec::Vec<T>;
  constexpr int64_t W = vec::kLanes<T>;
  const int64_t row = (b * a.l + i) * a.d;
  int64_t begin, end, skip;
  a.keys(i, begin, end, skip);
  if (a.query_blocked(b, i)) end = begin;
  const T* qi = a.q_at(b, i);
  for (int64_t f = 0; f < a.d; f += W) {
    const int64_t cnt = std::min(W, a.d - f);
    const V qb = load(qi + f, cnt) + load(a.bias + f, cnt);
    const V inv_go = load(g.inv + row + f, cnt) * load(g.go + row + f, cnt);
    const V oi = load(g.out + row + f, cnt);
    V dq{};
    for (int64_t j = begin; j < end; ++j) {
      if (j == skip || a.padded(b, j)) continue;
      dq += pair_terms(a, qb, load(a.k_at(b, j) + f, cnt), load(a.v_at(b, j) + f, cnt), inv_go, oi).dx;
    }
    store(g.gq + row + f, dq, cnt);
  }
}

// Split pass 2: dK and dV of key (b, j).
template <typename T>
void backward_key(const MultiDim<T>& a, const Backward<T>& g, int64_t b, int64_t j) {
  using V = vec::Vec<T>;
  constexpr int64_t W = vec::kLanes<T>;
  const int64_t row = (b * a.l + j) * a.d;
  int64_t begin, end, skip;
  a.queries(j, begin, end, skip);
  if (a.padded(b, j)) end = begin;  // a padding key is seen by no query
  const T* kj = a.k_at(b, j);
  const T* vj = a.v_at(b, j);
  for (int64_t f = 0; f < a.d; f += W) {
    const int64_t cnt = std::min(W, a.d - f);
    const V kv = load(kj + f, cnt) + load(a.bias + f, cnt);  // the bias is folded in on the key side here
    const V vv = load(vj + f, cnt);
    V dk{}, dv{};
    for (int64_t i = begin; i < end; ++i) {
      if (i == skip || a.query_blocked(b, i)) continue;
      const int64_t qrow = (b * a.l + i) * a.d + f;
      const Pair<T> p = pair_terms(a, kv, load(a.q_at(b, i) + f, cnt), vv,
                                   load(g.inv + qrow, cnt) * load(g.go + qrow, cnt), load(g.out + qrow, cnt));
      dk += p.dx;
      dv += p.pg;
    }
    if (g.gk) store(g.gk + row + f, dk, cnt);
    if (g.gv) store(g.gv + row + f, dv, cnt);
  }
}

template <typename T>
void backward_impl(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                   const Tensor& padding, AttentionDirection dir, double c, bool mask_queries, const Tensor& out,
                   const Tensor& inv_sum, const Tensor& grad_q, const Tensor& grad_k, const Tensor& grad_v) {
  MultiDim<T> a(q, k, v, bias, padding, dir, c, mask_queries);
  auto ptr = [](const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; };
  Backward<T> g{grad_out.data<T>(), out.data<T>(), inv_sum.data<T>(), ptr(grad_q), ptr(grad_k), ptr(grad_v)};
  if (!g.gq && !g.gk && !g.gv) return;
  if (a.n >= get_num_threads() || in_parallel_region()) {
    parallel_for(0, a.n, 1, [&](int64_t lo, int64_t hi) {
      std::vector<vec::Vec<T>> scratch(static_cast<size_t>(2 * a.l));
      for (int64_t b = lo; b < hi; ++b) backward_sequence(a, g, b, scratch.data());
    });
    return;
  }
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, a.l * a.d));
  if (g.gq)
    parallel_for(0, a.n * a.l, grain, [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) backward_query(a, g, r / a.l, r % a.l);
    });
  if (g.gk || g.gv)
    parallel_for(0, a.n * a.l, grain, [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) backward_key(a, g, r / a.l, r % a.l);
    });
}

}  // namespace

void CpuBackend::multi_dim_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                                             const Tensor& padding, AttentionDirection direction, double c,
                                             bool mask_queries, const Tensor& out, const Tensor& inv_sum) {
  if (out.numel() == 0) return;
  LOOM_DISPATCH_FLOATING(q.dtype(), "multi_dim_attention", [&] {
    forward_impl<scalar_t>(q, k, v, bias, padding, direction, c, mask_queries, out, inv_sum);
  });
}

void CpuBackend::multi_dim_attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k,
                                              const Tensor& v, const Tensor& bias, const Tensor& padding,
                                              AttentionDirection direction, double c, bool mask_queries,
                                              const Tensor& out, const Tensor& inv_sum, const Tensor& grad_q,
                                              const Tensor& grad_k, const Tensor& grad_v) {
  if (q.numel() == 0) return;
  LOOM_DISPATCH_FLOATING(q.dtype(), "multi_dim_attention backward", [&] {
    backward_impl<scalar_t>(grad_out, q, k, v, bias, padding, direction, c, mask_queries, out, inv_sum, grad_q,
                            grad_k, grad_v);
  });
}

}  // namespace loom
