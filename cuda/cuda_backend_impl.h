#pragma once
// The CUDA backend of one GPU. Kernels run on the default stream, so ops are ordered among themselves and a
// cudaMemcpy to the host waits for every kernel before it. Each family of kernels lives in its own file
// (cuda_<family>.cu); everything else inherits Backend's "has no kernel" error.
#include <cublas_v2.h>

#include <mutex>

#include "loom/ops/backend.h"

namespace loom::cuda {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {}
  // The cuBLAS handle is deliberately not destroyed at exit: the CUDA runtime may already be gone by then.
  ~CudaBackend() override = default;
  const char* name() const override { return "CUDA"; }
  int device() const { return device_; }

  // cuda_backend.cu
  void copy(const Tensor& src, const Tensor& dst) override;
  void copy_across_devices(const Tensor& src, const Tensor& dst) override;
  void fill(const Tensor& dst, double value) override;
  void arange(double start, double step, const Tensor& out) override;
  void bmm(const Tensor& a, const Tensor& b, const Tensor& out, double alpha, double beta) override;
  void uniform(const Tensor& out, double low, double high, PhiloxState state) override;
  void normal(const Tensor& out, double mean, double std, PhiloxState state) override;
  void dropout(const Tensor& in, double p, PhiloxState state, const Tensor& out) override;
  // cuda_elementwise.cu
  void unary(UnaryOp op, const UnaryParams& params, const Tensor& in, const Tensor& out) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override;
  // cuda_reduce.cu
  void reduce(ReduceOp op, const Tensor& in, const Shape& dims, const Tensor& out, double param) override;
  // cuda_index.cu
  void arg_reduce(ArgReduceOp op, const Tensor& in, int64_t dim, const Tensor& values,
                  const Tensor& indices) override;
  void scan(ScanOp op, const Tensor& in, int64_t dim, const Tensor& out) override;
  void gather(const Tensor& in, int64_t dim, const Tensor& index, const Tensor& out) override;
  void scatter(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src,
               bool accumulate) override;
  void index_select(const Tensor& in, int64_t dim, const Tensor& index, const Tensor& out) override;
  void index_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) override;
  void triangle(const Tensor& in, int64_t diagonal, bool upper, const Tensor& out) override;
  // cuda_sort.cu
  void sort(const Tensor& in, int64_t dim, bool descending, const Tensor& values,
            const Tensor& indices) override;
  void topk(const Tensor& in, int64_t k, int64_t dim, bool largest, const Tensor& values,
            const Tensor& indices) override;
  // cuda_nn.cu
  void softmax(const Tensor& in, const Tensor& mask, bool log, const Tensor& out) override;
  void layer_norm(const Tensor& in, const Tensor& weight, const Tensor& bias, double eps, const Tensor& out,
                  const Tensor& mean, const Tensor& rstd) override;
  void softmax_backward(const Tensor& grad, const Tensor& out, const Tensor& grad_in) override;
  void log_softmax_backward(const Tensor& grad, const Tensor& out, const Tensor& mask,
                            const Tensor& grad_in) override;
  void layer_norm_backward(const Tensor& grad, const Tensor& in, const Tensor& mean, const Tensor& rstd,
                           const Tensor& weight, const Tensor& grad_in, const Tensor& grad_weight,
                           const Tensor& grad_bias) override;
  void gelu_backward(const Tensor& grad, const Tensor& in, bool tanh_approx, const Tensor& grad_in) override;
  void relu_backward(const Tensor& grad, const Tensor& out, const Tensor& grad_in) override;
  void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                 const AdamStep& step) override;
  // cuda_act.cu
  void act_frozen_projection(const Tensor& running, const ActFrozenProjection& a, const Tensor& out,
                             const Tensor& inv_sigma) override;
  void act_frozen_projection_backward(const Tensor& grad, const ActFrozenProjection& a,
                                      const Tensor& inv_sigma,
                                      const ActFrozenProjectionGrads& grads) override;
  // cuda_attention.cu
  void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool causal,
                         double scale, const AttentionDropout& dropout, const Tensor& out,
                         const Tensor& logsumexp) override;
  void attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
                          const Tensor& out, const Tensor& logsumexp, const Tensor& mask, bool causal,
                          double scale, const AttentionDropout& dropout, const Tensor& grad_q,
                          const Tensor& grad_k, const Tensor& grad_v) override;
  // cuda_multidim_attention.cu
  void multi_dim_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                                   const Tensor& padding, AttentionDirection direction, double c,
                                   bool mask_queries, const Tensor& out, const Tensor& inv_sum) override;
  void multi_dim_attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& bias, const Tensor& padding, AttentionDirection direction,
                                    double c, bool mask_queries, const Tensor& out, const Tensor& inv_sum,
                                    const Tensor& grad_q, const Tensor& grad_k,
                                    const Tensor& grad_v) override;
  // cuda_lsh_attention.cu
  void lsh_attention_forward(const Tensor& sqk, const Tensor& sv, const Tensor& spos, const Tensor& padding,
                             const Tensor& bias, const LshChunks& chunks, const Tensor& out,
                             const Tensor& lse) override;
  void lsh_attention_backward(const Tensor& grad_out, const Tensor& grad_lse, const Tensor& sqk,
                              const Tensor& sv, const Tensor& spos, const Tensor& padding, const Tensor& bias,
                              const LshChunks& chunks, const Tensor& out, const Tensor& grad_qk,
                              const Tensor& grad_v) override;

 private:
  cublasHandle_t cublas();  // created on first use, with this backend's device current

  int device_;
  std::once_flag cublas_once_;
  std::mutex cublas_mutex_;
  cublasHandle_t cublas_ = nullptr;
};

// cuda_sort.cu: sorted_keys and order (int64 [n], contiguous) such that sorted_keys[i] = keys[order[i]] in
// ascending order, stably (equal keys keep their order). keys: int64 [n], contiguous, in [0, 2^key_bits).
void stable_sort_keys(const Tensor& keys, int key_bits, const Tensor& sorted_keys, const Tensor& order);

}  // namespace loom::cuda
