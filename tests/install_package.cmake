# install_package.cmake - run by ctest: installs the build into WORK/prefix,
# builds tests/consumer_project against it with find_package, and builds the
# same program with pkg-config flags; both must run.
file(REMOVE_RECURSE ${WORK})
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed: ${ARGN}\n${out}\n${err}")
  endif()
endfunction()
run(${CMAKE_COMMAND} --install ${BIN} --prefix ${WORK}/prefix)
run(${CMAKE_COMMAND} -S ${SRC}/tests/consumer_project -B ${WORK}/build -DCMAKE_PREFIX_PATH=${WORK}/prefix)
run(${CMAKE_COMMAND} --build ${WORK}/build)
run(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${WORK}/prefix/lib ${WORK}/build/consumer)
# pkg-config: compile and link the same program with the installed psyne.pc
# (--define-prefix makes the .pc relocatable to the scratch prefix)
file(GLOB pcfile ${WORK}/prefix/*/pkgconfig/psyne.pc ${WORK}/prefix/*/*/pkgconfig/psyne.pc)
get_filename_component(pcdir "${pcfile}" DIRECTORY)
execute_process(COMMAND ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pcdir}
                        pkg-config --define-prefix --cflags --libs psyne
  RESULT_VARIABLE rc OUTPUT_VARIABLE flags OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config does not find psyne in ${pcdir}")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
run(cc ${SRC}/tests/consumer_project/main.c ${flags} -o ${WORK}/consumer_pc)
run(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${WORK}/prefix/lib ${WORK}/consumer_pc)
