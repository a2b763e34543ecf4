#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench_sanity.sh PSYNE_BENCH - psyne_bench's own sanity (ctest, Release):
#  - a short run of every workload prints RESULT lines of the WORKLOADS.md
#    form, with the metrics each workload must report;
#  - --json prints one object per result, with the same results;
#  - --transport, --mode, --duration, --histogram, --perf, --table and the
#    progress line do what they say;
#  - a lost message (--inject-loss) aborts every workload's checking, in
#    process and across processes, on every ring mode.
set -uo pipefail
bench=$1
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err" "$out.shm-before"' EXIT
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
    *dynamic-resize\ *) need=(grow_us shrink_us copy_us grow_vs_copy grow_slabs_us shrink_slabs_us slabs_vs_own) ;;
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

# --capacity sizes the rings (a 1 MiB message needs at least that much) and says so;
# --publish alternates publishing handles with plain ones.
"$bench" --workload inproc-spsc-tput,ipc-spsc-tput --size 4096 --capacity 64k --iterations 2000 --runs 1 \
  >"$out" 2>"$err" || fail "--capacity 64k failed: $(cat "$err")"
[ "$(grep -c '^RESULT .*-spsc-tput .* capacity=65536' "$out")" -ge 2 ] || fail "--capacity: $(cat "$out")"
"$bench" --workload inproc-spsc-tput --size 1048576 --capacity 64k --iterations 10 --runs 1 >/dev/null 2>&1 &&
  fail "--capacity 64k with 1 MiB messages did not fail"
"$bench" --capacity 1000 >/dev/null 2>&1 && fail "--capacity 1000 accepted"
"$bench" --workload ipc-spsc-tput --size 64 --publish --iterations 5000 --runs 1 >"$out" 2>"$err" ||
  fail "--publish failed: $(cat "$err")"
grep -q '^RESULT system=psyne-published workload=ipc-spsc-tput .* vs_unpublished=[0-9]' "$out" ||
  fail "--publish: $(cat "$out")"
echo "bench_sanity: --capacity and --publish ok"

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

# --transport picks workloads by transport; --mode runs the many-thread
# workload on each ring mode with the threads the mode allows.
"$bench" --transport ipc --size 64 --iterations 5000 --runs 1 >"$out" 2>"$err" || fail "--transport ipc: $(cat "$err")"
[ "$(grep -c '^RESULT' "$out")" -ge 3 ] && ! grep '^RESULT' "$out" | grep -vq ' workload=ipc-' ||
  fail "--transport ipc ran other workloads: $(cat "$out")"
"$bench" --workload inproc-mpmc-tput --mode spsc,spmc,mpsc,mpmc,broadcast --producers 3 --consumers 2 \
  --iterations 30000 --runs 1 >"$out" 2>"$err" || fail "--mode: $(cat "$err")"
for want in "spsc producers=1 consumers=1" "spmc producers=1 consumers=2" "mpsc producers=3 consumers=1" \
  "mpmc producers=3 consumers=2" "broadcast producers=1 consumers=2"; do
  grep -q "^RESULT system=psyne workload=inproc-mpmc-tput size=64 mps=[0-9]* .* mode=$want " "$out" ||
    fail "--mode: no result for mode=$want: $(cat "$out")"
done
"$bench" --mode ring >/dev/null 2>&1 && fail "--mode ring was accepted"
echo "bench_sanity: --transport and --mode ok"

# --duration sizes runs from the warm-up's rate (and excludes --iterations);
# --histogram's counts add up to every measured round trip; --perf reports
# counters per message; --table has one row per result.
"$bench" --duration 0.1 --iterations 1000 >/dev/null 2>&1 && fail "--duration with --iterations was accepted"
"$bench" --workload inproc-spsc-tput,inproc-pingpong --size 64 --api single --duration 0.1 --runs 2 --histogram \
  --perf --table >"$out" 2>"$err" || fail "--duration --histogram --perf --table: $(cat "$err")"
