#pragma once
// The PyTorch golden cases in tests/golden/*.safetensors (written by tests/golden/make_golden.py).
#include <map>
#include <string>
#include <vector>

#include "loom/core/tensor.h"

namespace loom::test {

struct GoldenCase {
  std::string name;
  std::string file;
  std::vector<Tensor> inputs;   // "<name>/in<i>", on the CPU
  std::vector<Tensor> outputs;  // "<name>/out<j>": PyTorch's results
};

// Every golden file of the op families (format.safetensors, the reader's own fixture, is not one of them).
std::vector<std::string> golden_files();
// All cases of all golden files, by name; loaded once. Throws loom::Error on a malformed file or key.
const std::map<std::string, GoldenCase>& golden_cases();

}  // namespace loom::test
