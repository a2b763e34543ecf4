#!/usr/bin/env bash
# bench_sanity.sh PSYNE_BENCH - psyne_bench's own sanity (ctest, Release):
#  - a short run of every workload prints RESULT lines of the WORKLOADS.md
#    form, with the metrics each workload must report;
#  - --json prints one object per result, with the same results;
#  - a lost message (--inject-loss) aborts every workload's checking, in
#    process and across processes.
set -uo pipefail
bench=$1
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
fail() { echo "bench_sanity: $*" >&2; exit 1; }

args=(--size 64,4096 --iterations 5000 --runs 1)
"$bench" "${args[@]}" >"$out" 2>"$err" || fail "psyne_bench failed: $(cat "$err")"
n=0
while read -r line; do
  [[ $line == RESULT* ]] || continue
  n=$((n + 1))
  [[ $line =~ ^RESULT\ system=[A-Za-z0-9_.-]+\ workload=[a-z-]+\ size=[0-9]+(\ [a-z0-9_]+=[A-Za-z0-9_.+-]+)+$ ]] ||
    fail "malformed: $line"
  case $line in
    *-tput\ *) need=(mps) ;;
    *-pingpong\ *) need=(rtt_p50_ns rtt_p99_ns rtt_p999_ns oneway_p50_ns) ;;
    *dynamic-resize\ *) need=(grow_us shrink_us copy_us grow_vs_copy) ;;
    *) fail "unknown workload: $line" ;;
  esac
  [[ $line == *-spsc-tput\ * ]] && need+=(gbps)
  for m in "${need[@]}"; do
    [[ $line =~ \ $m=[0-9] ]] || fail "no $m: $line"
  done
done <"$out"
for w in inproc-spsc-tput inproc-pingpong inproc-mpmc-tput ipc-spsc-tput ipc-pingpong tcp-tput tcp-pingpong \
  dynamic-resize; do
  grep -q "^RESULT system=psyne workload=$w " "$out" || fail "no RESULT for $w"
done
echo "bench_sanity: $n RESULT lines well formed"

# Placement and dynamic rings: the run says what memory it got, and
# --dynamic compares dynamic rings with static ones (vs_static).
"$bench" --workload inproc-spsc-tput --size 64 --api single --iterations 20000 --runs 1 --dynamic --hugepages \
  --mlock --numa-node 0 --pin 1,0 >"$out" 2>"$err" || fail "psyne_bench --dynamic --hugepages failed: $(cat "$err")"
grep -q '^# ring memory (a 4 MiB probe ring): .* pages of [0-9]* bytes, NUMA node 0, locked$' "$out" ||
  fail "--hugepages --mlock --numa-node: no placement line: $(cat "$out")"
grep -q '^RESULT system=psyne-dynamic workload=inproc-spsc-tput size=64 .* vs_static=[0-9]' "$out" ||
  fail "--dynamic: no vs_static: $(cat "$out")"
"$bench" --numa-node 4000 --workload inproc-spsc-tput >/dev/null 2>"$err" && fail "--numa-node 4000 was accepted"
echo "bench_sanity: --dynamic, --hugepages, --mlock, --numa-node, --pin ok"

# --no-copy-check: every in-process message read where it was written, and
# a message read from a copy (--inject-copy) is caught.
"$bench" --workload inproc-spsc-tput --size 64,4096 --iterations 20000 --runs 1 --no-copy-check >"$out" 2>"$err" ||
  fail "--no-copy-check failed: $(cat "$err")"
[ "$(grep -c ' copy_check=pass$' "$out")" -ge 3 ] || fail "--no-copy-check: no copy_check=pass: $(cat "$out")"
if "$bench" --workload inproc-spsc-tput --size 64 --api single --iterations 20000 --runs 1 --no-copy-check \
  --inject-copy 1000 >/dev/null 2>"$err"; then
  fail "--no-copy-check: a copied message went unnoticed"
fi
grep -q "it was copied" "$err" || fail "--inject-copy: did not fail on the copy: $(cat "$err")"
echo "bench_sanity: --no-copy-check passes, and catches a copy"

"$bench" --workload inproc-spsc-tput,inproc-pingpong --size 64 --iterations 5000 --runs 1 --json >"$out" 2>"$err" ||
  fail "psyne_bench --json failed: $(cat "$err")"
[ "$(grep -c '^{"system": "psyne", "workload": "[a-z-]*", "size": 64, .*}$' "$out")" -eq 3 ] ||
  fail "--json: expected 3 objects, got: $(cat "$out")"
! grep -q '^RESULT' "$out" || fail "--json printed RESULT lines"
echo "bench_sanity: --json ok"

for w in inproc-spsc-tput inproc-pingpong inproc-mpmc-tput ipc-spsc-tput ipc-pingpong tcp-tput tcp-pingpong; do
  if timeout 120 "$bench" --workload "$w" --size 64 --iterations 5000 --runs 1 --inject-loss 1000 >/dev/null 2>"$err"; then
    fail "$w: a lost message went unnoticed"
  fi
  grep -q "was lost, duplicated or reordered" "$err" || fail "$w: did not fail on the lost message: $(cat "$err")"
  echo "bench_sanity: $w aborts on a lost message"
done
