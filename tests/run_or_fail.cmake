# SPDX-License-Identifier: MIT
# run_or_fail.cmake - for the tests that are CMake scripts: run(COMMAND...)
# runs a command and fails the test with its output when it fails; its
# standard output is left in `out`.
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed: ${ARGN}\n${out}\n${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()
