#!/usr/bin/env bash
# The Universal Transformer paper's Table 1 (bAbI, 1K setting) on GENERATED bAbI-like tasks 1 and 2
# (models/data/babi_generator.h; not the released set): the fact-level model of the paper (babi_model.h) as
# UT with ACT, UT with 8 fixed steps and a 6-layer Transformer, 1,000 training (LOOM_BABI_TRAIN=10000 for the
# 10K setting) and 1,000 test questions per task. Prints the markdown table of test error (1 - accuracy of the
# answer word).
#   usage: models/universal_transformer/babi_table.sh [build dir] [runs dir] [steps] [tasks...]
# Runs the trainings one after another with one thread each, or two at a time with LOOM_PARALLEL=2.
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
run() {  # name, flags...
  local name=$1
  shift
  local start=$(date +%s)
  "$loom" "${common[@]}" --out "$runs/$name" "$@" > "$runs/$name.log" 2>&1
  echo "$name: $(( ($(date +%s) - start) / 60 )) min"
}
for task in "${tasks[@]}"; do
  if [ "${LOOM_PARALLEL:-1}" = 2 ]; then
    run "$task-act" --task "$task" & run "$task-fixed" --task "$task" --recurrence fixed --fixed-steps 8 & wait
  else
    run "$task-act" --task "$task"
    run "$task-fixed" --task "$task" --recurrence fixed --fixed-steps 8
  fi
  run "$task-transformer" --task "$task" --model transformer --layers 6
done
python3 - "$runs" "${tasks[@]}" <<'PY'
import json, os, sys
runs, tasks = sys.argv[1], sys.argv[2:]
def final(name):
    return [json.loads(l) for l in open(os.path.join(runs, name, "metrics.jsonl")) if '"split":"test"' in l][-1]
print("| model | " + " | ".join(t.replace("babi", "task ") for t in tasks) + " |")
print("|---|" + "---|" * len(tasks))
for suffix, label in [("transformer", "Transformer (6 layers)"), ("fixed", "UT, 8 fixed steps"), ("act", "UT with ACT")]:
    cells = []
    for t in tasks:
        r = final(t + "-" + suffix)
        cell = "%.1f%%" % (100 * (1 - r["seq_accuracy"]))
        if suffix == "act":
            cell += " (ponder %.2f)" % r["ponder_encoder"]
        cells.append(cell)
    print("| " + label + " | " + " | ".join(cells) + " |")
PY
