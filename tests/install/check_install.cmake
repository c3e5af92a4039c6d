# Installs xatm from BUILD_DIR into a fresh prefix (WORK_DIR/prefix) and checks what a user gets
# there (docs/install.md). Run by the `install_consumer` test:
#   cmake -DBUILD_DIR=... -DCONSUMER_SOURCE_DIR=... -DWORK_DIR=... -DVERSION=0.1.0 -DSOVERSION=0.1
#         -DLIBDIR=lib -DBINDIR=bin -DDOCDIR=share/doc/xatm [-DSHARED=ON] [-DTOOLS=ON]
#         [-DGENERATOR=...] [-DCXX_COMPILER=...] [-DBUILD_TYPE=...] [-DSANITIZE=address,undefined]
#         -P check_install.cmake
# Checks, in order:
#  1. the consumer project (CONSUMER_SOURCE_DIR) builds with find_package(xatm) and runs: an xid,
#     an xatm exception caught outside the library, xatm::version_string() == XATM_VERSION_STRING;
#  2. xatm.pc answers the version and the prefix, asks a shared-library user for -lxatm only, and
#     the same consumer builds and runs through pkg-config;
#  3. (shared) the SONAME is libxatm.so.SOVERSION, and the library exports xatm's public API only;
#  4. (tools) the installed xatm-recover binds the installed libxatm through its $ORIGIN RPATH,
#     with no LD_LIBRARY_PATH, and `--help` exits 0; the documents its messages name are installed;
#  5. (tools) `xatm-recover --version` prints "xatm-recover VERSION" and exits 0.
cmake_minimum_required(VERSION 3.25)

foreach(required BUILD_DIR CONSUMER_SOURCE_DIR WORK_DIR VERSION SOVERSION LIBDIR BINDIR DOCDIR)
  if(NOT ${required})
    message(FATAL_ERROR "check_install.cmake: ${required} is not set")
  endif()
endforeach()

set(prefix "${WORK_DIR}/prefix")
file(REMOVE_RECURSE "${WORK_DIR}")

function(fail)
  string(JOIN "" text ${ARGN})
  message(FATAL_ERROR "install check: ${text}")
endfunction()

