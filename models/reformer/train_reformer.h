#pragma once
// `loom train reformer`: trains ReformerLM (models/reformer/reformer_lm.h) on
//   --task lm           a character corpus (KJV, GCIDE or a text file): validation and test bits-per-character,
//                       and a sample of generated text at the end;
//   --task duplication  the paper's 0w0w task (Table 2): accuracy on the second w, evaluated with full attention
//                       and with 1, 2, 4 and 8 hash rounds.
// AdamW with warmup and cosine decay, gradient clipping, metrics as JSON lines, safetensors checkpoints (written
// to a temporary file and renamed) with --resume. `loom sample reformer` generates text from a run's checkpoint.
#include <cstdint>
#include <string>
#include <vector>

#include "loom/models/reformer/reformer_lm.h"

namespace loom::models {

struct ReformerTrainOptions {
  std::string task = "lm";         // "lm" or "duplication"
  std::string data = "kjv";        // lm: "kjv", "gcide" or a text file
  std::string cache_dir = "data";  // where decoded corpora are cached
  std::string out_dir = "runs/reformer";
  std::string device = "cpu";
  int threads = 0;  // 0: all hardware threads
  int64_t steps = 1000;
  int64_t batch = 8;
  int64_t seq = 1024;  // lm: characters per training sequence
  double lr = 1e-3;
  double lr_final = 1e-4;
  int64_t warmup = 100;
  double weight_decay = 0.01;
  double clip = 1.0;
  int64_t eval_every = 250;
  int64_t eval_tokens = 65536;  // lm: validation characters per periodic pass (0: all); the test pass reads all
  int64_t eval_batches = 8;     // duplication: batches of fresh sequences per evaluation
  int64_t checkpoint_every = 250;
  uint64_t seed = 1;
  bool resume = false;
  int64_t stop_after = 0;  // > 0: checkpoint and exit after this step, as if preempted
  int64_t profile = 0;     // > 0: op profile of this many steps to stderr and <out>/op_profile.txt
  double time_budget = 0;  // > 0: minutes of training steps, then checkpoint and the final evaluation
  bool train_full_attention = false;  // duplication: train the LSH layers as full attention (Table 2's first row)
  int64_t eval_hashes = 0;            // lm: hash rounds for validation / test / sampling (0: as in training)
  int64_t w_len = 127;                // duplication: |w| (L = 2 |w| + 2)
  int64_t symbols = 127;              // duplication: w's alphabet 1..symbols
  int64_t sample_chars = 300;         // lm: characters generated after training (0: none)
  double temperature = 0.8;
  std::string prompt;  // lm: the sample's prompt (empty: the first line of the test split)
  ReformerConfig model;
};

// Returns the process exit code.
int train_reformer(const ReformerTrainOptions& options);

struct ReformerSampleOptions {
  std::string run_dir = "runs/reformer";  // reads <run_dir>/checkpoint.safetensors
  std::string prompt;
  int64_t chars = 300;
  double temperature = 0.8;
  int64_t hashes = 0;  // 0: as trained
  uint64_t seed = 1;
  std::string device = "cpu";
  int threads = 0;
};

// `loom sample reformer`: rebuilds the model from the checkpoint's configuration and prints the prompt and the
// generated continuation. Returns the process exit code.
int sample_reformer(const ReformerSampleOptions& options);

}  // namespace loom::models
