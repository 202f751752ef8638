#pragma once
// Activation checkpointing: trade compute for memory. checkpoint(fn, inputs) runs fn without recording (its
// intermediate activations are freed at once) and records one entry; its backward reruns fn on a nested tape
// from the saved inputs, with the default generator rewound to the Philox (seed, offset) the forward saw, so
// dropout masks and random rotations are drawn identically, then backpropagates through the rerun.
// Parameters fn uses (captured modules' weights) receive their gradients during that rerun.
#include <functional>
#include <vector>

#include "loom/core/tensor.h"

namespace loom {

using CheckpointFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

std::vector<Tensor> checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs);
Tensor checkpoint(const std::function<Tensor(const Tensor&)>& fn, const Tensor& input);

}  // namespace loom
