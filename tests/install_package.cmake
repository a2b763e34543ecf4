# SPDX-License-Identifier: MIT
# install_package.cmake - run by ctest: installs the build into WORK/prefix,
# builds tests/consumer_project against it with find_package, and builds the
# same program with pkg-config flags; both must run.
file(REMOVE_RECURSE ${WORK})
include(${CMAKE_CURRENT_LIST_DIR}/run_or_fail.cmake)
run(${CMAKE_COMMAND} --install ${BIN} --prefix ${WORK}/prefix)
run(${CMAKE_COMMAND} -S ${SRC}/tests/consumer_project -B ${WORK}/build -DCMAKE_PREFIX_PATH=${WORK}/prefix)
run(${CMAKE_COMMAND} --build ${WORK}/build)
run(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${WORK}/prefix/lib ${WORK}/build/consumer)
# pkg-config: compile and link the same program with the installed psyne.pc,
# which must name the scratch prefix it was installed to (not the configured
# CMAKE_INSTALL_PREFIX)
file(GLOB pcfile ${WORK}/prefix/*/pkgconfig/psyne.pc ${WORK}/prefix/*/*/pkgconfig/psyne.pc)
get_filename_component(pcdir "${pcfile}" DIRECTORY)
execute_process(COMMAND ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pcdir}
                        pkg-config --cflags --libs psyne
  RESULT_VARIABLE rc OUTPUT_VARIABLE flags OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config does not find psyne in ${pcdir}")
endif()
if(NOT flags MATCHES "-I${WORK}/prefix/include( |$)" OR NOT flags MATCHES "-L${WORK}/prefix/lib")
  message(FATAL_ERROR "pkg-config gives '${flags}', not the prefix ${WORK}/prefix")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
run(cc ${SRC}/tests/consumer_project/main.c ${flags} -o ${WORK}/consumer_pc)
run(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${WORK}/prefix/lib ${WORK}/consumer_pc)
# libpsyne.a in a user's -flto build: linked as machine code, not optimized
# again there (nothing of psyne's compilation shows in the user's build)
file(GLOB archive ${WORK}/prefix/*/libpsyne.a ${WORK}/prefix/*/*/libpsyne.a)
execute_process(COMMAND readelf -S ${archive} OUTPUT_VARIABLE sections RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR sections MATCHES "\\.gnu\\.lto_")
  message(FATAL_ERROR "libpsyne.a holds LTO sections: a user's -flto link would optimize psyne again")
endif()
execute_process(COMMAND cc -flto -O2 -Wall ${SRC}/tests/consumer_project/main.c -I${WORK}/prefix/include ${archive}
                        -lpthread -o ${WORK}/consumer_static
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT "${out}${err}" STREQUAL "")
  message(FATAL_ERROR "a -flto program linked with libpsyne.a: exit ${rc}\n${out}${err}")
endif()
run(${WORK}/consumer_static)
