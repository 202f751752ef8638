#pragma once
// The one table of Loom's ops that drives both the PyTorch golden test (tests/test_golden.cpp, inputs read
// from tests/golden/) and the CUDA-vs-CPU parity test (tests/test_op_parity.cpp, inputs from `make`). A row's
// name is its golden case name in tests/golden/make_golden.py, which mirrors `make` (shapes, dtypes, value
// ranges) and `run` (the op, its parameters and any view applied to the inputs).
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "loom/core/tensor.h"
#include "support/compare.h"

namespace loom::test {

// Deterministic inputs, seeded per row.
class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  double uniform();  // [0, 1)
  double normal();
  int64_t integer(int64_t lo, int64_t hi);  // [lo, hi)

 private:
  std::mt19937_64 engine_;
};

using MakeFn = std::vector<Tensor> (*)(Rng& rng);
// Runs the op on inputs that all live on `device` (factories create their outputs there).
using RunFn = std::vector<Tensor> (*)(const std::vector<Tensor>& inputs, Device device);

struct OpCase {
  const char* name;
  MakeFn make;  // host inputs
  RunFn run;
  Tolerance tol;
  bool golden;  // false for ops PyTorch cannot reproduce (Philox draws) and large parity-only shapes
};

const std::vector<OpCase>& op_table();
// The row called `name`, or nullptr.
const OpCase* find_op(const std::string& name);
// The row's inputs, built on the CPU from a seed derived from its name and then moved to `device`.
std::vector<Tensor> make_inputs(const OpCase& op, Device device);
// True for the error a backend throws for a kernel it does not implement yet.
bool is_missing_kernel(const Error& e);

}  // namespace loom::test
