# The dependencies, all Debian 12 packages: libpq-dev, libmariadb-dev-compat, libsqlite3-dev,
# libboost-log-dev, libcpp-httplib-dev (and doctest-dev for the tests); for the tools only,
# libcli11-dev and nlohmann-json3-dev.
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
# The tools' command lines (CLI11, libcli11-dev) and their JSON (nlohmann-json3-dev): both
# header-only, well-kept and in Debian, so no tool parses arguments or writes JSON by hand. Linked
# by the tools and tests only, never by libxatm: its users need neither.
find_package(CLI11 REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
