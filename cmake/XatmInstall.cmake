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
