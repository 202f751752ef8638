#pragma once
// Comparing an op's output with a reference (PyTorch golden output, or the CPU result in the CUDA parity
// test).
#include <string>

#include "loom/core/tensor.h"

namespace loom::test {

// |got - want| <= atol + rtol * |want| elementwise. A negative field takes the default for the output's dtype
// (float32: rtol 1e-5, atol 1e-6; float64: rtol 1e-10, atol 1e-12). Integer and bool outputs must match
// exactly.
struct Tolerance {
  double rtol = -1;
  double atol = -1;
};

struct Comparison {
  bool ok = true;
  double max_abs_err = 0;
  std::string message;  // empty when ok; otherwise says what differs, where and by how much
};

// Dtypes and shapes must be equal; NaNs must sit at the same positions and infinities match exactly.
Comparison compare(const Tensor& got, const Tensor& want, Tolerance tol = {});

}  // namespace loom::test
