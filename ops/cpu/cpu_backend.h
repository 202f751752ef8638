#pragma once
// The CPU backend: kernels vectorised for the host (AVX-512 here) and split over Loom's thread pool; GEMMs on
// OpenBLAS. Each family of kernels lives in its own file (cpu_<family>.cpp).
#include "loom/ops/backend.h"

namespace loom {

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "CPU"; }

  // cpu_copy.cpp
  void copy(const Tensor& src, const Tensor& dst) override;
  void copy_across_devices(const Tensor& src, const Tensor& dst) override;
  void fill(const Tensor& dst, double value) override;
  // cpu_elementwise.cpp
  void unary(UnaryOp op, const UnaryParams& params, const Tensor& in, const Tensor& out) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override;
  // cpu_reduce.cpp
  void reduce(ReduceOp op, const Tensor& in, const Shape& dims, const Tensor& out, double param) override;
  void arg_reduce(ArgReduceOp op, const Tensor& in, int64_t dim, const Tensor& values, const Tensor& indices) override;
  void scan(ScanOp op, const Tensor& in, int64_t dim, const Tensor& out) override;
  // cpu_linalg.cpp
  void bmm(const Tensor& a, const Tensor& b, const Tensor& out, double alpha, double beta) override;
  // cpu_index.cpp
  void gather(const Tensor& in, int64_t dim, const Tensor& index, const Tensor& out) override;
  void scatter(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src, bool accumulate) override;
  void index_select(const Tensor& in, int64_t dim, const Tensor& index, const Tensor& out) override;
  void index_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) override;
  void sort(const Tensor& in, int64_t dim, bool descending, const Tensor& values, const Tensor& indices) override;
  void topk(const Tensor& in, int64_t k, int64_t dim, bool largest, const Tensor& values,
            const Tensor& indices) override;
  void arange(double start, double step, const Tensor& out) override;
  void triangle(const Tensor& in, int64_t diagonal, bool upper, const Tensor& out) override;
  // cpu_random.cpp
  void uniform(const Tensor& out, double low, double high, PhiloxState state) override;
  void normal(const Tensor& out, double mean, double std, PhiloxState state) override;
  void dropout(const Tensor& in, double p, PhiloxState state, const Tensor& out) override;
  // cpu_act.cpp
  void act_frozen_projection(const Tensor& running, const ActFrozenProjection& a, const Tensor& out,
                             const Tensor& inv_sigma) override;
  void act_frozen_projection_backward(const Tensor& grad, const ActFrozenProjection& a,
                                      const Tensor& inv_sigma,
                                      const ActFrozenProjectionGrads& grads) override;
  // cpu_nn.cpp
  void softmax(const Tensor& in, const Tensor& mask, bool log, const Tensor& out) override;
  void layer_norm(const Tensor& in, const Tensor& weight, const Tensor& bias, double eps, const Tensor& out,
                  const Tensor& mean, const Tensor& rstd) override;
  void softmax_backward(const Tensor& grad, const Tensor& out, const Tensor& grad_in) override;
  void log_softmax_backward(const Tensor& grad, const Tensor& out, const Tensor& mask,
                            const Tensor& grad_in) override;
  void layer_norm_backward(const Tensor& grad, const Tensor& in, const Tensor& mean, const Tensor& rstd,
                           const Tensor& weight, const Tensor& grad_in, const Tensor& grad_weight,
                           const Tensor& grad_bias) override;
  void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                 const AdamStep& step) override;
  void gelu_backward(const Tensor& grad, const Tensor& in, bool tanh_approx, const Tensor& grad_in) override;
  void relu_backward(const Tensor& grad, const Tensor& out, const Tensor& grad_in) override;
  // cpu_attention.cpp
  void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool causal,
                         double scale, const AttentionDropout& dropout, const Tensor& out,
                         const Tensor& logsumexp) override;
  void attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
                          const Tensor& out, const Tensor& logsumexp, const Tensor& mask, bool causal,
                          double scale, const AttentionDropout& dropout, const Tensor& grad_q,
                          const Tensor& grad_k, const Tensor& grad_v) override;
  // cpu_multidim_attention.cpp
  void multi_dim_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                                   const Tensor& padding, AttentionDirection direction, double c, bool mask_queries,
                                   const Tensor& out, const Tensor& inv_sum) override;
  void multi_dim_attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& bias, const Tensor& padding, AttentionDirection direction, double c,
                                    bool mask_queries, const Tensor& out, const Tensor& inv_sum,
                                    const Tensor& grad_q, const Tensor& grad_k, const Tensor& grad_v) override;
  // cpu_lsh_attention.cpp
  void lsh_attention_forward(const Tensor& sqk, const Tensor& sv, const Tensor& spos, const Tensor& padding,
                             const Tensor& bias, const LshChunks& chunks, const Tensor& out, const Tensor& lse) override;
  void lsh_attention_backward(const Tensor& grad_out, const Tensor& grad_lse, const Tensor& sqk, const Tensor& sv,
                              const Tensor& spos, const Tensor& padding, const Tensor& bias, const LshChunks& chunks,
                              const Tensor& out, const Tensor& grad_qk, const Tensor& grad_v) override;
};

}  // namespace loom
