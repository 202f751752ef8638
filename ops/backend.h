#pragma once
// The kernel interface every backend implements (CPU in ops/cpu/, CUDA in cuda/). The op layer (ops/*.cpp) checks
// arguments, computes output shapes, broadcasts, allocates outputs on the inputs' device and then calls exactly
// one of these; kernels never validate user input. A backend that lacks a kernel inherits the default, which
// throws a loom::Error naming the backend and the kernel.
#include <cstdint>

#include "loom/core/generator.h"
#include "loom/core/tensor.h"
#include "loom/ops/multidim_attention.h"  // AttentionDirection

namespace loom {

enum class UnaryOp : uint8_t {
  Neg, Exp, Log, Sqrt, Rsqrt, Tanh, Sigmoid, Relu,
  Gelu,        // exact: x * Phi(x) (PyTorch's default)
  GeluTanh,    // tanh approximation
  Elu,         // param a = alpha
  Abs,
  PowScalar,   // x ** a
  Clamp,       // clamp to [a, b] (a = -inf or b = +inf leaves that side open)
  LogicalNot,  // bool -> bool
  Square, Reciprocal, Sign
};
const char* unary_op_name(UnaryOp op);

// Dropout on attention's probabilities (scaled_dot_product_attention's dropout_p): weight (b, i, j) of the
// [batch, L, S] attention matrices (b the flattened leading index) is multiplied by exactly what
// loom::dropout(weights, p, state) multiplies element (b * L + i) * S + j of contiguous weights by: 0 or
// 1 / (1 - p). The softmax denominators are those of the undropped weights. p = 0: no dropout.
struct AttentionDropout {
  double p = 0;
  PhiloxState state;
  bool active() const { return p > 0; }
};

struct UnaryParams {
  double a = 0;
  double b = 0;
};

enum class BinaryOp : uint8_t {
  Add, Sub, Mul, Div, Pow, Maximum, Minimum,
  Eq, Ne, Lt, Le, Gt, Ge,  // produce bool
  LogicalAnd, LogicalOr    // bool inputs, bool output
};
const char* binary_op_name(BinaryOp op);
inline bool is_comparison(BinaryOp op) { return op >= BinaryOp::Eq; }

enum class ReduceOp : uint8_t {
  Sum, Mean, Prod, Max, Min,
  LogSumExp,  // max-shifted, stable
  Var,        // param = correction (1 = unbiased)
  Any, All    // bool
};
const char* reduce_op_name(ReduceOp op);

enum class ArgReduceOp : uint8_t { Max, Min };  // values and the index of the first extremum
enum class ScanOp : uint8_t { Cumsum, Cumprod };

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // --- memory -------------------------------------------------------------------------------------------
  // dst = src elementwise; same device and shape, any strides, dtypes may differ (converting as static_cast,
  // and != 0 for bool).
  virtual void copy(const Tensor& src, const Tensor& dst);
  // Contiguous same-dtype copy between this backend's device and the host (or within the device).
  virtual void copy_across_devices(const Tensor& src, const Tensor& dst);
  virtual void fill(const Tensor& dst, double value);

