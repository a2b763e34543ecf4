#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench.sh [psyne_bench options] - the README's first command: installs what
# a fresh Debian 12 machine lacks to build psyne (scripts/deps.sh), builds
# the Release configuration in build/, and runs build/benchmarks/psyne_bench
# (by default its set of workloads on a memory:// channel; --help lists the
# options, which are passed on).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh build
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target psyne_bench >/dev/null
exec ./build/benchmarks/psyne_bench "$@"
