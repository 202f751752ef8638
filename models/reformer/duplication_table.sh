#!/usr/bin/env bash
# The Reformer paper's Table 2 at a scale this machine trains in minutes: four one-layer models on the 0w0w
# duplication task (trained with full attention and with LSH-1/2/4), each evaluated with full attention and with
# 8/4/2/1 hash rounds. Prints the markdown table docs/models/reformer.md shows.
#   usage: models/reformer/duplication_table.sh [build dir] [runs dir] [steps] [|w|]
# Runs two trainings at a time with one thread each (this machine has two cores).
set -euo pipefail
build=${1:-build}
runs=${2:-runs/duplication}
steps=${3:-1200}
w_len=${4:-31}
loom="$build/bin/loom"
common=(train reformer --task duplication --w-len "$w_len" --symbols 127 --layers 1 --attention lsh
        --lsh-chunk 16 --d-model 128 --d-ff 256 --heads 4 --dropout 0 --batch 32 --lr 1e-3 --warmup 50
        --steps "$steps" --eval-every 200 --eval-batches 8 --threads 1)
train() {  # name, extra flags...
  local name=$1
  shift
  "$loom" "${common[@]}" --out "$runs/$name" "$@" > "$runs/$name.log" 2>&1
}
mkdir -p "$runs"
start=$(date +%s)
train full --train-full-attention --hashes 1 & train lsh-1 --hashes 1 & wait
train lsh-2 --hashes 2 & train lsh-4 --hashes 4 & wait
echo "all four trainings: $(( ($(date +%s) - start) / 60 )) min (two at a time, one thread each)"
echo
echo "| train \\ eval | Full | LSH-8 | LSH-4 | LSH-2 | LSH-1 |"
echo "|---|---|---|---|---|---|"
for name in full lsh-4 lsh-2 lsh-1; do
  python3 - "$runs/$name/metrics.jsonl" "$name" <<'PY'
import json, sys
row = [json.loads(l) for l in open(sys.argv[1]) if '"test"' in l][-1]
label = {"full": "Full attention"}.get(sys.argv[2], sys.argv[2].upper())
print("| " + label + " | " + " | ".join("%.1f%%" % (100 * row[k]) for k in ["full", "lsh-8", "lsh-4", "lsh-2", "lsh-1"]) + " |")
PY
done
