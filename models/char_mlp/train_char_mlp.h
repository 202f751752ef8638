#pragma once
// `loom train charmlp`: trains CharMlp on a character corpus with Adam, validating bits-per-character.
#include <cstdint>
#include <string>

#include "loom/models/char_mlp/char_mlp.h"

namespace loom::models {

struct CharMlpTrainOptions {
  std::string data = "kjv";          // "kjv" or a text file
  std::string cache_dir = "data";    // where decoded corpora are cached
  std::string out_dir = "runs/charmlp";
  std::string device = "cpu";
  int threads = 0;                   // 0: all hardware threads
  int64_t steps = 3000;
  int64_t batch = 256;
  double lr = 2e-3;
  double lr_final = 2e-4;            // cosine decay from lr to lr_final
  int64_t eval_every = 500;
  int64_t checkpoint_every = 500;
  uint64_t seed = 1;
  bool resume = false;
  CharMlpConfig model;
};

// Returns the process exit code.
int train_char_mlp(const CharMlpTrainOptions& options);

}  // namespace loom::models
