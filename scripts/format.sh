#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# format.sh [--check] - formats psyne's C and C++ files with .clang-format
# (clang-format-14, Debian 12's); --check changes nothing and fails, listing
# the files, when one is not formatted (CI runs that).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format-14 >/dev/null || bash scripts/deps.sh format
mapfile -t files < <(git ls-files '*.c' '*.h' '*.cpp' '*.hpp')
if [ "${1:-}" = --check ]; then
  bad=()
  for f in "${files[@]}"; do
    clang-format-14 --style=file "$f" | cmp -s - "$f" || bad+=("$f")
  done
  if [ ${#bad[@]} -gt 0 ]; then
    echo "format.sh: not formatted (run bash scripts/format.sh): ${bad[*]}" >&2
    exit 1
  fi
  echo "format.sh: ${#files[@]} files formatted"
else
  clang-format-14 --style=file -i "${files[@]}"
fi
