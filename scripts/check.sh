#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# check.sh - the README's test command: installs what a fresh Debian 12
# machine lacks (scripts/deps.sh test), then builds psyne three ways and runs
# the whole test suite on each:
#   build/        Release (gcc: the build the benchmarks use)
#   build-asan/   AddressSanitizer + UndefinedBehaviorSanitizer (clang), with
#                 the libFuzzer targets
#   build-tsan/   ThreadSanitizer (clang: gcc's cannot check the library's
#                 fences)
# and builds (without running) a clang Release in build-clang/: its
# optimization settings differ from gcc's (no LTO) and must still link. The
# sanitizer builds run the same tests with fewer messages (PSYNE_TEST_SCALE).
# Every suite runs even when one before it failed; the last line says what
# ran, what was skipped and why, and what failed. Exit status 0 only when
# every suite passed. PSYNE_WERROR=1 (CI) makes every warning an error.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test || exit 1
jobs=$(nproc 2>/dev/null || echo 2)
werror=-DPSYNE_WERROR=$([ "${PSYNE_WERROR:-0}" = 1 ] && echo ON || echo OFF)
clang_cc=(-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++)
summary=()
failed=()

# Tests ctest reported skipped, with the reason each printed ("SKIPPED ...").
skipped_in() { # dir
  local log=$1/Testing/Temporary/LastTest.log
  [ -f "$log" ] || return 0
  awk '/^[0-9]+\/[0-9]+ Testing: /{name=$3} /SKIPPED/{sub(/^.*SKIPPED:? */,""); gsub(/^\(|\)$/,""); print name " (" $0 ")"}' "$log" |
    sort -u | paste -sd ';' -
}

run_suite() { # name dir cmake-args...
  local name=$1 dir=$2; shift 2
  echo "== $dir: configure and build"
  if ! { cmake -S . -B "$dir" "$werror" "$@" >/dev/null && cmake --build "$dir" -j"$jobs" >/dev/null; }; then
    failed+=("$name (build)")
    return
  fi
  echo "== $dir: tests"
  # the whole output to the terminal and to a file (not tee /dev/stderr: where
  # stderr is a file, opening it again truncates it)
  (cd "$dir" && ctest --output-on-failure -j1) 2>&1 | tee "$dir/ctest.log"
  local out
  out=$(tail -n 40 "$dir/ctest.log")
  local count skipped
  count=$(sed -n 's/.* tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2/p' <<<"$out")
  skipped=$(skipped_in "$dir")
  if grep -q '100% tests passed' <<<"$out"; then
    summary+=("$name ${count:-?} tests${skipped:+, skipped: $skipped}")
  else
    failed+=("$name")
  fi
}

run_suite release build -DCMAKE_BUILD_TYPE=Release
# halt_on_error: a report is a failure; TSan's second_deadlock_stack for readable reports
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
run_suite asan+ubsan build-asan "${clang_cc[@]}" -DCMAKE_BUILD_TYPE=Debug \
  -DPSYNE_SANITIZE=address,undefined -DPSYNE_TEST_SCALE=0.25 -DPSYNE_BUILD_BENCHMARKS=OFF
run_suite tsan build-tsan "${clang_cc[@]}" -DCMAKE_BUILD_TYPE=Debug \
  -DPSYNE_SANITIZE=thread -DPSYNE_TEST_SCALE=0.1 -DPSYNE_BUILD_BENCHMARKS=OFF
echo "== build-clang: Release with clang, build only"
if cmake -S . -B build-clang "$werror" "${clang_cc[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
  cmake --build build-clang -j"$jobs" >/dev/null; then
  summary+=("clang release built")
else
  failed+=("clang release (build)")
fi

passed=$(IFS=';'; echo "${summary[*]:-}")
if [ ${#failed[@]} -gt 0 ]; then
  echo "== FAILED: ${failed[*]}; passed: ${passed:-none}"
  exit 1
fi
echo "== all test suites passed: ${passed//;/; }"
