#pragma once
// `loom train ut`: trains the Universal Transformer (models/universal_transformer/universal_transformer.h)
// with dynamic halting (--recurrence act), a fixed number of steps (--recurrence fixed) or the vanilla
// Transformer of the same width (--model transformer) on
//   --task copy | reverse | addition  the paper's algorithmic tasks in tensor2tensor's encoding (section
//                                     3.4): 100,000 training examples up to length 40, evaluation on lengths
//                                     up to 400; training positions start at random offsets so that positions
//                                     up to the evaluation length are seen (the paper's "randomized offsets")
//   --task babi1 | babi2              GENERATED bAbI-like stories (models/data/babi_generator.h; not the
//                                     released set) in the 1K setting: by default the paper's fact-level
//                                     model (babi_model.h), or story + question as tokens in, the answer out
//                                     of the decoder (--babi-encoding flat)
// Evaluation: char- and sequence-accuracy teacher-forced (tensor2tensor's default metric) every --eval-every
// steps, and at the end also greedy-decoded on a few examples; the mean ponder time of encoder and decoder in
// the metrics; ponder maps (per-token ponder times as SVG heat maps, like the paper's figures) of a few
// examples. AdamW with warmup and cosine decay, gradient clipping, metrics as JSON lines, safetensors
// checkpoints (temporary file + rename) with --resume, as every `loom train` command.
#include <cstdint>
#include <string>

#include "loom/models/universal_transformer/universal_transformer.h"

namespace loom::models {

struct UTTrainOptions {
  std::string task = "copy";  // "copy", "reverse", "addition", "babi1" or "babi2"
  std::string out_dir = "runs/ut";
  std::string device = "cpu";
  int threads = 0;  // 0: all hardware threads
  int64_t steps = 5000;
  int64_t batch = 64;
  double lr = 1e-3;
  double lr_final = 1e-5;
  int64_t warmup = 400;
  double weight_decay = 0.0;
  double clip = 1.0;
  int64_t eval_every = 500;
  int64_t checkpoint_every = 250;
  uint64_t seed = 1;       // initialisation, dropout, batch order and position offsets
  uint64_t data_seed = 0;  // the generated datasets
  bool resume = false;
  int64_t stop_after = 0;  // > 0: checkpoint and exit after this step, as if preempted
  int64_t profile = 0;     // > 0: op profile of this many steps to stderr and <out>/op_profile.txt
  double time_budget = 0;  // > 0: minutes of training steps, then checkpoint and the final evaluation
  // Algorithmic tasks.
  int64_t train_size = 100000;
  int64_t train_length = 40;
  int64_t eval_size = 200;  // evaluation examples (lengths up to eval_length)
  int64_t eval_length = 400;
  int64_t max_offset = -1;  // training positions stay below this (random offsets); -1: eval_length; 0: none
  // "shared": one offset per example for source and target, so target position i lines up with source
  // position i, as at evaluation (offset 0 on both sides); "independent": each side starts at its own random
  // offset (tensor2tensor draws one per call, so the two sides' positions say nothing about each other; on
  // this machine's budgets every model stayed at chance on copy that way,
  // docs/models/universal_transformer.md); "per-step": each side draws a new offset at every recurrent step
  // (tensor2tensor's step_preprocess with position_start_index "random"), so absolute positions carry nothing
  // from one step to the next and only relative ones are worth learning. Evaluation uses offset 0 throughout.
  std::string offsets = "shared";
  int64_t decode_examples = 10;  // greedy-decoded evaluation examples at the end (0: none)
  // bAbI-like tasks: the 1K setting.
  int64_t babi_train = 1000;
  int64_t babi_test = 1000;
  // "facts": the paper's encoding (babi_model.h: a vector per fact, the encoder only, the answer a class);
  // "flat": story and question as one token sequence into the encoder, the answer word out of the decoder.
  std::string babi_encoding = "facts";
  int64_t ponder_maps = 3;           // evaluation examples drawn as ponder maps at the end (0: none)
  UniversalTransformerConfig model;  // vocab_size comes from the task
};

// Returns the process exit code.
int train_ut(const UTTrainOptions& options);

}  // namespace loom::models
