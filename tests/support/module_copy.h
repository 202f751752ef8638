#pragma once
// Copying one module's parameters into another of the same architecture (tests that compare two variants of a
// model, or one model on two devices, from the same starting point).
#include "loom/nn/module.h"

namespace loom::test {

// Copies every parameter of `from` into the parameter of `to` with the same name, across devices if need be.
// Fails the current test (ASSERT) if `to` has a parameter that `from` lacks.
void copy_parameters(const nn::Module& from, nn::Module& to);

}  // namespace loom::test
