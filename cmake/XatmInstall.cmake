# install(EXPORT) and a package config, so that an installed xatm works with
# find_package(xatm CONFIG) and target xatm::xatm.
include(CMakePackageConfigHelpers)

install(TARGETS xatm EXPORT xatmTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY include/xatm DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_BINARY_DIR}/include/xatm/version.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/xatm)
install(EXPORT xatmTargets NAMESPACE xatm:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/xatm)

configure_package_config_file(cmake/xatmConfig.cmake.in ${CMAKE_CURRENT_BINARY_DIR}/xatmConfig.cmake
                              INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/xatm)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/xatmConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/xatmConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/xatmConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/xatm)

# The documents: README, LICENSE and docs/ to share/doc/xatm, where xatm-recover's messages and
# docs/install.md send the reader.
install(FILES README.md LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR} FILES_MATCHING PATTERN "*.md" PATTERN "*.svg")

# pkg-config: xatm.pc, written at install time so that it names the prefix actually installed to
# (`cmake --install --prefix`, or /usr in the Debian package). The drivers, SQLite and Boost are
# private to libxatm (no public header includes them): a program linking the shared library
# needs only -lxatm, and only a static libxatm needs Libs.private. They are plain -l flags, not
# Requires.private, because pkg-config reads every Requires.private module even for --cflags:
# that would make a program's build need libpq-dev, libmariadb-dev, ... for headers it never sees.
set(XATM_PC_LIBS_PRIVATE
    "-lpq -lmariadb -lsqlite3 -lcpp-httplib -lssl -lcrypto -lboost_log -lboost_thread -lboost_filesystem")
foreach(dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(XATM_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(XATM_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
set(XATM_PC_PREFIX "@XATM_PC_PREFIX@")  # left for the install step below
configure_file(cmake/xatm.pc.in ${PROJECT_BINARY_DIR}/pkgconfig/xatm.pc.in @ONLY)
install(CODE "
  set(XATM_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  configure_file(\"${PROJECT_BINARY_DIR}/pkgconfig/xatm.pc.in\" \"${PROJECT_BINARY_DIR}/pkgconfig/xatm.pc\" @ONLY)")
install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/xatm.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
