#pragma once
// The safetensors files of PyTorch reference values under tests/golden/ that a suite reads by key (each
// written by a generator script next to it): read once per test process, looked up with errors that name the
// file.
#include <string>

#include "loom/core/tensor.h"
#include "loom/nn/safetensors.h"

namespace loom::test {

// tests/golden/<relative>, e.g. "blosa/blosa.safetensors"; read on first use and kept for the run.
const SafetensorsContents& golden_file(const std::string& relative);
// The tensor stored under `key`; throws loom::Error naming the key and the file when there is none.
Tensor golden_tensor(const std::string& relative, const std::string& key);
bool has_golden_tensor(const std::string& relative, const std::string& key);
// The value of `key` in the metadata entry `name`, a space-separated list of key=value pairs (the generator
// describes each case this way); throws loom::Error when the case or the key is missing.
std::string golden_setting(const std::string& relative, const std::string& name, const std::string& key);

}  // namespace loom::test
