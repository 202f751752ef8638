#pragma once
// `loom train biblosa`: trains a sentence classifier (models/biblosa/text_classifier.h: Bi-BloSAN, DiSAN or
// the multi-head baseline) on labelled text that ships with Debian or npm:
//   --data wordnet   WordNet 3.0 glosses -> their 45 lexicographer classes (seeded 90/10 split)
//   --data spam      the SpamAssassin corpus, ham or spam (seeded 80/20 split, or --split time: the *-1
//                    groups train, the *-2 groups test)
//   --data FILE      a text file of `label<TAB>text` lines (seeded split by --train-fraction)
// A seeded part of the training split is held out as the development set that picks the epoch whose test
// accuracy is reported (the reference code keeps the best dev checkpoint). Words are tokenized by
// data::split_words, the vocabulary is built on the training texts minus the dev set, and embeddings are
// trained from scratch. Adam (the reference's CR/MPQA/SUBJ setting), the reference's L2 term on the dense
// weights, progress with tokens/s and ETA, accuracy per epoch, metrics as JSON lines, safetensors checkpoints
// (temporary file + rename) with --resume, and the majority / naive Bayes baselines on the same split for
// comparison. `loom predict biblosa` classifies sentences with a trained run.
#include <cstdint>
#include <string>
#include <vector>

#include "loom/models/biblosa/text_classifier.h"

namespace loom::models {

struct BiblosaTrainOptions {
  std::string data = "wordnet";  // "wordnet", "spam" or a `label<TAB>text` file
  std::string split = "random";  // "random" or (spam only) "time"
  double train_fraction = 0;     // random split: 0 means the dataset's own (wordnet 0.9, spam 0.8, file 0.9)
  double dev_fraction = 0.1;     // of the training split, held out for model selection
  uint64_t data_seed = 0;        // the split's seed (the notes' baselines use 0)
  std::string out_dir = "runs/biblosa";
  std::string device = "cpu";
  int threads = 0;  // 0: all hardware threads
  int64_t epochs = 5;
  int64_t batch = 64;
  int64_t max_len = 200;      // tokens kept per text (long e-mails are cut)
  int64_t min_count = 1;      // vocabulary: occurrences in the training texts
  int64_t max_vocab = 50000;  // vocabulary: most frequent words kept, PAD and UNK included (0: no limit)
  double lr = 1e-3;
  double l2 = 1e-4;                // coefficient of TextClassifier::l2_penalty (the reference's wd)
  double clip = 0;                 // global gradient-norm clip (0: off, as the reference)
  int64_t checkpoint_every = 500;  // steps between checkpoints (and at every epoch's end)
  uint64_t seed = 1;               // initialisation, dropout and batch order
  bool resume = false;
  int64_t stop_after = 0;  // > 0: checkpoint and exit after this step, as if preempted
  int64_t limit_train =
      0;  // > 0: train on the first N texts of the (shuffled) training set only (smoke runs)
  TextClassifierConfig
      model;  // vocab_size and num_classes come from the data; block_len 0: the experiments' rule
};

// Returns the process exit code.
int train_biblosa(const BiblosaTrainOptions& options);

struct BiblosaPredictOptions {
  std::string run_dir = "runs/biblosa";  // reads <run_dir>/best.safetensors (else checkpoint.safetensors)
  std::vector<std::string> texts;
  int64_t top = 3;  // classes shown per text
  std::string device = "cpu";
  int threads = 0;
};

// `loom predict biblosa`: rebuilds the classifier and its vocabulary from the run's checkpoint and prints the
// most probable classes of each text. Returns the process exit code.
int predict_biblosa(const BiblosaPredictOptions& options);

}  // namespace loom::models
