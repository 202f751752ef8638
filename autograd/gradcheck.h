#pragma once
// gradcheck: compares the tape's gradients with central finite differences, as torch.autograd.gradcheck.
// Inputs that require grad must be contiguous float64 CPU tensors; other inputs (indices, masks) pass through.
// The whole Jacobian is compared: one backward() per output element, two forward passes per input element,
// so keep the tensors small (tens of elements).
#include <functional>
#include <vector>

#include "loom/core/tensor.h"

namespace loom {

struct GradcheckOptions {
  double eps = 1e-6;   // finite-difference step
  double atol = 1e-5;  // |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-3;
  bool raise = true;   // throw loom::Error describing the first mismatch (else return false)
};

using GradcheckFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

bool gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, GradcheckOptions options = {});
bool gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn, const std::vector<Tensor>& inputs,
               GradcheckOptions options = {});

}  // namespace loom
