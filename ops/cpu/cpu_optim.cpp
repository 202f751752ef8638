// Optimizer updates on the CPU: one pass over parameter, gradient and moments instead of a dozen.
#include <cmath>

#include "loom/core/parallel.h"
#include "loom/ops/cpu/cpu_backend.h"

namespace loom {
namespace {

template <typename T>
void adam_impl(T* p, const T* g, T* m, T* v, int64_t n, const Backend::AdamStep& s) {
  // The same operation order as the composed default (and torch.optim), in T's precision.
  const T beta1 = static_cast<T>(s.beta1), beta2 = static_cast<T>(s.beta2);
  const T one_minus_beta1 = static_cast<T>(1 - s.beta1), one_minus_beta2 = static_cast<T>(1 - s.beta2);
  const T decay = static_cast<T>(1 - s.lr * s.weight_decay), l2 = static_cast<T>(s.weight_decay);
  const T bc2 = static_cast<T>(s.bias_correction2_sqrt), eps = static_cast<T>(s.eps);
  const T neg_step = static_cast<T>(-s.step_size);
  const bool decoupled = s.decoupled, any_decay = s.weight_decay != 0;
  parallel_for(0, n, 1 << 14, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      T pi = p[i], gi = g[i];
      if (any_decay) {
        if (decoupled) {
          pi = pi * decay;
        } else {
          gi = gi + pi * l2;
        }
      }
      T mi = m[i] * beta1 + gi * one_minus_beta1;
      T vi = v[i] * beta2 + (gi * gi) * one_minus_beta2;
      T denom = std::sqrt(vi) / bc2 + eps;
      m[i] = mi;
      v[i] = vi;
      p[i] = pi + (mi / denom) * neg_step;
    }
  });
}

}  // namespace

void CpuBackend::adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                           const AdamStep& step) {
  Tensor g = grad.contiguous();
  LOOM_DISPATCH_FLOATING(param.dtype(), "adam_step", [&] {
    adam_impl<scalar_t>(param.data<scalar_t>(), g.data<scalar_t>(), exp_avg.data<scalar_t>(),
                        exp_avg_sq.data<scalar_t>(), param.numel(), step);
  });
}

}  // namespace loom
