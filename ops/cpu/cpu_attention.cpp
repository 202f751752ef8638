// Fused scaled-dot-product attention on the CPU, FlashAttention-2 style (Dao 2023), on OpenBLAS tile GEMMs.
//
// Forward. A task owns kBlockQ query rows of one (batch, head) matrix and walks its keys kBlockK at a time:
// a score tile S = scale * Q_i K_j^T (one GEMM), excluded entries set to -inf, then the online softmax: each
// row's running max m and sum l are updated, the output accumulator is rescaled by exp(m_old - m_new) and
// P V_j (one GEMM) is added. Only one [kBlockQ, kBlockK] tile of scores exists per thread; what the backward
// pass needs is the output and one logsumexp m + log l per row. Causal attention stops each query block at
// its diagonal, so tiles above it are never computed (half the work at L = S).
//
// Backward recomputes P = exp(S - logsumexp) tile by tile and, with D_i = rowsum(dO_i * O_i),
//   dV_j += P^T dO_i,   dP = dO_i V_j^T,   dS = P * (dP - D_i),
//   dQ_i += scale dS K_j,   dK_j += scale dS^T Q_i
// (dS = P * (dP - rowsum(P * dP)) is softmax's backward, and rowsum(P * dP) = rowsum(dO * O)). With at least
// as many (batch, head) matrices as threads, a task owns a whole matrix and every product is computed once.
// With fewer, that would leave cores idle, so the work is split twice instead: a pass over key blocks writes
// dK_j and dV_j, then a pass over query blocks writes dQ_i, recomputing S and dP once more (7 tile GEMMs
// instead of 5) in exchange for using every core.
//
// Attention dropout multiplies each probability tile by its regenerated keep multipliers M (0 or 1 / (1 - p),
// from Philox at the weight's index in the [batch, L, S] matrices, as loom::dropout would draw them) before
// the product with V_j; the sums stay those of the undropped softmax. In backward,
//   dV_j += (P * M)^T dO_i,   dS = P * (M * dO_i V_j^T - D_i),
// and D_i = rowsum(dO * O) still holds, since rowsum(P * M * dO V^T) = rowsum(dO * O).
//
// Every task writes its own rows of the outputs and nothing else, so tasks are taken from a shared counter
// (causal blocks differ in cost) and the result is still independent of the thread count and schedule.
#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "loom/core/parallel.h"
#include "loom/ops/cpu/blas.h"
#include "loom/ops/cpu/cpu_backend.h"
#include "loom/ops/cpu/cpu_philox.h"
#include "loom/ops/cpu/vec_math.h"

namespace loom {
namespace {

// Tile sizes: multiples of OpenBLAS's micro-kernel width; a [64, 128] float tile (32 KiB) and the Q, K, V blocks
// it reads stay in L2. Single-threaded at B 8, H 4, L 512, D 64, causal, float32 (this 2-core Zen host), 64 x 128
// ran forward in 31 ms and backward in 61 ms, as fast as 128 x 128 and 128 x 64 within the noise; 64 x 64 was
// ~8% slower, and 256-key or 192/256-row blocks ~15% slower in backward (bigger tiles waste more of the
// diagonal and fall out of L1). OpenBLAS spends most of the rest packing the small tile operands.
constexpr int64_t kBlockQ = 64;
constexpr int64_t kBlockK = 128;

// An operand seen as a batch of [rows, cols] matrices: each matrix's element offset from data<T>() (one per
// flattened leading index; leading dims may have any strides) and the row stride BLAS reads it with.
struct Matrices {
  std::vector<int64_t> offset;
  int64_t ld = 1;
};

std::vector<int64_t> batch_offsets(const Tensor& t, int64_t batch) {
  std::vector<int64_t> offsets(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    int64_t rest = b, off = 0;
    for (int64_t d = t.dim() - 3; d >= 0; --d) {
      off += rest % t.size(d) * t.stride(d);
      rest /= t.size(d);
    }
    offsets[static_cast<size_t>(b)] = off;
  }
  return offsets;
}

Matrices matrices(const Tensor& t, int64_t batch) {
  Matrices m;
  if (!t.defined()) return m;
  m.offset = batch_offsets(t, batch);
  // A single row's stride is never used, but BLAS still wants ld >= cols.
  m.ld = t.size(-2) <= 1 ? std::max<int64_t>(t.size(-1), 1) : t.stride(-2);
  LOOM_CHECK(m.ld <= INT_MAX && t.size(-1) <= INT_MAX && t.size(-2) <= INT_MAX,
             "scaled_dot_product_attention: a dim or row stride of ", describe(t),
             " exceeds BLAS's 32-bit index limit");
  return m;
}

// The problem, with pointers to row i of matrix b of each operand.
template <typename T>
struct Attention {
  int64_t batch, l, s, d, dv;
  T scale;
  bool causal;
  const T *q, *k, *v;
  Matrices mq, mk, mv;
  const bool* mask = nullptr;
  std::vector<int64_t> mask_offset;
  int64_t mask_rs = 0, mask_cs = 0;
  AttentionDropout dropout;

