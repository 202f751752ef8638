#pragma once
// `loom train transformer`: trains TransformerLm on a character corpus with AdamW, warmup + cosine decay and
// gradient clipping, validating bits-per-character, with checkpoints and --resume.
#include <cstdint>
#include <string>

#include "loom/models/transformer_lm/transformer_lm.h"

namespace loom::models {

struct TransformerLmTrainOptions {
  std::string data = "kjv";        // "kjv" or a text file
  std::string cache_dir = "data";  // where decoded corpora are cached
  std::string out_dir = "runs/transformer";
  std::string device = "cpu";
  int threads = 0;  // 0: all hardware threads
  int64_t steps = 1500;
  int64_t batch = 16;
  int64_t seq = 128;
  double lr = 2e-3;
  double lr_final = 2e-4;
  int64_t warmup = 100;
  double weight_decay = 0.01;
  double clip = 1.0;
  int64_t eval_every = 250;
  int64_t eval_tokens = 65536;  // validation tokens per periodic evaluation (the final test pass reads everything)
  int64_t checkpoint_every = 250;
  uint64_t seed = 1;
  bool resume = false;
  int64_t stop_after = 0;  // > 0: checkpoint and exit after this step, as if preempted (resume with --resume)
  int64_t profile = 0;     // > 0: op profile of this many steps to stderr and <out>/op_profile.txt
  double time_budget = 0;  // > 0: minutes of training steps, then checkpoint and the final evaluation
  TransformerLmConfig model;
};

// Returns the process exit code.
int train_transformer_lm(const TransformerLmTrainOptions& options);

}  // namespace loom::models
