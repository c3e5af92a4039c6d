# Installs xatm from BUILD_DIR into WORK_DIR/prefix, then configures, builds and runs the consumer
# project in CONSUMER_SOURCE_DIR against it. Run by the `install_consumer` test:
#   cmake -DBUILD_DIR=... -DCONSUMER_SOURCE_DIR=... -DWORK_DIR=... [-DGENERATOR=...]
#         [-DCXX_COMPILER=...] [-DBUILD_TYPE=...] [-DSANITIZE=address,undefined] -P check_install.cmake
cmake_minimum_required(VERSION 3.25)

foreach(required BUILD_DIR CONSUMER_SOURCE_DIR WORK_DIR)
  if(NOT ${required})
    message(FATAL_ERROR "check_install.cmake: ${required} is not set")
  endif()
endforeach()

set(prefix "${WORK_DIR}/prefix")
set(consumer_build "${WORK_DIR}/consumer")
file(REMOVE_RECURSE "${WORK_DIR}")

function(run step)
  message(STATUS "install check: ${step}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install check: ${step} failed (${rc})")
  endif()
endfunction()

run("install into ${prefix}" "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}")

set(configure_args -S "${CONSUMER_SOURCE_DIR}" -B "${consumer_build}" "-DCMAKE_PREFIX_PATH=${prefix}")
if(GENERATOR)
  list(APPEND configure_args -G "${GENERATOR}")
endif()
if(CXX_COMPILER)
  list(APPEND configure_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()
if(BUILD_TYPE)
  list(APPEND configure_args "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}")
endif()
if(SANITIZE)
  # An instrumented libxatm needs the sanitizer runtimes in the consumer too.
  list(APPEND configure_args "-DCMAKE_CXX_FLAGS=-fsanitize=${SANITIZE}"
       "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=${SANITIZE}")
endif()
run("configure the consumer" "${CMAKE_COMMAND}" ${configure_args})
run("build the consumer" "${CMAKE_COMMAND}" --build "${consumer_build}")

find_program(consumer xatm_consumer PATHS "${consumer_build}" "${consumer_build}/${BUILD_TYPE}"
             NO_DEFAULT_PATH REQUIRED)
execute_process(COMMAND "${consumer}" RESULT_VARIABLE rc OUTPUT_VARIABLE output
                OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0 OR NOT output MATCHES "consumer\\.1\\.1")
  message(FATAL_ERROR "install check: the consumer printed '${output}' (exit ${rc}), "
                      "expected the xid's text (with consumer.1.1)")
endif()
message(STATUS "install check: the consumer printed ${output}")
