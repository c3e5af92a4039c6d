# The Debian package: `cpack -G DEB` in the build directory makes xatm_<version>_<arch>.deb with
# what `cmake --install` installs (the library, the headers, the CMake and pkg-config files,
# xatm-recover, the documents), under /usr. One package, not Debian's usual split into libxatm,
# libxatm-dev and tools: it is for installing xatm on a host, not for the Debian archive.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME xatm)
set(CPACK_PACKAGE_VENDOR xatm)
set(CPACK_PACKAGE_CONTACT "xatm maintainers")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_RESOURCE_FILE_LICENSE "${PROJECT_SOURCE_DIR}/LICENSE")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "libxatm, its headers, CMake and pkg-config files, xatm-recover and the documentation.")
# The run-time dependencies (libpq5, libmariadb3, libsqlite3-0, the Boost.Log libraries, ...)
# come from dpkg-shlibdeps (package dpkg-dev) reading what the library and the tool link.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
include(CPack)