count=$(sed -n 's/^RESULT .*workload=inproc-spsc-tput .* count=\([0-9]*\).*/\1/p' "$out")
[ -n "$count" ] && [ "$count" -gt 1000 ] || fail "--duration: a run of $count messages: $(cat "$out")"
trips=$(sed -n 's/^RESULT .*workload=inproc-pingpong .* round_trips=\([0-9]*\).*/\1/p' "$out")
samples=$(sed -n 's/^# inproc-pingpong 64 B round trips of all 2 runs: \([0-9]*\) samples.*/\1/p' "$out")
[ -n "$trips" ] && [ "$samples" = $((trips * 2)) ] || fail "--histogram: $samples samples for 2 x $trips: $(cat "$out")"
in_bins=$(sed -n 's/^#   \[.*) ns *\([0-9]*\) .*/\1/p' "$out" | awk '{ n += $1 } END { print n + 0 }')
[ "$in_bins" = "$samples" ] || fail "--histogram: bins hold $in_bins of $samples samples: $(cat "$out")"
[ "$(grep -c '^RESULT .* cpu_ns_per_\(msg\|rtt\)=[0-9.]* ctx_switches_per_\(msg\|rtt\)=[0-9.]*' "$out")" -eq 2 ] ||
  fail "--perf: no counters: $(cat "$out")"
grep -q '^workload  *size  *system / variant  *msgs/s' "$out" || fail "--table: no header: $(cat "$out")"
[ "$(grep -c '^inproc-\(spsc-tput\|pingpong\)  *64 B ' "$out")" -eq 2 ] || fail "--table: not one row per result"
echo "bench_sanity: --duration, --histogram, --perf and --table ok"

# The progress line: only on a terminal (script(1) gives the run one).
"$bench" --workload inproc-pingpong --iterations 5000 --runs 2 >/dev/null 2>"$err" && ! grep -q 'run 2/2' "$err" ||
  fail "progress written to a stderr that is not a terminal"
if command -v script >/dev/null; then
  script -qec "$bench --workload inproc-pingpong --iterations 5000 --runs 2" /dev/null >"$out" 2>&1 </dev/null
  grep -q '\[1/1\] inproc-pingpong 64 B: run 2/2' "$out" || fail "no progress line on a terminal: $(cat -v "$out")"
  echo "bench_sanity: progress line on a terminal ok"
fi

# An aborted ipc run leaves its segments in /dev/shm, as any crash does
# (survivors or the next opener of a name reclaim them; these names are
# never opened again): remove those that were not there before.
ls /dev/shm >"$out.shm-before" 2>/dev/null || true
remove_new_bench_segments() {
  ls /dev/shm 2>/dev/null | grep '^psyne\.bench-' | grep -vxFf "$out.shm-before" | sed 's|^|/dev/shm/|' |
    xargs -r rm -f
}
for w in inproc-spsc-tput inproc-pingpong inproc-mpmc-tput ipc-spsc-tput ipc-pingpong tcp-tput tcp-pingpong; do
  if timeout 120 "$bench" --workload "$w" --size 64 --iterations 5000 --runs 1 --inject-loss 1000 >/dev/null 2>"$err"; then
    fail "$w: a lost message went unnoticed"
  fi
  remove_new_bench_segments
  grep -q "was lost, duplicated or reordered" "$err" || fail "$w: did not fail on the lost message: $(cat "$err")"
  echo "bench_sanity: $w aborts on a lost message"
done
for m in mpsc spmc broadcast; do
  if timeout 120 "$bench" --workload inproc-mpmc-tput --mode $m --iterations 20000 --runs 1 --inject-loss 1000 \
    >/dev/null 2>"$err"; then
    fail "--mode $m: a lost message went unnoticed"
  fi
  grep -q "was lost, duplicated or reordered" "$err" || fail "--mode $m: did not fail on the lost message: $(cat "$err")"
  echo "bench_sanity: inproc-mpmc-tput --mode $m aborts on a lost message"
done
