#pragma once
// Matrix products on OpenBLAS (CPU) and cuBLAS (CUDA).
#include "loom/core/tensor.h"

namespace loom {

// torch.matmul semantics: 1-d x 1-d is a dot product; 2-d x 2-d a matrix product; batch dims broadcast; a 1-d
// operand is promoted to a matrix and the added dim removed afterwards. float32 or float64; both on one device.
Tensor matmul(const Tensor& a, const Tensor& b);
// Batched product of two 3-d tensors [B, M, K] x [B, K, N] (no broadcasting), as torch.bmm.
Tensor bmm(const Tensor& a, const Tensor& b);
// x @ weight^T + bias, with weight [out, in] as in torch.nn.functional.linear; bias may be undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace loom