function(run step)
  message(STATUS "install check: ${step}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    fail("${step} failed (${rc})")
  endif()
endfunction()

# Runs a command with no LD_LIBRARY_PATH; sets <prefix>_rc and <prefix>_out (stdout, stripped).
function(run_clean out_prefix)
  execute_process(COMMAND "${CMAKE_COMMAND}" -E env --unset=LD_LIBRARY_PATH ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err OUTPUT_STRIP_TRAILING_WHITESPACE)
  set(${out_prefix}_rc "${rc}" PARENT_SCOPE)
  set(${out_prefix}_out "${out}" PARENT_SCOPE)
  set(${out_prefix}_err "${err}" PARENT_SCOPE)
endfunction()

run("install into ${prefix}" "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}")

# ---- 1 and 2: the consumer, through find_package and through pkg-config ----------------------
set(common_args "-DCMAKE_PREFIX_PATH=${prefix}")
if(GENERATOR)
  list(APPEND common_args -G "${GENERATOR}")
endif()
if(CXX_COMPILER)
  list(APPEND common_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()
if(BUILD_TYPE)
  list(APPEND common_args "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}")
endif()
if(SANITIZE)
  # An instrumented libxatm needs the sanitizer runtimes in the consumer too.
  list(APPEND common_args "-DCMAKE_CXX_FLAGS=-fsanitize=${SANITIZE}"
       "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=${SANITIZE}")
endif()
set(pkg_config_path "${prefix}/${LIBDIR}/pkgconfig")

function(build_and_run_consumer how)
  set(consumer_build "${WORK_DIR}/consumer-${how}")
  set(extra)
  if(how STREQUAL "pkg-config")
    set(extra -DXATM_CONSUMER_PKG_CONFIG=ON)
  endif()
  run("configure the consumer (${how})" "${CMAKE_COMMAND}" -E env "PKG_CONFIG_PATH=${pkg_config_path}"
      "${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE_DIR}" -B "${consumer_build}" ${common_args} ${extra})
  run("build the consumer (${how})" "${CMAKE_COMMAND}" --build "${consumer_build}")
  find_program(consumer_${how} xatm_consumer PATHS "${consumer_build}" "${consumer_build}/${BUILD_TYPE}"
               NO_DEFAULT_PATH NO_CACHE REQUIRED)
  run_clean(consumer "${consumer_${how}}")
  if(NOT consumer_rc EQUAL 0 OR NOT consumer_out MATCHES "consumer\\.1\\.1"
     OR NOT consumer_out MATCHES "refused: XAER_INVAL"
     OR NOT consumer_out MATCHES "library ${VERSION} headers ${VERSION}")
    fail("the consumer (${how}) printed '${consumer_out}' ${consumer_err}(exit ${consumer_rc}); expected the "
         "xid's text (with consumer.1.1), 'refused: XAER_INVAL' and 'library ${VERSION} headers ${VERSION}'")
  endif()
  message(STATUS "install check: the consumer (${how}) printed: ${consumer_out}")
endfunction()

build_and_run_consumer(find_package)

find_program(pkg_config_program pkg-config NO_CACHE REQUIRED)
function(pkg_config out)
  execute_process(COMMAND "${CMAKE_COMMAND}" -E env "PKG_CONFIG_PATH=${pkg_config_path}" "${pkg_config_program}"
                          ${ARGN} xatm
                  RESULT_VARIABLE rc OUTPUT_VARIABLE value ERROR_VARIABLE err OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    fail("pkg-config ${ARGN} xatm failed (${rc}): ${err}")
  endif()
  set(${out} "${value}" PARENT_SCOPE)
endfunction()
pkg_config(pc_version --modversion)
pkg_config(pc_prefix --variable=prefix)
pkg_config(pc_libs --libs)
pkg_config(pc_static_libs --static --libs)
if(NOT pc_version STREQUAL VERSION OR NOT pc_prefix STREQUAL prefix)
  fail("xatm.pc says version '${pc_version}' and prefix '${pc_prefix}', expected '${VERSION}' and '${prefix}'")
endif()
# A program linking the shared library needs libxatm alone; a static one also the drivers.
if(NOT pc_libs MATCHES "-lxatm" OR pc_libs MATCHES "-lpq|-lmariadb|-lsqlite3|-lboost")
  fail("pkg-config --libs xatm gives '${pc_libs}': a shared-library user should get -lxatm and no driver")
endif()
if(NOT pc_static_libs MATCHES "-lpq" OR NOT pc_static_libs MATCHES "-lmariadb" OR NOT pc_static_libs MATCHES "-lboost_log")
  fail("pkg-config --static --libs xatm gives '${pc_static_libs}': the private libraries are missing")
endif()
message(STATUS "install check: xatm.pc: version ${pc_version}, libs '${pc_libs}'")
build_and_run_consumer(pkg-config)

# ---- 3: SONAME and exported symbols -----------------------------------------------------------
if(SHARED)
  set(library "${prefix}/${LIBDIR}/libxatm.so.${SOVERSION}")
  if(NOT EXISTS "${library}")
    fail("${library} is not installed (SONAME policy: libxatm.so.${SOVERSION})")
  endif()
  find_program(readelf_program readelf NO_CACHE REQUIRED)
  execute_process(COMMAND "${readelf_program}" -d "${library}" OUTPUT_VARIABLE dynamic RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0 OR NOT dynamic MATCHES "Library soname: \\[([^]]*)\\]")
    fail("readelf -d ${library} shows no SONAME")
  endif()
  if(NOT CMAKE_MATCH_1 STREQUAL "libxatm.so.${SOVERSION}")
    fail("the SONAME is ${CMAKE_MATCH_1}, expected libxatm.so.${SOVERSION} (docs/install.md, version policy)")
  endif()
  message(STATUS "install check: SONAME ${CMAKE_MATCH_1}")

  # The exported (dynamic, defined) symbols, mangled. Each must be a member of one of these, or
  # its typeinfo or vtable: the public API of include/xatm. Nothing of xatm::detail, of the
  # internal classes (resource_manager, the backends, the decision log), of Boost or of the
  # standard library. Adding a public class or function means adding its name here.
  set(public_names
    # classes (their members, typeinfo and vtables)
    connection connection_settings global_transaction transaction_manager xid tcc_participant
    tcc_barrier failure recovery_report
    error rolled_back_error in_doubt_error heuristic_error timeout_error configuration_error
    invalid_argument_error log_failure_error log_in_use_error protocol_error rm_error
    # functions
    version_string xa_code_name make_failure throw_failure recovery_result_name recover_offline
    install_marker_schema tcc_step_name tcc_answer_name make_http_participant barrier_outcome_name
    answer_for barrier_schema validate_tm_id validate_rm_name is_incarnation_id is_legacy_incarnation
    format_gtrid parse_gtrid is_ours
    log_to_boost_log log_threshold log_to_stderr parse_log_level to_string render_prometheus
    transaction_outcome_name outcome_cause_name commit_phase_name tm_statistics
    recovery_result_code recovery_decision_code)
  # Some must be there: without them a program could not use the library as documented.
  set(required_symbols
    _ZN4xatm14version_stringEv                    # xatm::version_string()
    _ZN4xatm19transaction_managerC1ERKNS_10tm_optionsE  # transaction_manager(const tm_options&)
    _ZTIN4xatm5errorE                             # typeinfo for xatm::error (catch outside)
    _ZN4xatm15recover_offlineERKNS_24offline_recovery_optionsE)
  find_program(nm_program nm NO_CACHE REQUIRED)
  execute_process(COMMAND "${nm_program}" -D --defined-only "${library}" OUTPUT_VARIABLE symbols RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    fail("nm -D ${library} failed (${rc})")
  endif()
  string(REGEX MATCHALL "[^\n]+" lines "${symbols}")
  set(exported)
  set(refused)
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "^[0-9a-fA-F]* *[A-Za-z] +" "" symbol "${line}")
    list(APPEND exported "${symbol}")
    # _ZN4xatm<n><name>..., _ZNK4xatm... (const member), _ZTIN4xatm / _ZTSN4xatm / _ZTVN4xatm
    # (typeinfo, its name, vtable): <name> is the first name inside namespace xatm.
    set(name "")
    if(symbol MATCHES "^_Z(T[ISV])?N[KVRO]*4xatm([0-9]+)(.*)$")
      string(SUBSTRING "${CMAKE_MATCH_3}" 0 ${CMAKE_MATCH_2} name)
    endif()
    if(NOT name OR NOT name IN_LIST public_names)
      list(APPEND refused "${symbol}")
    endif()
  endforeach()
  list(LENGTH exported exported_count)
  if(refused)
    list(JOIN refused "\n  " refused_text)
    fail("libxatm exports symbols outside the public API (c++filt names them):\n  ${refused_text}")
  endif()
  foreach(symbol IN LISTS required_symbols)
    if(NOT symbol IN_LIST exported)
      fail("libxatm does not export ${symbol} (c++filt names it)")
    endif()
  endforeach()
  message(STATUS "install check: libxatm exports ${exported_count} symbols, all of the public API")
endif()

# ---- 4 and 5: the installed tool --------------------------------------------------------------
if(TOOLS)
  set(tool "${prefix}/${BINDIR}/xatm-recover")
  if(NOT EXISTS "${tool}")
    fail("${tool} is not installed")
  endif()
  if(SHARED)
    # It must bind the libxatm of this prefix, found through its RPATH alone.
    execute_process(COMMAND "${readelf_program}" -d "${tool}" OUTPUT_VARIABLE dynamic)
    set(rpath "")
    if(dynamic MATCHES "Library (runpath|rpath): \\[([^]]*)\\]")
      set(rpath "${CMAKE_MATCH_2}")
    endif()
    if(NOT rpath MATCHES "^\\$ORIGIN/")
      fail("${tool} has no $ORIGIN-relative RPATH:\n${dynamic}")
    endif()
    message(STATUS "install check: xatm-recover's RPATH is ${rpath}")
    find_program(ldd_program ldd NO_CACHE REQUIRED)
    run_clean(ldd "${ldd_program}" "${tool}")
    if(NOT ldd_out MATCHES "libxatm\\.so\\.${SOVERSION} => ([^ \n]+)")
      fail("ldd ${tool} (no LD_LIBRARY_PATH) does not find libxatm.so.${SOVERSION}:\n${ldd_out}")
    endif()
    file(REAL_PATH "${CMAKE_MATCH_1}" bound)
    file(REAL_PATH "${library}" installed)
    if(NOT bound STREQUAL installed)
      fail("${tool} binds ${bound}, not the installed ${installed}")
    endif()
  endif()
  run_clean(help "${tool}" --help)
  if(NOT help_rc EQUAL 0 OR NOT help_out MATCHES "usage: xatm-recover")
    fail("xatm-recover --help exited ${help_rc} (no LD_LIBRARY_PATH): ${help_out} ${help_err}")
  endif()
  message(STATUS "install check: xatm-recover --help exits 0 with no LD_LIBRARY_PATH")
  foreach(document README.md LICENSE recovery.md design.md three-phase.md tcc.md install.md)
    if(NOT EXISTS "${prefix}/${DOCDIR}/${document}")
      fail("${prefix}/${DOCDIR}/${document} is not installed")
    endif()
  endforeach()
  run_clean(version "${tool}" --version)
  if(NOT version_rc EQUAL 0 OR NOT version_out STREQUAL "xatm-recover ${VERSION}")
    fail("xatm-recover --version exited ${version_rc} and printed '${version_out}' ${version_err}; "
         "expected exactly 'xatm-recover ${VERSION}' and exit 0")
  endif()
  message(STATUS "install check: xatm-recover --version prints ${version_out}")
endif()
message(STATUS "install check: all passed")
