#!/bin/sh
# SPDX-License-Identifier: MIT
# bench_sigint.sh PSYNE_BENCH - psyne_bench stopped with Ctrl-C (SIGINT) or
# SIGTERM in the middle of an ipc:// workload leaves no segment in /dev/shm.
set -u
bench=$1
for sig in INT TERM; do
  "$bench" --workload ipc-spsc-tput --runs 64 --iterations 100000000 >/dev/null 2>&1 &
  pid=$!
  seg=/dev/shm/psyne.bench-spsc-$pid
  i=0
  while [ ! -e "$seg" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
  [ -e "$seg" ] || { echo "bench_sigint: $seg never appeared"; kill -KILL $pid; exit 1; }
  kill -$sig $pid
  wait $pid
  rc=$?
  sleep 0.2 # its producer process dies with it (PR_SET_PDEATHSIG)
  if ls /dev/shm | grep -q -- "-$pid\$"; then
    echo "bench_sigint: SIG$sig (exit $rc) left $(ls /dev/shm | grep -- "-$pid\$")"
    exit 1
  fi
  echo "bench_sigint: SIG$sig stopped psyne_bench (exit $rc), nothing left in /dev/shm"
done
