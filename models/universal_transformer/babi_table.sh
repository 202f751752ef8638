#!/usr/bin/env bash
# The Universal Transformer paper's Table 1 (bAbI, 1K setting) on GENERATED bAbI-like tasks 1 and 2
# (models/data/babi_generator.h; not the released set): the fact-level model of the paper (babi_model.h) as
# UT with ACT, UT with 8 fixed steps and a 6-layer Transformer, 1,000 training (LOOM_BABI_TRAIN=10000 for the
# 10K setting) and 1,000 test questions per task. Prints the markdown table of test error (1 - accuracy of the
# answer word).
#   usage: models/universal_transformer/babi_table.sh [build dir] [runs dir] [steps] [tasks...]
# Runs the trainings one after another with one thread each, or two at a time with LOOM_PARALLEL=2, and prints
# each one's wall time. The loop and the table are three_models.sh's, shared with table4.sh.
set -euo pipefail
build=${1:-build}
runs=${2:-runs/ut_babi}
steps=${3:-3000}
shift $(( $# < 3 ? $# : 3 ))
tasks=("$@")
[ ${#tasks[@]} -eq 0 ] && tasks=(babi1 babi2)
loom="$build/bin/loom"
common=(train ut --babi-encoding facts --babi-train "${LOOM_BABI_TRAIN:-1000}" --steps "$steps" --batch 32
        --eval-every 500 --threads 1)
mkdir -p "$runs"
source "$(dirname "$0")/three_models.sh"
for task in "${tasks[@]}"; do
  train_three "$task" "${LOOM_PARALLEL:-1}"
done
print_table error "${tasks[@]}"
