#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# deps.sh GROUP... - installs the Debian 12 packages psyne's commands need,
# where they are missing. The one list of them: scripts/bench.sh,
# scripts/check.sh and .ci/run all call this. Groups:
#   build   compile psyne and psyne_bench
#   test    everything the test suite uses: clang and its runtimes (the
#           sanitizer builds and libFuzzer), Eigen, OpenBLAS and libuv (the tests
#           and examples that use them), iproute2 and nftables (tcp_netns)
#   peers   the libraries psyne is compared with (benchmarks/compare)
#   format  clang-format-14 (scripts/format.sh)
# Runs apt-get as root, or through sudo. Prints what it installs.
set -euo pipefail

build=(gcc g++ make cmake pkg-config)
test=("${build[@]}" clang libclang-rt-14-dev libeigen3-dev libopenblas-dev libuv1-dev python3-dev python3-numpy python3-pytest python3-setuptools python3-venv iproute2 nftables)
peers=(dpdk-dev iceoryx libiceoryx-binding-c-dev libzmq3-dev libnng-dev gnuplot-nox python3-zmq)
format=(clang-format-14)

[ $# -gt 0 ] || { echo "usage: scripts/deps.sh build|test|peers|format ..." >&2; exit 2; }
wanted=()
for group in "$@"; do
  case $group in
    build) wanted+=("${build[@]}") ;;
    test) wanted+=("${test[@]}") ;;
    peers) wanted+=("${peers[@]}") ;;
    format) wanted+=("${format[@]}") ;;
    *) echo "deps.sh: no group '$group' (build, test, peers, format)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps.sh: missing ${missing[*]}; run as root or install sudo" >&2; exit 1; }
  as_root=(sudo)
fi
echo "== installing: ${missing[*]}"
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
