# SPDX-License-Identifier: MIT
# library_abi.cmake - run by ctest: what libpsyne.so (LIB) promises a program
# linked against it.
# - Its soname is libpsyne.so.ABI.
# - It exports only psyne_* and the three slow paths of the inline calls,
#   each with a version of src/psyne.map.
# - A program built against 0.1.0's psyne.h (soname libpsyne.so.0) would
#   break: psyne_options and psyne_stats grew (SIZES: this build's sizeof of
#   both, from abi_sizes). So the soname must no longer be libpsyne.so.0,
#   and the loader keeps such a program from running against this library.
execute_process(COMMAND readelf -d ${LIB} OUTPUT_VARIABLE dyn RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "readelf -d ${LIB} failed")
endif()
string(REGEX MATCH "Library soname: \\[([^]]*)\\]" _ "${dyn}")
if(NOT CMAKE_MATCH_1 STREQUAL "libpsyne.so.${ABI}")
  message(FATAL_ERROR "soname is '${CMAKE_MATCH_1}', expected libpsyne.so.${ABI}")
endif()

execute_process(COMMAND nm -D --defined-only ${LIB} OUTPUT_VARIABLE syms RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "nm -D ${LIB} failed")
endif()
string(REGEX REPLACE "\n$" "" syms "${syms}")
string(REPLACE "\n" ";" syms "${syms}")
set(count 0)
foreach(line ${syms})
  string(REGEX REPLACE "^[0-9a-f]* +[A-Za-z] +" "" sym "${line}")
  if(sym MATCHES "^PSYNE_[0-9.]+$") # the version nodes themselves
    continue()
  endif()
  if(NOT sym MATCHES "^(psyne_[a-z0-9_]+|psy_claim_slow|psy_commit_slow|psy_lane_wake)@@PSYNE_[0-9]+\\.[0-9]+$")
    message(FATAL_ERROR "libpsyne.so exports '${sym}': not a psyne_ call or a documented slow path with a version")
  endif()
  math(EXPR count "${count} + 1")
endforeach()
if(count LESS 30)
  message(FATAL_ERROR "only ${count} versioned symbols: is the version script applied?")
endif()

# What programs compile in: the sizes of psyne_options and psyne_stats, and
# the layout of the handle's psy_lane that the inline claim and commit read.
# ABI 0 (0.1.0): options 96, stats 240. ABI 1 (0.2.0): options 160, stats
# 368; lane 64 bytes, data at 32, cap at 48, wake_fence at 56. A change of
# either line without a new ABI number (and soname) fails here.
execute_process(COMMAND ${SIZES} OUTPUT_VARIABLE sizes OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "abi_sizes failed")
endif()
string(REPLACE "\n" ";" sizes "${sizes}")
list(GET sizes 0 structs)
list(GET sizes 1 lane)
if(ABI EQUAL 0 AND NOT structs STREQUAL "96 240")
  message(FATAL_ERROR "psyne_options/psyne_stats are ${structs} bytes, 0.1.0's were 96 240, and the soname is still libpsyne.so.0")
endif()
if(ABI EQUAL 1 AND (NOT structs STREQUAL "160 368" OR NOT lane STREQUAL "64 32 48 56"))
  message(FATAL_ERROR "options/stats '${structs}' and lane '${lane}' differ from ABI 1's '160 368' and "
                      "'64 32 48 56': raise PSYNE_ABI (CMakeLists.txt), the soname goes with it")
endif()
message(STATUS "libpsyne.so.${ABI}: ${count} versioned symbols; options/stats ${structs} bytes (0.1.0: 96 240), "
               "lane ${lane}: programs of 0.1.0 (libpsyne.so.0) do not load it")