  Attention(const Tensor& tq, const Tensor& tk, const Tensor& tv, const Tensor& tmask, bool causal_,
            double scale_, const AttentionDropout& dropout_)
      : l(tq.size(-2)),
        s(tk.size(-2)),
        d(tq.size(-1)),
        dv(tv.size(-1)),
        scale(static_cast<T>(scale_)),
        causal(causal_),
        q(tq.data<T>()),
        k(tk.data<T>()),
        v(tv.data<T>()),
        dropout(dropout_) {
    batch = tq.numel() / (l * d);
    mq = matrices(tq, batch);
    mk = matrices(tk, batch);
    mv = matrices(tv, batch);
    if (tmask.defined()) {
      mask = tmask.data<bool>();
      mask_offset = batch_offsets(tmask, batch);
      mask_rs = tmask.stride(-2);
      mask_cs = tmask.stride(-1);
    }
  }

  // Multiply-adds of one full tile's product: the most query rows and keys a tile holds times the head width.
  int64_t tile_work() const { return std::min(l, kBlockQ) * std::min(s, kBlockK) * std::max(d, dv); }
  const T* q_at(int64_t b, int64_t i) const { return q + mq.offset[b] + i * mq.ld; }
  const T* k_at(int64_t b, int64_t j) const { return k + mk.offset[b] + j * mk.ld; }
  const T* v_at(int64_t b, int64_t j) const { return v + mv.offset[b] + j * mv.ld; }
  // Keys [0, key_end) can matter to query rows up to `last_row`.
  int64_t key_end(int64_t last_row) const { return causal ? std::min(s, last_row + 1) : s; }
  // The first query block (a multiple of kBlockQ) with a row that may see key j.
  int64_t query_begin(int64_t j) const { return causal ? j / kBlockQ * kBlockQ : 0; }
  // mult [br, bc] (row stride bc) = the dropout multipliers of weights [i0, i0 + br) x [j0, j0 + bc) of
  // matrix b.
  void dropout_tile(int64_t b, int64_t i0, int64_t br, int64_t j0, int64_t bc, T* mult) const {
    for (int64_t r = 0; r < br; ++r)
      cpu::dropout_multipliers(dropout.state, dropout.p, (b * l + i0 + r) * s + j0, bc, mult + r * bc);
  }
};

// Tiles of scratch a task needs besides the score tile: one more for the dropout multipliers.
template <typename T>
int64_t dropout_scratch(const Attention<T>& a) {
  return a.dropout.active() ? kBlockQ * kBlockK : 0;
}

template <typename T>
void multiply(T* x, const T* m, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= m[i];
}

// A writable operand (out, gradients): base pointer and geometry.
template <typename T>
struct Out {
  T* p = nullptr;
  Matrices m;
  Out(const Tensor& t, int64_t batch) : p(t.defined() ? t.data<T>() : nullptr), m(matrices(t, batch)) {}
  T* at(int64_t b, int64_t i) const { return p + m.offset[b] + i * m.ld; }
  explicit operator bool() const { return p != nullptr; }
};

template <typename T>
void zero_rows(T* p, int64_t ld, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) std::fill(p + r * ld, p + r * ld + cols, T(0));
}

// ---- tiles ---------------------------------------------------------------------------------------------------

// tile [br, bc] (row stride bc) = scale * Q[i0 : i0 + br] K[j0 : j0 + bc]^T, excluded entries -inf.
template <typename T>
void score_tile(const Attention<T>& a, int64_t b, int64_t i0, int64_t br, int64_t j0, int64_t bc, T* tile) {
  cpu::gemm(CblasNoTrans, CblasTrans, br, bc, a.d, a.scale, a.q_at(b, i0), a.mq.ld, a.k_at(b, j0), a.mk.ld, 0.0,
            tile, bc);
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  if (a.mask) {
    for (int64_t r = 0; r < br; ++r) {
      const bool* mr = a.mask + a.mask_offset[b] + (i0 + r) * a.mask_rs + j0 * a.mask_cs;
      T* row = tile + r * bc;
      if (a.mask_cs == 1) {
        for (int64_t c = 0; c < bc; ++c) {
          T x = row[c];  // loaded outside the select so that the loop vectorises
          row[c] = mr[c] ? kNegInf : x;
        }
      } else {
        for (int64_t c = 0; c < bc; ++c) {
          T x = row[c];
          row[c] = mr[c * a.mask_cs] ? kNegInf : x;
        }
      }
    }
  }
  if (a.causal && j0 + bc - 1 > i0) {  // the tile reaches above the diagonal
    for (int64_t r = 0; r < br; ++r) {
      int64_t first = std::max<int64_t>(0, i0 + r + 1 - j0);  // key i0 + r + 1 is the first one row r may not see
      std::fill(tile + r * bc + std::min(first, bc), tile + (r + 1) * bc, kNegInf);
    }
  }
}

// The forward pass of query rows [i0, i0 + br) of matrix b. scratch: kBlockQ * (kBlockK + dv + 2) +
// dropout_scratch(a).
template <typename T>
void forward_block(const Attention<T>& a, const Out<T>& out, T* lse, int64_t b, int64_t i0, T* scratch) {
  constexpr T kInf = std::numeric_limits<T>::infinity();
  const int64_t br = std::min(kBlockQ, a.l - i0), dv = a.dv;
  T* tile = scratch;
  T* acc = tile + kBlockQ * kBlockK;
  T* m = acc + kBlockQ * dv;
  T* sum = m + kBlockQ;
  T* mult = sum + kBlockQ;  // dropout multipliers, when dropping
  std::fill(m, m + br, -kInf);
  std::fill(sum, sum + br, T(0));
  std::fill(acc, acc + br * dv, T(0));
  const int64_t key_end = a.key_end(i0 + br - 1);
  for (int64_t j0 = 0; j0 < key_end; j0 += kBlockK) {
    const int64_t bc = std::min(kBlockK, key_end - j0);
    score_tile(a, b, i0, br, j0, bc, tile);
    for (int64_t r = 0; r < br; ++r) {
      T* row = tile + r * bc;
      const T mx = std::max(m[r], cpu::vec::max_of(row, bc));
      if (mx == -kInf) {  // nothing allowed yet: P = 0 (exp(-inf - -inf) would be NaN)
        std::fill(row, row + bc, T(0));
        continue;
      }
      const T alpha = std::exp(m[r] - mx);  // 0 on the row's first allowed tile
      sum[r] = sum[r] * alpha + cpu::vec::exp_shift_sum(row, bc, mx);
      m[r] = mx;
      if (alpha != T(1)) {
        T* ar = acc + r * dv;
        for (int64_t c = 0; c < dv; ++c) ar[c] *= alpha;
      }
    }
    if (a.dropout.active()) {  // the sums above stay those of the undropped probabilities
      a.dropout_tile(b, i0, br, j0, bc, mult);
      multiply(tile, mult, br * bc);
    }
    cpu::gemm(CblasNoTrans, CblasNoTrans, br, dv, bc, 1.0, tile, bc, a.v_at(b, j0), a.mv.ld, 1.0, acc, dv);
  }
  for (int64_t r = 0; r < br; ++r) {
    T* orow = out.at(b, i0 + r);
    if (sum[r] == T(0)) {  // no allowed key: zeros, and +inf makes exp(s - lse) = 0 in backward
      std::fill(orow, orow + dv, T(0));
      lse[b * a.l + i0 + r] = kInf;
      continue;
    }
    const T inv = T(1) / sum[r];
    const T* ar = acc + r * dv;
    for (int64_t c = 0; c < dv; ++c) orow[c] = ar[c] * inv;
    lse[b * a.l + i0 + r] = m[r] + std::log(sum[r]);
  }
}

// The backward operands: dO, the per-row D_i, and the gradients (any may be absent).
template <typename T>
struct Grads {
  const T* go;
  Matrices mgo;
  const T* lse;
  std::vector<T> delta;  // D_i = rowsum(dO_i * O_i), [batch * l]
  Out<T> gq, gk, gv;
  const T* go_at(int64_t b, int64_t i) const { return go + mgo.offset[b] + i * mgo.ld; }
};

// p [br, bc] = exp(S - lse): the forward's probabilities for the tile.
template <typename T>
void prob_tile(const Attention<T>& a, const Grads<T>& g, int64_t b, int64_t i0, int64_t br, int64_t j0, int64_t bc,
               T* p) {
  score_tile(a, b, i0, br, j0, bc, p);
  for (int64_t r = 0; r < br; ++r) {
    const T shift = g.lse[b * a.l + i0 + r];
    // s - lse <= 0 (but for rounding): the softmax's exp without the overflow path.
    cpu::vec::map(p + r * bc, p + r * bc, bc,
                  [shift](auto x) { return cpu::vec::exp_nonpositive(x - shift); });
  }
}

// ds [br, bc] = P * (dO V^T - D), or P * (M * dO V^T - D) with dropout multipliers M (mult, else null).
template <typename T>
void dscore_tile(const Attention<T>& a, const Grads<T>& g, int64_t b, int64_t i0, int64_t br, int64_t j0,
                 int64_t bc, const T* p, const T* mult, T* ds) {
  cpu::gemm(CblasNoTrans, CblasTrans, br, bc, a.dv, 1.0, g.go_at(b, i0), g.mgo.ld, a.v_at(b, j0), a.mv.ld, 0.0, ds,
            bc);
  if (mult) multiply(ds, mult, br * bc);
  for (int64_t r = 0; r < br; ++r) {
    const T dr = g.delta[static_cast<size_t>(b * a.l + i0 + r)];
    const T* pr = p + r * bc;
    T* sr = ds + r * bc;
    for (int64_t c = 0; c < bc; ++c) sr[c] = pr[c] * (sr[c] - dr);
  }
}

// The dropout multipliers of a tile into mult when dropping (returns mult), else null.
template <typename T>
const T* dropout_tile(const Attention<T>& a, int64_t b, int64_t i0, int64_t br, int64_t j0, int64_t bc,
                      T* mult) {
  if (!a.dropout.active()) return nullptr;
  a.dropout_tile(b, i0, br, j0, bc, mult);
  return mult;
}

// dV_j and dK_j from query rows [i0, i0 + br) (accumulated: the caller zeroes them first); p holds the
// probabilities after dropout.
template <typename T>
void accumulate_kv(const Attention<T>& a, const Grads<T>& g, int64_t b, int64_t i0, int64_t br, int64_t j0,
                   int64_t bc, T* p, T* ds) {
  if (g.gv)
    cpu::gemm(CblasTrans, CblasNoTrans, bc, a.dv, br, 1.0, p, bc, g.go_at(b, i0), g.mgo.ld, 1.0, g.gv.at(b, j0),
              g.gv.m.ld);
  if (g.gk)
    cpu::gemm(CblasTrans, CblasNoTrans, bc, a.d, br, a.scale, ds, bc, a.q_at(b, i0), a.mq.ld, 1.0, g.gk.at(b, j0),
              g.gk.m.ld);
}

// Whole matrix b: every tile's products computed once. scratch: 2 * kBlockQ * kBlockK + dropout_scratch(a).
template <typename T>
void backward_matrix(const Attention<T>& a, const Grads<T>& g, int64_t b, T* scratch) {
  T* p = scratch;
  T* ds = p + kBlockQ * kBlockK;
  T* mult = ds + kBlockQ * kBlockK;
  const bool scores_grad = g.gq || g.gk;
  if (g.gq) zero_rows(g.gq.at(b, 0), g.gq.m.ld, a.l, a.d);
  for (int64_t j0 = 0; j0 < a.s; j0 += kBlockK) {
    const int64_t bc = std::min(kBlockK, a.s - j0);
    if (g.gk) zero_rows(g.gk.at(b, j0), g.gk.m.ld, bc, a.d);
    if (g.gv) zero_rows(g.gv.at(b, j0), g.gv.m.ld, bc, a.dv);
    for (int64_t i0 = a.query_begin(j0); i0 < a.l; i0 += kBlockQ) {
      const int64_t br = std::min(kBlockQ, a.l - i0);
      prob_tile(a, g, b, i0, br, j0, bc, p);
      const T* m = dropout_tile(a, b, i0, br, j0, bc, mult);
      if (scores_grad) dscore_tile(a, g, b, i0, br, j0, bc, p, m, ds);
      if (m) multiply(p, m, br * bc);
      accumulate_kv(a, g, b, i0, br, j0, bc, p, ds);
      if (g.gq)
        cpu::gemm(CblasNoTrans, CblasNoTrans, br, a.d, bc, a.scale, ds, bc, a.k_at(b, j0), a.mk.ld, 1.0,
                  g.gq.at(b, i0), g.gq.m.ld);
    }
  }
}

// Split pass 1: dK_j and dV_j of key block [j0, j0 + kBlockK) of matrix b.
template <typename T>
void backward_key_block(const Attention<T>& a, const Grads<T>& g, int64_t b, int64_t j0, T* scratch) {
  T* p = scratch;
  T* ds = p + kBlockQ * kBlockK;
  T* mult = ds + kBlockQ * kBlockK;
  const int64_t bc = std::min(kBlockK, a.s - j0);
  if (g.gk) zero_rows(g.gk.at(b, j0), g.gk.m.ld, bc, a.d);
  if (g.gv) zero_rows(g.gv.at(b, j0), g.gv.m.ld, bc, a.dv);
  for (int64_t i0 = a.query_begin(j0); i0 < a.l; i0 += kBlockQ) {
    const int64_t br = std::min(kBlockQ, a.l - i0);
    prob_tile(a, g, b, i0, br, j0, bc, p);
    const T* m = dropout_tile(a, b, i0, br, j0, bc, mult);
    if (g.gk) dscore_tile(a, g, b, i0, br, j0, bc, p, m, ds);
    if (m) multiply(p, m, br * bc);
    accumulate_kv(a, g, b, i0, br, j0, bc, p, ds);
  }
}

// Split pass 2: dQ_i of query block [i0, i0 + kBlockQ) of matrix b.
template <typename T>
void backward_query_block(const Attention<T>& a, const Grads<T>& g, int64_t b, int64_t i0, T* scratch) {
  T* p = scratch;
  T* ds = p + kBlockQ * kBlockK;
  T* mult = ds + kBlockQ * kBlockK;
  const int64_t br = std::min(kBlockQ, a.l - i0);
  T* gq = g.gq.at(b, i0);
  zero_rows(gq, g.gq.m.ld, br, a.d);
  const int64_t key_end = a.key_end(i0 + br - 1);
  for (int64_t j0 = 0; j0 < key_end; j0 += kBlockK) {
    const int64_t bc = std::min(kBlockK, key_end - j0);
    prob_tile(a, g, b, i0, br, j0, bc, p);
    dscore_tile(a, g, b, i0, br, j0, bc, p, dropout_tile(a, b, i0, br, j0, bc, mult), ds);
    cpu::gemm(CblasNoTrans, CblasNoTrans, br, a.d, bc, a.scale, ds, bc, a.k_at(b, j0), a.mk.ld, 1.0, gq, g.gq.m.ld);
  }
}

// A tile product (query rows x keys x head width) below this many multiply-adds costs OpenBLAS more in its
// per-call buffer allocation, behind a global lock that concurrent callers contend for, than in arithmetic,
// so such problems run on one worker. Measured on 2 threads against 1: 4 queries x 64 keys x 32 (a UT step
// with most positions halted; B 32, 4 heads) and 16 x 16 x 32 (B 64) ran up to 2x slower on two; 40 x 40 x 32
// and 64 x 64 x 32 ran 1.2-1.6x faster.
constexpr int64_t kMinParallelTile = int64_t{1} << 15;

// Runs task(item, scratch) for every item in [0, items) on up to get_num_threads() workers (one when the tile
// products, tile_work multiply-adds each, are small), each with its own scratch of `scratch_size` elements,
// taking items in order from a shared counter.
template <typename T, typename Task>
void run_items(int64_t items, int64_t scratch_size, int64_t tile_work, Task task) {
  if (items <= 0) return;
  cpu::single_threaded_blas();
  std::atomic<int64_t> next{0};
  const int64_t workers = tile_work < kMinParallelTile ? 1 : std::min<int64_t>(get_num_threads(), items);
  parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    std::vector<T> scratch(static_cast<size_t>(scratch_size));
    for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < items;) task(i, scratch.data());
  });
}

