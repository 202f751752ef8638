// The `loom` command: `loom train <model> [options]`. Every model's driver hangs off the same command so that
// flags, outputs and errors look alike.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "loom/core/error.h"
#include "loom/models/char_mlp/train_char_mlp.h"

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

void add_char_mlp(CLI::App& train, loom::models::CharMlpTrainOptions& o) {
  CLI::App* cmd = train.add_subcommand(
      "charmlp",
      "Character-level MLP language model (Bengio et al. 2003) with hand-written gradients; reports "
      "bits-per-character on the validation and test splits");
  cmd->add_option("--data", o.data, "'kjv' (King James Bible from Debian's bible-kjv) or a path to a text file")
      ->capture_default_str();
  cmd->add_option("--cache-dir", o.cache_dir, "Directory for decoded corpora")->capture_default_str();
  cmd->add_option("--out", o.out_dir, "Run directory: metrics.jsonl and checkpoint.safetensors")
      ->capture_default_str();
  cmd->add_option("--device", o.device, "cpu or cuda[:N]")->capture_default_str();
  cmd->add_option("--threads", o.threads, "CPU threads (0: all)")->capture_default_str()->check(kNonNegative);
  cmd->add_option("--steps", o.steps, "Training steps")->capture_default_str()->check(kPositive);
  cmd->add_option("--batch", o.batch, "Sequences per step")->capture_default_str()->check(kPositive);
  cmd->add_option("--lr", o.lr, "Peak Adam learning rate")->capture_default_str()->check(kPositive);
  cmd->add_option("--lr-final", o.lr_final, "Learning rate at the last step (cosine decay)")
      ->capture_default_str()->check(kNonNegative);
  cmd->add_option("--eval-every", o.eval_every, "Steps between validation passes")
      ->capture_default_str()->check(kPositive);
  cmd->add_option("--checkpoint-every", o.checkpoint_every, "Steps between checkpoints")
      ->capture_default_str()->check(kPositive);
  cmd->add_option("--seed", o.seed, "Random seed")->capture_default_str();
  cmd->add_flag("--resume", o.resume, "Continue from <out>/checkpoint.safetensors");
  cmd->add_option("--context", o.model.context, "Characters of history")->capture_default_str()->check(kPositive);
  cmd->add_option("--embed", o.model.embed_dim, "Embedding width")->capture_default_str()->check(kPositive);
  cmd->add_option("--hidden", o.model.hidden, "Hidden layer width")->capture_default_str()->check(kPositive);
  cmd->callback([&o] { std::exit(loom::models::train_char_mlp(o)); });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Loom: train efficient-Transformer models from the command line"};
  app.require_subcommand(1);
  CLI::App* train = app.add_subcommand("train", "Train a model (see `loom train --help` for the models)");
  train->require_subcommand(1);
  loom::models::CharMlpTrainOptions char_mlp;
  add_char_mlp(*train, char_mlp);
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
