#pragma once
// Reading and writing the safetensors format (https://github.com/huggingface/safetensors), the layout PyTorch
// and Hugging Face checkpoints use: an 8-byte little-endian header length N, N bytes of JSON describing each
// tensor (dtype, shape, byte range), then the packed tensor bytes.
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "loom/core/tensor.h"

namespace loom {

// Writes `tensors` in the given order (any device and layout; each is copied to contiguous host memory) with
// optional string metadata. The file is written to path + ".tmp" and renamed over `path`, so an interrupted
// save never destroys the previous file. Names must be unique, non-empty and not "__metadata__".
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

struct SafetensorsContents {
  std::map<std::string, Tensor> tensors;  // on the CPU, contiguous
  std::map<std::string, std::string> metadata;
};

// Reads every tensor of a safetensors file onto the CPU. Supported dtypes: F32, F64, I64, I32, BOOL. The file
// is validated (header length, JSON, dtypes, shapes, byte ranges that tile the data exactly); any defect
// throws a loom::Error naming the file.
std::map<std::string, Tensor> load_safetensors(const std::string& path);
SafetensorsContents load_safetensors_with_metadata(const std::string& path);

}  // namespace loom