// Causal blocks cost more the further they reach (query blocks) or the earlier they start (key blocks); items
// are numbered so that the costliest come first, which keeps the last ones, run while other workers idle,
// short.
struct BlockOrder {
  int64_t batch, blocks;
  bool costly_last;  // whether a block's cost grows with its index
  bool by_cost;      // false: all blocks cost the same, keep each matrix's blocks together (cache reuse)
  void operator()(int64_t item, int64_t& b, int64_t& block) const {
    if (!by_cost) {
      b = item / blocks;
      block = item % blocks;
      return;
    }
    b = item % batch;
    block = costly_last ? blocks - 1 - item / batch : item / batch;
  }
};

template <typename T>
void forward_impl(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool causal,
                  double scale, const AttentionDropout& dropout, const Tensor& out, const Tensor& logsumexp) {
  Attention<T> a(q, k, v, mask, causal, scale, dropout);
  Out<T> o(out, a.batch);
  T* lse = logsumexp.data<T>();
  const int64_t blocks = (a.l + kBlockQ - 1) / kBlockQ;
  BlockOrder order{a.batch, blocks, true, causal};
  run_items<T>(a.batch * blocks, kBlockQ * (kBlockK + a.dv + 2) + dropout_scratch(a), a.tile_work(),
               [&](int64_t item, T* scratch) {
                 int64_t b, block;
                 order(item, b, block);
                 forward_block(a, o, lse, b, block * kBlockQ, scratch);
               });
}

