#pragma once
// Gradient clipping (torch.nn.utils.clip_grad_norm_, torch 1.13).
#include <vector>

#include "loom/core/tensor.h"

namespace loom::nn {

// Scales the gradients of `parameters` (those that have one) in place so that their total norm -- the
// norm_type-norm of the per-gradient norms, i.e. of all gradients concatenated -- is at most max_norm: each is
// multiplied by min(1, max_norm / (total + 1e-6)). Returns the total norm before clipping as a 0-d tensor on the
// first gradient's device and dtype (0 when no parameter has a gradient). norm_type may be INFINITY (the max |g|).
// No value leaves the device unless error_if_nonfinite is set, which throws when the total norm is NaN or inf
// (before touching any gradient).
Tensor clip_grad_norm_(const std::vector<Tensor>& parameters, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);

}  // namespace loom::nn
