// The `loom` command: `loom train <model> [options]`. Every model's driver hangs off the same command so that
// flags, outputs and errors look alike.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "loom/core/error.h"
#include "loom/models/char_mlp/train_char_mlp.h"
#include "loom/models/transformer_lm/train_transformer_lm.h"

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
        return std::string("expected a ") + (allow_zero ? "non-negative" : "positive") + " number, got '" + value + "'";
      },
      allow_zero ? "NONNEGATIVE" : "POSITIVE");
}
const CLI::Validator kPositive = number_check(false);
const CLI::Validator kNonNegative = number_check(true);

// The flags every character-LM driver shares; the option structs name these fields alike.
template <typename Options>
void add_common_training_flags(CLI::App* cmd, Options& o) {
  cmd->add_option("--data", o.data, "'kjv' (King James Bible from Debian's bible-kjv) or a path to a text file")
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
      ->capture_default_str()->check(kNonNegative);
  cmd->add_option("--eval-every", o.eval_every, "Steps between validation passes")
      ->capture_default_str()->check(kPositive);
  cmd->add_option("--checkpoint-every", o.checkpoint_every, "Steps between checkpoints")
      ->capture_default_str()->check(kPositive);
  cmd->add_option("--seed", o.seed, "Random seed")->capture_default_str();
  cmd->add_flag("--resume", o.resume, "Continue from <out>/checkpoint.safetensors");
}

void add_char_mlp(CLI::App& train, loom::models::CharMlpTrainOptions& o) {
  CLI::App* cmd = train.add_subcommand(
      "charmlp",
      "Character-level MLP language model (Bengio et al. 2003) with hand-written gradients; reports "
      "bits-per-character on the validation and test splits");
  add_common_training_flags(cmd, o);
  cmd->add_option("--context", o.model.context, "Characters of history")->capture_default_str()->check(kPositive);
  cmd->add_option("--embed", o.model.embed_dim, "Embedding width")->capture_default_str()->check(kPositive);
  cmd->add_option("--hidden", o.model.hidden, "Hidden layer width")->capture_default_str()->check(kPositive);
  cmd->callback([&o] { std::exit(loom::models::train_char_mlp(o)); });
}

void add_transformer_lm(CLI::App& train, loom::models::TransformerLmTrainOptions& o) {
  CLI::App* cmd = train.add_subcommand(
      "transformer",
      "Decoder-only character Transformer (pre-norm, causal; the baseline of the three papers' models) trained "
      "with AdamW; reports bits-per-character on the validation and test splits");
  add_common_training_flags(cmd, o);
  cmd->add_option("--seq", o.seq, "Characters per training sequence")->capture_default_str()->check(kPositive);
  cmd->add_option("--warmup", o.warmup, "Linear warmup steps")->capture_default_str()->check(kNonNegative);
  cmd->add_option("--weight-decay", o.weight_decay, "AdamW decoupled weight decay")
      ->capture_default_str()->check(kNonNegative);
  cmd->add_option("--clip", o.clip, "Clip the global gradient norm to this (0: off)")
      ->capture_default_str()->check(kNonNegative);
  cmd->add_option("--eval-tokens", o.eval_tokens, "Validation characters per periodic pass (0: all)")
      ->capture_default_str()->check(kNonNegative);
  cmd->add_option("--stop-after", o.stop_after, "Checkpoint and exit after this step (0: run to --steps)")
      ->capture_default_str()->check(kNonNegative);
  cmd->add_option("--d-model", o.model.d_model, "Model width")->capture_default_str()->check(kPositive);
  cmd->add_option("--layers", o.model.layers, "Transformer blocks")->capture_default_str()->check(kPositive);
  cmd->add_option("--heads", o.model.heads, "Attention heads")->capture_default_str()->check(kPositive);
  cmd->add_option("--dropout", o.model.dropout, "Dropout probability")->capture_default_str()->check(kNonNegative);
  cmd->callback([&o] { std::exit(loom::models::train_transformer_lm(o)); });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Loom: train efficient-Transformer models from the command line"};
  app.require_subcommand(1);
  CLI::App* train = app.add_subcommand("train", "Train a model (see `loom train --help` for the models)");
  train->require_subcommand(1);
  loom::models::CharMlpTrainOptions char_mlp;
  add_char_mlp(*train, char_mlp);
  loom::models::TransformerLmTrainOptions transformer;
  add_transformer_lm(*train, transformer);
  try {
    app.parse(argc, argv);
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