template <typename T>
void backward_impl(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& out, const Tensor& logsumexp, const Tensor& mask, bool causal, double scale,
                   const AttentionDropout& dropout, const Tensor& grad_q, const Tensor& grad_k,
                   const Tensor& grad_v) {
  Attention<T> a(q, k, v, mask, causal, scale, dropout);
  Grads<T> g{grad_out.data<T>(), matrices(grad_out, a.batch), logsumexp.data<T>(), {},
             Out<T>(grad_q, a.batch), Out<T>(grad_k, a.batch), Out<T>(grad_v, a.batch)};
  if (!g.gq && !g.gk && !g.gv) return;
  if (g.gq || g.gk) {
    g.delta.resize(static_cast<size_t>(a.batch * a.l));
    const T* o = out.data<T>();
    Matrices mo = matrices(out, a.batch);
    parallel_for(0, a.batch * a.l, std::max<int64_t>(1, (int64_t{1} << 14) / a.dv), [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        const int64_t b = r / a.l, i = r % a.l;
        g.delta[static_cast<size_t>(r)] = cpu::vec::dot(g.go_at(b, i), o + mo.offset[b] + i * mo.ld, a.dv);
      }
    });
  }
  const int64_t scratch = 2 * kBlockQ * kBlockK + dropout_scratch(a);
  const int64_t work = a.tile_work();
  if (a.batch >= get_num_threads() || in_parallel_region() || work < kMinParallelTile) {
    run_items<T>(a.batch, scratch, work, [&](int64_t b, T* s) { backward_matrix(a, g, b, s); });
    return;
  }
  if (g.gk || g.gv) {
    const int64_t blocks = (a.s + kBlockK - 1) / kBlockK;
    BlockOrder order{a.batch, blocks, false, causal};
    run_items<T>(a.batch * blocks, scratch, work, [&](int64_t item, T* s) {
      int64_t b, block;
      order(item, b, block);
      backward_key_block(a, g, b, block * kBlockK, s);
    });
  }
  if (g.gq) {
    const int64_t blocks = (a.l + kBlockQ - 1) / kBlockQ;
    BlockOrder order{a.batch, blocks, true, causal};
    run_items<T>(a.batch * blocks, scratch, work, [&](int64_t item, T* s) {
      int64_t b, block;
      order(item, b, block);
      backward_query_block(a, g, b, block * kBlockQ, s);
    });
  }
}

