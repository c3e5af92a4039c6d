# The dependencies, all Debian 12 packages: libpq-dev, libmariadb-dev-compat, libsqlite3-dev,
# libboost-log-dev, libcpp-httplib-dev (and doctest-dev for the tests).
find_package(Threads REQUIRED)
find_package(PostgreSQL REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(Boost 1.74 REQUIRED COMPONENTS log log_setup)
find_package(PkgConfig REQUIRED)
# libmariadb-dev-compat installs libmysqlclient's API; pkg-config names it libmariadb.
pkg_check_modules(MARIADB REQUIRED IMPORTED_TARGET libmariadb)
# cpp-httplib (libcpp-httplib-dev) carries TCC participants over HTTP(S): a well-kept, header-
# and-library HTTP client and server with TLS through OpenSSL, so xatm writes no HTTP code.
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