  // --- elementwise ----------------------------------------------------------------------------------------
  // Inputs are already broadcast to out's shape (expanded views, stride 0 allowed) and share out's dtype, except
  // that comparisons write bool and LogicalNot/And/Or read and write bool. out never aliases an input partially.
  virtual void unary(UnaryOp op, const UnaryParams& params, const Tensor& in, const Tensor& out);
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out);
  // out = cond ? a : b; cond bool, all broadcast to out's shape.
  virtual void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out);

  // --- reductions ------------------------------------------------------------------------------------------
  // Reduces `in` over `dims` (sorted, unique, non-empty) into `out`, whose shape is in's with those dims set to 1.
  // Empty reductions give the identity (0 for sum, -inf for logsumexp; Max/Min on an empty dim are rejected by the
  // op layer). `param` is Var's correction.
  virtual void reduce(ReduceOp op, const Tensor& in, const Shape& dims, const Tensor& out, double param);
  // values/indices (int64) have in's shape with `dim` set to 1.
  virtual void arg_reduce(ArgReduceOp op, const Tensor& in, int64_t dim, const Tensor& values, const Tensor& indices);
  virtual void scan(ScanOp op, const Tensor& in, int64_t dim, const Tensor& out);

  // --- linear algebra ---------------------------------------------------------------------------------------
  // out[i] = alpha * a[i] @ b[i] + beta * out[i] for i in [0, B). a: [B, M, K], b: [B, K, N], out: [B, M, N]
  // contiguous. a and b each have a unit stride in one of their last two dims (transposed views are fine) and
  // may have batch stride 0 (broadcast). float32 or float64.
  virtual void bmm(const Tensor& a, const Tensor& b, const Tensor& out, double alpha, double beta);

  // --- indexing and shape -----------------------------------------------------------------------------------
  // out[i][j][k] = in[index[i][j][k]][j][k] (dim = 0); index int64, shape of out; indices already range-checked.
  virtual void gather(const Tensor& in, int64_t dim, const Tensor& index, const Tensor& out);
  // self[index[i][j][k]][j][k] = src[i][j][k] (or += when accumulate), in place on self.
  virtual void scatter(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src, bool accumulate);
  // out = in.index_select(dim, index) (index 1-d int64, range-checked).
  virtual void index_select(const Tensor& in, int64_t dim, const Tensor& index, const Tensor& out);
  // self.index_select(dim, index) += src, accumulating repeated indices (embedding backward).
  virtual void index_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src);
  // Stable sort along dim; values like in, indices int64.
  virtual void sort(const Tensor& in, int64_t dim, bool descending, const Tensor& values, const Tensor& indices);
  // The k largest (or smallest) along dim, sorted, ties broken by lower index first.
  virtual void topk(const Tensor& in, int64_t k, int64_t dim, bool largest, const Tensor& values,
                    const Tensor& indices);
  // out[i] = start + i * step (out 1-d).
  virtual void arange(double start, double step, const Tensor& out);
  // Keeps the lower (upper=false) or upper triangle of the last two dims relative to `diagonal`, zeros elsewhere.
  virtual void triangle(const Tensor& in, int64_t diagonal, bool upper, const Tensor& out);

  // --- random (Philox; element i uses counter offset + i/4, word i%4: identical on every backend) -------------
  virtual void uniform(const Tensor& out, double low, double high, PhiloxState state);
  virtual void normal(const Tensor& out, double mean, double std, PhiloxState state);
  // out = keep ? in / (1 - p) : 0 where keep = uniform(i) >= p. Calling it again with the same state on a
  // gradient gives dropout's backward.
  virtual void dropout(const Tensor& in, double p, PhiloxState state, const Tensor& out);

  // --- nn -----------------------------------------------------------------------------------------------
  // Softmax (or log-softmax) along the last dim of a contiguous in; mask (bool, expanded to in's shape, may be
  // undefined) marks excluded entries. A row with every entry excluded gives zeros (softmax) or -inf (log).
  virtual void softmax(const Tensor& in, const Tensor& mask, bool log, const Tensor& out);
  // Layer norm over the last dim of a contiguous in [rows, D]; weight/bias [D] may be undefined. Writes mean and
  // rstd [rows] (float32/64 like in) for the backward pass.
  virtual void layer_norm(const Tensor& in, const Tensor& weight, const Tensor& bias, double eps, const Tensor& out,
                          const Tensor& mean, const Tensor& rstd);

  // Scaled-dot-product attention (ops/attention.h): out = softmax(scale * q @ k^T, excluded) @ v over the
  // last two dims, batched over the leading dims, which q [..., L, D], k [..., S, D], v [..., S, Dv] and out
  // [..., L, Dv] share. These four may be strided views: each has a unit stride in its last dim (unless that
  // dim has size 1) and a row stride of at least its last size (unless it has one row); leading dims may have
  // any strides, 0 included. mask (bool, expanded to [..., L, S], any strides) may be undefined; causal also
  // excludes key j > query i. Writes out and logsumexp [..., L] (contiguous): the log of each row's softmax
  // denominator, +inf for a row with no allowed key (which outputs zeros), so that exp(score - logsumexp) is
  // the probability everywhere, 0 in such rows. With dropout active, out = dropout(probabilities) @ v and
  // logsumexp is unchanged. Unlike the kernels above, the default composes ops (matmul, logsumexp, exp, the
  // dropout kernel) and so runs on every backend; the CPU and CUDA override it with tiled kernels that never
  // hold the [L, S] scores.
  virtual void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                                 bool causal, double scale, const AttentionDropout& dropout,
                                 const Tensor& out, const Tensor& logsumexp);
  // Multi-dimensional (feature-wise) attention (ops/multidim_attention.h) over N independent sequences: q, k,
  // v [N, L, d] with a unit last stride (any strides in N and L), bias [d] contiguous, padding bool [N, L]
  // contiguous (true = padding) or undefined; the allowed keys follow direction, padding and mask_queries as
  // the op documents, c in (0, 40]. Writes out and inv_sum [N, L, d] (contiguous): inv_sum = 1 / sum_j
  // exp(score) over the allowed keys, 0 for a row with none (whose out is 0), so exp(score) * inv_sum is the
  // probability everywhere. The default composes ops over the whole [N, L, L, d] score tensor (the
  // reference); the CPU overrides it with a kernel that keeps one row of accumulators per thread, CUDA with
  // one that stages tiles of keys in shared memory. Neither holds a score.
  virtual void multi_dim_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                                           const Tensor& padding, AttentionDirection direction, double c,
                                           bool mask_queries, const Tensor& out, const Tensor& inv_sum);

  // --- backward kernels ------------------------------------------------------------------------------------
  // The defaults compose public ops (so every backend runs them unchanged); a backend overrides them with
  // fused kernels. They run with grad mode off. All tensors are contiguous unless noted.
  // grad_in = out * (grad - sum(grad * out)) along the last dim, out being softmax's output.
  virtual void softmax_backward(const Tensor& grad, const Tensor& out, const Tensor& grad_in);
  // grad_in = grad - exp(out) * sum(grad) along the last dim, out being log_softmax's output. mask as in
  // softmax() (expanded, any strides, may be undefined): excluded entries neither contribute to the sum nor
  // receive a gradient, so a fully excluded row gets zeros.
  virtual void log_softmax_backward(const Tensor& grad, const Tensor& out, const Tensor& mask,
                                    const Tensor& grad_in);
  // Layer norm's backward over in [rows, D] from the forward's mean and rstd [rows]; weight [D] may be
  // undefined (ones). Writes whichever of grad_in [rows, D], grad_weight [D] and grad_bias [D] is defined.
  virtual void layer_norm_backward(const Tensor& grad, const Tensor& in, const Tensor& mean,
                                   const Tensor& rstd, const Tensor& weight, const Tensor& grad_in,
                                   const Tensor& grad_weight, const Tensor& grad_bias);
  // grad_in = grad * gelu'(in), exact (erf) form or the tanh approximation; all of one shape.
  virtual void gelu_backward(const Tensor& grad, const Tensor& in, bool tanh_approx, const Tensor& grad_in);
  // grad_in = grad where out > 0, else 0 (PyTorch's threshold_backward on relu's result: 0 at 0 and NaN);
  // contiguous, all of one shape and floating dtype.
  virtual void relu_backward(const Tensor& grad, const Tensor& out, const Tensor& grad_in);
  // Attention's backward from the forward's out and logsumexp; operands as in attention_forward (grad_out
  // like out; grad_q, grad_k, grad_v like q, k, v, each with a unit last stride and non-overlapping rows, or
  // undefined when not wanted). Every element of a defined gradient is written.
  // The dropout is the forward's (the same state), its mask regenerated.
  virtual void attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& out, const Tensor& logsumexp, const Tensor& mask, bool causal,
                                  double scale, const AttentionDropout& dropout, const Tensor& grad_q,
                                  const Tensor& grad_k, const Tensor& grad_v);
  // Multi-dimensional attention's backward from grad_out and the forward's out and inv_sum ([N, L, d],
  // contiguous); operands as in multi_dim_attention_forward. Writes every element of whichever of grad_q,
  // grad_k, grad_v ([N, L, d], contiguous) is defined. There is no grad_bias: the score depends on q[i] + bias,
  // so the bias's gradient is grad_q summed over N and L (the op layer asks for grad_q when either needs it).
  virtual void multi_dim_attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k,
                                            const Tensor& v, const Tensor& bias, const Tensor& padding,
                                            AttentionDirection direction, double c, bool mask_queries,
                                            const Tensor& out, const Tensor& inv_sum, const Tensor& grad_q,
                                            const Tensor& grad_k, const Tensor& grad_v);

  // --- LSH attention's per-chunk core (ops/lsh_attention.h) ------------------------------------------------
  // Rows are already sorted by (round, bucket, position): sqk [B, H, N, d] (the shared query/key rows), sv
  // [B, H, N, dv], spos [B, H, N] int64 (each row's original position in [0, L)), N = n_hashes * L, all
  // contiguous. Chunk c (rows [cC, cC + C)) attends to chunks (c + i) mod (N / C), i = -n_before..n_after, in
  // that order: W = (n_before + 1 + n_after) C keys. Keys are k = sqk / sqrt(mean(sqk^2) + 1e-6) / sqrt(d);
  // logits s = q k - 1e5 [same position] - bias, then replaced by -1e9 where causal and kpos > qpos, or where
  // padding[b, kpos] (padding bool [B, L] or undefined; bias [B, H, N, W] or undefined). Writes out [B, H, N,
  // dv] = softmax(s) V and lse [B, H, N] = logsumexp(s). The defaults compose ops over all chunks at once
  // (the reference); the CPU and CUDA override them chunk by chunk in O(N) memory.
  struct LshChunks {
    int64_t chunk_len, n_before, n_after;
    bool causal;
  };
  virtual void lsh_attention_forward(const Tensor& sqk, const Tensor& sv, const Tensor& spos, const Tensor& padding,
                                     const Tensor& bias, const LshChunks& chunks, const Tensor& out,
                                     const Tensor& lse);
  // Its backward from grad_out [B, H, N, dv], grad_lse [B, H, N] (undefined = 0) and the forward's out: writes
  // grad_qk [B, H, N, d] (query path plus key path through the normalisation) and grad_v [B, H, N, dv]. The
  // probabilities are recomputed as a row softmax, not as exp(s - lse): a row whose every key is masked has
  // lse near -1e9, which float32 cannot resolve. Replaced (masked) logits are constants and pass no gradient.
  virtual void lsh_attention_backward(const Tensor& grad_out, const Tensor& grad_lse, const Tensor& sqk,
                                      const Tensor& sv, const Tensor& spos, const Tensor& padding, const Tensor& bias,
                                      const LshChunks& chunks, const Tensor& out, const Tensor& grad_qk,
                                      const Tensor& grad_v);

  // --- ACT -------------------------------------------------------------------------------------------------
  // act_frozen_projection (ops/act.h): out [N, C] gets running [n, C] at rows running_rows and, at
  // frozen_rows, (projected + signal_projected) * inv_sigma + shift, with inv_sigma [h] (also written)
  //   = 1 / sqrt((squared_norm + 2 centred . signal_centred + |signal_centred|^2) / d + eps).
  // Backward, from grad [N, C], writes each defined gradient. Contiguous operands, one dtype. The defaults
  // compose ops; the CPU fuses each into one pass.
  struct ActFrozenProjection {
    Tensor running_rows, frozen_rows;  // int64 [n], [h]
    Tensor projected, centred, squared_norm, signal_centred, signal_projected, shift;
    double eps;
  };
  struct ActFrozenProjectionGrads {
    Tensor running, projected, centred, squared_norm, signal_centred, signal_projected, shift;
  };
  virtual void act_frozen_projection(const Tensor& running, const ActFrozenProjection& a, const Tensor& out,
                                     const Tensor& inv_sigma);
  virtual void act_frozen_projection_backward(const Tensor& grad, const ActFrozenProjection& a,
                                              const Tensor& inv_sigma, const ActFrozenProjectionGrads& grads);

  // --- optimizer kernels -----------------------------------------------------------------------------------
  // One Adam/AdamW update of a parameter in place (torch.optim.Adam / AdamW formulas):
  //   decoupled: p *= 1 - lr * weight_decay          else: g += weight_decay * p
  //   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
  //   p -= step_size * m / (sqrt(v) / bias_correction2_sqrt + eps)
  // param, grad, exp_avg, exp_avg_sq share shape and dtype; param and the moments are contiguous. The default
  // composes ops (about a dozen passes over memory); the CPU overrides it with a single pass.
  struct AdamStep {
    double lr, beta1, beta2, eps, weight_decay;
    bool decoupled;
    double step_size;              // lr / (1 - beta1^t)
    double bias_correction2_sqrt;  // sqrt(1 - beta2^t)
  };
  virtual void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                         const AdamStep& step);

 protected:
  [[noreturn]] void missing(const char* kernel) const;
};

// The backend serving a device (throws for CUDA when Loom has no CUDA backend).
Backend& backend_for(Device device);
Backend& cpu_backend();

}  // namespace loom
