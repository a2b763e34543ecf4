# SPDX-License-Identifier: MIT
# Writes OUT: #define PSYNE_BENCH_COMMIT "<git describe --always --dirty>" of
# SRC, or "unknown" outside a git checkout. Run at every build; the file is
# only rewritten when the commit changed, so nothing rebuilds needlessly.
execute_process(COMMAND git -C "${SRC}" describe --always --dirty --abbrev=12
                OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR commit STREQUAL "")
  set(commit "unknown")
endif()
file(WRITE "${OUT}.tmp" "#define PSYNE_BENCH_COMMIT \"${commit}\"\n")
configure_file("${OUT}.tmp" "${OUT}" COPYONLY)
