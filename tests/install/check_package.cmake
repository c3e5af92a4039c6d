# Makes the Debian package from BUILD_DIR with CPack (cmake/XatmPackage.cmake) into WORK_DIR and
# checks it (docs/install.md). Run by the `debian_package` test:
#   cmake -DBUILD_DIR=... -DWORK_DIR=... -DVERSION=0.1.0 -DSOVERSION=0.1 -DLIBDIR=lib
#         -DCPACK=<cpack> -P check_package.cmake
# Checks: `cpack -G DEB` succeeds; `dpkg-deb -c` lists the library, its SONAME link, the headers
# (version.h and export.h included), the CMake and pkg-config files, xatm-recover and the
# documents under /usr; its Depends name the run-time libraries (libpq5, libmariadb3,
# libsqlite3-0, Boost.Log); unpacked anywhere, its xatm.pc says prefix=/usr and its xatm-recover
# starts (--help) on the library next to it, with no LD_LIBRARY_PATH.
cmake_minimum_required(VERSION 3.25)

foreach(required BUILD_DIR WORK_DIR VERSION SOVERSION LIBDIR CPACK)
  if(NOT ${required})
    message(FATAL_ERROR "check_package.cmake: ${required} is not set")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(fail)
  string(JOIN "" text ${ARGN})
  message(FATAL_ERROR "package check: ${text}")
endfunction()

message(STATUS "package check: cpack -G DEB")
execute_process(COMMAND "${CPACK}" -G DEB --config "${BUILD_DIR}/CPackConfig.cmake" -B "${WORK_DIR}"
                WORKING_DIRECTORY "${BUILD_DIR}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  fail("cpack -G DEB failed (${rc}):\n${out}")
endif()
file(GLOB packages "${WORK_DIR}/*.deb")
list(LENGTH packages count)
if(NOT count EQUAL 1)
  fail("expected one .deb in ${WORK_DIR}, found ${count}:\n${out}")
endif()
set(package "${packages}")
get_filename_component(package_name "${package}" NAME)
if(NOT package_name MATCHES "^xatm_${VERSION}_[a-z0-9]+\\.deb$")
  fail("the package is named ${package_name}, expected xatm_${VERSION}_<arch>.deb")
endif()

find_program(dpkg_deb dpkg-deb NO_CACHE REQUIRED)
execute_process(COMMAND "${dpkg_deb}" -c "${package}" OUTPUT_VARIABLE listing RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  fail("dpkg-deb -c ${package} failed (${rc})")
endif()
set(expected
  "./usr/${LIBDIR}/libxatm.so.${VERSION}"
  "./usr/${LIBDIR}/libxatm.so.${SOVERSION} -> libxatm.so.${VERSION}"
  "./usr/${LIBDIR}/libxatm.so -> libxatm.so.${SOVERSION}"
  "./usr/${LIBDIR}/pkgconfig/xatm.pc"
  "./usr/${LIBDIR}/cmake/xatm/xatmConfig.cmake"
  "./usr/${LIBDIR}/cmake/xatm/xatmConfigVersion.cmake"
  "./usr/include/xatm/transaction_manager.h"
  "./usr/include/xatm/version.h"
  "./usr/include/xatm/export.h"
  "./usr/bin/xatm-recover"
  "./usr/share/doc/xatm/README.md"
  "./usr/share/doc/xatm/recovery.md"
  "./usr/share/doc/xatm/install.md")
foreach(entry IN LISTS expected)
  string(FIND "${listing}" " ${entry}\n" at)
  if(at EQUAL -1)
    fail("the package lacks ${entry}; dpkg-deb -c lists:\n${listing}")
  endif()
endforeach()

execute_process(COMMAND "${dpkg_deb}" -f "${package}" Depends OUTPUT_VARIABLE depends
                OUTPUT_STRIP_TRAILING_WHITESPACE)
foreach(dependency libpq5 libmariadb3 libsqlite3-0 libboost-log)
  if(NOT depends MATCHES "(^|, )${dependency}")
    fail("the package's Depends lacks ${dependency}: '${depends}'")
  endif()
endforeach()
message(STATUS "package check: ${package_name} depends on ${depends}")

# Unpacked under any directory, the tool still finds the library beside it ($ORIGIN RPATH).
set(unpacked "${WORK_DIR}/unpacked")
execute_process(COMMAND "${dpkg_deb}" -x "${package}" "${unpacked}" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  fail("dpkg-deb -x failed (${rc})")
endif()
file(READ "${unpacked}/usr/${LIBDIR}/pkgconfig/xatm.pc" pc)
if(NOT pc MATCHES "(^|\n)prefix=/usr\n")
  fail("the package's xatm.pc does not say prefix=/usr:\n${pc}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" -E env --unset=LD_LIBRARY_PATH "${unpacked}/usr/bin/xatm-recover" --help
                RESULT_VARIABLE rc OUTPUT_VARIABLE help ERROR_VARIABLE help)
if(NOT rc EQUAL 0)
  fail("the unpacked xatm-recover --help exited ${rc}:\n${help}")
endif()
message(STATUS "package check: all passed")
