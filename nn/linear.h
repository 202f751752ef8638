#pragma once
// nn::Linear: y = x @ weight^T + bias (torch.nn.Linear), weight [out, in], bias [out].
#include "loom/nn/module.h"

namespace loom::nn {

class Linear : public Module {
 public:
  // PyTorch's default init: weight kaiming_uniform_(a = sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)), and bias
  // U(-1/sqrt(in), 1/sqrt(in)). Parameters are created on `options`' device and dtype.
  Linear(int64_t in_features, int64_t out_features, bool bias = true, TensorOptions options = {});

  // x [..., in] -> [..., out].
  Tensor forward(const Tensor& x) override;
  // PyTorch's init again (after a manual_seed, say).
  void reset_parameters();

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }

  Tensor weight;
  Tensor bias;  // undefined when built with bias = false

 private:
  int64_t in_features_;
  int64_t out_features_;
};

}  // namespace loom::nn
