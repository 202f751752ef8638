#!/usr/bin/env bash
# The issue's GCIDE comparison: a character language model trained for two hours of training steps on this
# machine, then its test bits-per-character over the whole test split (5 % of GCIDE, 1,997,617 characters),
# next to the compressors on the same text.
#   usage: models/reformer/gcide_budget.sh [build dir] [runs dir] [reformer|transformer|compressors] [minutes]
# Each model takes the whole machine (2 threads) for its budget; run them one after the other.
set -euo pipefail
build=${1:-build}
runs=${2:-runs/gcide}
what=${3:-reformer}
minutes=${4:-120}
loom="$build/bin/loom"
mkdir -p "$runs"
case "$what" in
  reformer)  # 6 reversible layers (local, LSH alternating), d 256, 2,048-character sequences, 4,096 tokens a step
    "$loom" train reformer --data gcide --cache-dir "$runs" --seq 2048 --batch 2 --steps 6000 --warmup 200 \
      --lr 1e-3 --lr-final 1e-4 --dropout 0 --eval-every 500 --checkpoint-every 500 --threads 2 \
      --time-budget "$minutes" --out "$runs/reformer" 2>&1 | tee "$runs/reformer.log" ;;
  transformer)  # the plain pre-norm Transformer (dense causal attention), 256-character sequences, 4,096 a step
    "$loom" train transformer --data gcide --cache-dir "$runs" --seq 256 --batch 16 --steps 7500 --warmup 200 \
      --lr 1e-3 --lr-final 1e-4 --dropout 0 --eval-every 500 --checkpoint-every 500 --threads 2 \
      --time-budget "$minutes" --out "$runs/transformer" 2>&1 | tee "$runs/transformer.log" ;;
  compressors)  # gzip / bzip2 / xz on the whole text and on the test split alone (needs $runs/gcide.txt)
    python3 - "$runs/gcide.txt" <<'PY'
import bz2, gzip, lzma, sys
text = open(sys.argv[1], "rb").read()
test = text[len(text) * 95 // 100:]
for name, pack in [("gzip -9", lambda b: gzip.compress(b, 9)), ("bzip2 -9", lambda b: bz2.compress(b, 9)),
                   ("xz -9e", lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME))]:
    print(f"{name}: whole text {8 * len(pack(text)) / len(text):.3f} bpc, test split {8 * len(pack(test)) / len(test):.3f} bpc")
PY
    ;;
  *) echo "unknown: $what (reformer, transformer or compressors)" >&2; exit 2 ;;
esac
