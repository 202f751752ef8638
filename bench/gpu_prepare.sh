#!/usr/bin/env bash
# Run here, on the Debian development machine, before a session's device call: downloads into .gpu/ the
# Debian packages that the GPU machine lacks (it has nvcc, CMake, ninja and PyTorch, but no OpenBLAS,
# GoogleTest, Google Benchmark, nlohmann-json, CLI11 or zlib headers, and cannot reach a package registry),
# and makes git ignore .gpu/ (about 14 MB: it travels with `carry`). Then call the device tool's run with
#   carry [".gpu"], command "bash bench/gpu_session.sh", timeout_s 600
# which builds, tests and benchmarks there (see gpu_session.sh) and returns the logs.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.gpu/' .git/info/exclude || echo '/.gpu/' >> .git/info/exclude
mkdir -p .gpu
cd .gpu
apt-get download libopenblas-dev libopenblas-pthread-dev libopenblas0-pthread libopenblas0 \
  libgtest-dev libgmock-dev libbenchmark-dev libbenchmark1debian nlohmann-json3-dev libcli11-dev zlib1g-dev
du -sh .
