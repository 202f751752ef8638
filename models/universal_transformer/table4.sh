#!/usr/bin/env bash
# The Universal Transformer paper's Table 4 at a scale this machine trains: copy, reverse and addition, trained on
# lengths up to 40 (100,000 examples, positions at random offsets) and evaluated on lengths up to 400, for the UT
# with ACT, the UT with 8 fixed steps and the vanilla Transformer (6 layers) of the same width. Prints the
# markdown table of teacher-forced char / sequence accuracy (tensor2tensor's metrics; the decoded accuracy on a
# few examples is in each run's metrics.jsonl). Positions start at one random offset per example (--offsets shared,
# the default). Each training is single-threaded and deterministic, so the runs may be paired in any order.
#   usage: models/universal_transformer/table4.sh [build dir] [runs dir] [steps] [tasks...]
# Runs two trainings at a time with one thread each (this machine has two cores) and prints each one's wall time.
set -euo pipefail
build=${1:-build}
runs=${2:-runs/ut_table4}
steps=${3:-1000}
shift $(( $# < 3 ? $# : 3 ))
tasks=("$@")
[ ${#tasks[@]} -eq 0 ] && tasks=(copy reverse addition)
loom="$build/bin/loom"
common=(train ut --steps "$steps" --batch 64 --eval-every 500 --eval-size 200 --decode-examples 8 --threads 1)
mkdir -p "$runs"
source "$(dirname "$0")/three_models.sh"
for task in "${tasks[@]}"; do
  train_three "$task" 2
done
print_table accuracy "${tasks[@]}"
