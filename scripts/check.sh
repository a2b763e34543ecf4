#!/usr/bin/env bash
# check.sh - builds psyne three ways and runs the whole test suite on each:
#   build/        Release (the build the benchmarks use)
#   build-asan/   AddressSanitizer + UndefinedBehaviorSanitizer (clang)
#   build-tsan/   ThreadSanitizer (clang)
# and, where clang is installed, builds (without running) a clang Release in
# build-clang/: its optimization settings differ from gcc's (no LTO) and must
# still link. The sanitizer builds run the same tests with fewer messages
# (PSYNE_TEST_SCALE). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)

run_suite() { # dir cmake-args...
  local dir=$1; shift
  echo "== $dir: configure and build"
  cmake -S . -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j"$jobs" >/dev/null
  echo "== $dir: tests"
  (cd "$dir" && ctest --output-on-failure -j1)
}

# Sanitizer builds use clang when present (its runtimes come with
# libclang-rt-14-dev), else gcc (libasan8/libubsan1/libtsan2 come with gcc).
if command -v clang >/dev/null && command -v clang++ >/dev/null; then
  san_cc=(-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++)
else
  san_cc=()
fi

run_suite build -DCMAKE_BUILD_TYPE=Release
# halt_on_error: a report is a failure; TSan's second_deadlock_stack for readable reports
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
run_suite build-asan "${san_cc[@]}" -DCMAKE_BUILD_TYPE=Debug \
  -DPSYNE_SANITIZE=address,undefined -DPSYNE_TEST_SCALE=0.25 -DPSYNE_BUILD_BENCHMARKS=OFF
run_suite build-tsan "${san_cc[@]}" -DCMAKE_BUILD_TYPE=Debug \
  -DPSYNE_SANITIZE=thread -DPSYNE_TEST_SCALE=0.1 -DPSYNE_BUILD_BENCHMARKS=OFF
if [ ${#san_cc[@]} -gt 0 ]; then
  echo "== build-clang: Release with clang, build only"
  cmake -S . -B build-clang "${san_cc[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build-clang -j"$jobs" >/dev/null
fi
echo "== all test suites passed (release, asan+ubsan, tsan; clang release built)"
