#!/usr/bin/env bash
# On the GPU machine (the device tool; prepared by bench/gpu_prepare.sh): unpacks .gpu/*.deb under /tmp/deps,
# builds Loom with CUDA on every core, runs the CUDA test suites and bench_cuda, then PyTorch's GPU reference
# (bench/pytorch/gpu_reference.py). Logs go to $OUT (the device tool's folder that comes back), or ./gpu-out.
# Each stage has its own time limit so that one hang cannot eat the session's device time; the whole script is
# sized to end within about 9 minutes on an H200 machine with 16 cores.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
deps=/tmp/deps
mkdir -p "$deps"
for f in .gpu/*.deb; do dpkg -x "$f" "$deps"; done
lib=$deps/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$lib/openblas-pthread:$lib:${LD_LIBRARY_PATH:-}
{
  date -u
  nvidia-smi
  nvcc --version
  nproc
  python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)"
} > "$out/device.txt" 2>&1

stage() {  # stage NAME SECONDS COMMAND...: runs it with a limit, logging to $out/NAME.log
  local name=$1 limit=$2
  shift 2
  echo "== $name ($(date -u +%T))"
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "   rc=$rc"
  tail -n 5 "$out/$name.log"
  return $rc
}

generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
stage configure 120 cmake -S . -B build-gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DLOOM_CUDA=ON -DLOOM_TEST_CUDA_EMULATION=OFF \
  -DCMAKE_PREFIX_PATH="$deps/usr" -DCMAKE_LIBRARY_PATH="$lib/openblas-pthread" \
  -DCMAKE_INCLUDE_PATH="$deps/usr/include/x86_64-linux-gnu/openblas-pthread" || exit 1
stage build "${LOOM_GPU_BUILD_LIMIT:-300}" cmake --build build-gpu -j "$(nproc)" --target test_cuda test_op_parity test_models_cuda \
  test_reversible bench_cuda || exit 1
stage test_cuda 60 build-gpu/tests/test_cuda
stage test_op_parity 120 build-gpu/tests/test_op_parity
stage test_models_cuda 60 build-gpu/tests/test_models_cuda
stage test_reversible_cuda 60 build-gpu/tests/test_reversible --gtest_filter='*Cuda*'
stage bench_cuda 180 build-gpu/bench/bench_cuda --benchmark_min_time=0.2
PYTHONUNBUFFERED=1 stage torch_gpu 150 python3 bench/pytorch/gpu_reference.py --repeats 10
exit 0
