#!/usr/bin/env bash
# Runs every Loom benchmark and the PyTorch comparison on this machine, one after another (nothing else should
# run meanwhile: the machine has 2 cores). Usage: bash bench/run_all.sh [build-dir]. The figures in
# docs/performance.md come from this script.
set -euo pipefail
build=${1:-build}
echo "# $(date -u +%FT%TZ) on $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$build/bench/bench_matmul" --benchmark_min_time=2 --benchmark_repetitions=4 --benchmark_report_aggregates_only=true
"$build/bench/bench_bandwidth" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
for b in "$build"/bench/bench_attention "$build"/bench/bench_transformer_step "$build"/bench/bench_reversible_act; do
  [[ -x $b ]] && "$b"
done
# Long sequences: JSON kept for bench/long_attention_report.py, which prints the tables of docs/performance.md.
"$build/bench/bench_long_attention" --benchmark_format=json > "$build/long_attention.json"
"$build/bench/bench_reformer" --benchmark_filter='Reformer/(Length|Depth)|Dense' --benchmark_out="$build/reformer.json" --benchmark_out_format=json  # then bench/pytorch/reformer_lm.py and bench/reformer_report.py (docs/performance.md, issue 6)
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
  OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/pytorch/transformer_step.py --threads 2 --impl encoder
  OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/pytorch/transformer_step.py --threads 2 --impl manual
  /usr/bin/python3 bench/pytorch/transformer_step.py --threads 2 --impl encoder
  OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/pytorch/long_attention.py --threads 2 --repeats 3 --memory \
    > "$build/long_attention_torch.jsonl"
  python3 bench/long_attention_report.py "$build/long_attention.json" "$build/long_attention_torch.jsonl"
else
  python3 bench/long_attention_report.py "$build/long_attention.json"
  echo "python3-torch not installed: PyTorch comparison skipped (apt-get install -y python3-torch)"
fi
# Bi-BloSA against DiSAN and multi-head attention (issue 8) and the Universal Transformer step with ACT (issue 7):
# each report runs its Loom benchmark and its PyTorch reference back to back and prints docs/performance.md's
# tables (the Bi-BloSA one also redraws docs/models/biblosa_efficiency.svg).
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
  (cd "$build" && python3 "$OLDPWD/bench/biblosa_report.py" --run . --svg "$OLDPWD/docs/models/biblosa_efficiency.svg")
  python3 bench/ut_report.py --run "$build" --out "$build/ut_bench" --repetitions 5 --repeats 10
else
  "$build/bench/bench_biblosa"
  "$build/bench/bench_ut"
fi
