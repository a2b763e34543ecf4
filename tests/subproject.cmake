# SPDX-License-Identifier: MIT
# subproject.cmake - run by ctest: configures tests/subproject (psyne added
# with add_subdirectory) without a build type, builds it, and checks that
# the parent's build type stayed empty, that its ctest lists its own test
# only, and that the program runs.
file(REMOVE_RECURSE ${WORK})
include(${CMAKE_CURRENT_LIST_DIR}/run_or_fail.cmake)
run(${CMAKE_COMMAND} -S ${SRC}/tests/subproject -B ${WORK} -DPSYNE_SOURCE=${SRC})
file(STRINGS ${WORK}/CMakeCache.txt build_type REGEX "^CMAKE_BUILD_TYPE:")
if(NOT build_type MATCHES "^CMAKE_BUILD_TYPE:[A-Z]*=$")
  message(FATAL_ERROR "psyne set the parent's build type: ${build_type}")
endif()
run(${CMAKE_COMMAND} --build ${WORK} -j2)
execute_process(COMMAND ${CMAKE_CTEST_COMMAND} -N WORKING_DIRECTORY ${WORK} OUTPUT_VARIABLE listing)
if(NOT listing MATCHES "Total Tests: 1\n" OR NOT listing MATCHES "parent_app")
  message(FATAL_ERROR "the parent's ctest lists more than its own test:\n${listing}")
endif()
run(${WORK}/parent_app)
message(STATUS "subproject: build type untouched, 1 test, ${out}")