// Empty operands (no batch, rows, keys or features) take the composed default, which handles every edge.
bool degenerate(const Tensor& q, const Tensor& k, const Tensor& v) {
  return q.numel() == 0 || k.numel() == 0 || v.numel() == 0;
}

}  // namespace

void CpuBackend::attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                                   bool causal, double scale, const AttentionDropout& dropout,
                                   const Tensor& out, const Tensor& logsumexp) {
  if (degenerate(q, k, v))
    return Backend::attention_forward(q, k, v, mask, causal, scale, dropout, out, logsumexp);
  LOOM_DISPATCH_FLOATING(q.dtype(), "scaled_dot_product_attention", [&] {
    forward_impl<scalar_t>(q, k, v, mask, causal, scale, dropout, out, logsumexp);
  });
}

void CpuBackend::attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& out, const Tensor& logsumexp, const Tensor& mask,
                                    bool causal, double scale, const AttentionDropout& dropout,
                                    const Tensor& grad_q, const Tensor& grad_k, const Tensor& grad_v) {
  if (degenerate(q, k, v))
    return Backend::attention_backward(grad_out, q, k, v, out, logsumexp, mask, causal, scale, dropout,
                                       grad_q, grad_k, grad_v);
  LOOM_DISPATCH_FLOATING(q.dtype(), "scaled_dot_product_attention backward", [&] {
    backward_impl<scalar_t>(grad_out, q, k, v, out, logsumexp, mask, causal, scale, dropout, grad_q, grad_k,
                            grad_v);
  });
}

}  // namespace loom
