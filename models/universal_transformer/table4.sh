#!/usr/bin/env bash
# The Universal Transformer paper's Table 4 at a scale this machine trains: copy, reverse and addition, trained on
# lengths up to 40 (100,000 examples, positions at random offsets) and evaluated on lengths up to 400, for the UT
# with ACT, the UT with 8 fixed steps and the vanilla Transformer (6 layers) of the same width. Prints the
# markdown table of teacher-forced char / sequence accuracy (tensor2tensor's metrics; the decoded accuracy on a
# few examples is in each run's metrics.jsonl). Positions start at one random offset per example (--offsets shared,
# the default). Each training is single-threaded and deterministic, so the runs may be paired in any order.
#   usage: models/universal_transformer/table4.sh [build dir] [runs dir] [steps] [tasks...]
# Runs two trainings at a time with one thread each (this machine has two cores; LOOM_PARALLEL=1: one after the
# other) and prints each one's wall time. LOOM_UT_FLAGS adds flags to every training, e.g. a smaller scale:
#   LOOM_UT_FLAGS="--train-length 10 --eval-length 100" models/universal_transformer/table4.sh build runs/t4-10 2000
set -euo pipefail
build=${1:-build}
runs=${2:-runs/ut_table4}
steps=${3:-1000}
shift $(( $# < 3 ? $# : 3 ))
tasks=("$@")
[ ${#tasks[@]} -eq 0 ] && tasks=(copy reverse addition)
loom="$build/bin/loom"
# shellcheck disable=SC2206 # LOOM_UT_FLAGS is a list of flags, split on spaces
common=(train ut --steps "$steps" --batch 64 --eval-every 500 --eval-size 200 --decode-examples 8 --threads 1
        ${LOOM_UT_FLAGS:-})
mkdir -p "$runs"
source "$(dirname "$0")/three_models.sh"
for task in "${tasks[@]}"; do
  train_three "$task" "${LOOM_PARALLEL:-2}"
done
print_table accuracy "${tasks[@]}"
