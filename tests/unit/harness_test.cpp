// The test harness itself: the servers fixture hands out working connection strings, both
// servers answer through their native client libraries, and the outage controls bring a server
// down and back. Talks to libpq and libmysqlclient directly, so it does not depend on xatm.
#include <doctest/doctest.h>
#include <libpq-fe.h>
#include <mysql.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "support/servers.h"

using xatm::test::servers;

namespace {

struct pg_connection_deleter {
  void operator()(PGconn* connection) const noexcept { PQfinish(connection); }
};
struct pg_result_deleter {
  void operator()(PGresult* result) const noexcept { PQclear(result); }
};
using pg_connection = std::unique_ptr<PGconn, pg_connection_deleter>;
using pg_result = std::unique_ptr<PGresult, pg_result_deleter>;

struct mysql_deleter {
  void operator()(MYSQL* connection) const noexcept { mysql_close(connection); }
};
struct mysql_result_deleter {
  void operator()(MYSQL_RES* result) const noexcept { mysql_free_result(result); }
};
using mysql_connection = std::unique_ptr<MYSQL, mysql_deleter>;
using mysql_result = std::unique_ptr<MYSQL_RES, mysql_result_deleter>;

pg_connection connect_pg(const std::string& conninfo) {
  pg_connection connection(PQconnectdb(conninfo.c_str()));
  REQUIRE(connection != nullptr);
  return connection;
}

bool pg_connected(const pg_connection& connection) { return PQstatus(connection.get()) == CONNECTION_OK; }

// The first column of the first row, or a failure naming the server's message.
std::string pg_query_value(const pg_connection& connection, const char* sql) {
  pg_result result(PQexec(connection.get(), sql));
  INFO("PostgreSQL: ", std::string(PQerrorMessage(connection.get())));
  REQUIRE(PQresultStatus(result.get()) == PGRES_TUPLES_OK);
  REQUIRE(PQntuples(result.get()) == 1);
  return PQgetvalue(result.get(), 0, 0);
}

// Connects as the xatm user with the hostile password, over the fixture's unix socket.
mysql_connection connect_mysql() {
  mysql_connection connection(mysql_init(nullptr));
  REQUIRE(connection != nullptr);
  const unsigned int timeout_seconds = 5;
  REQUIRE(mysql_options(connection.get(), MYSQL_OPT_CONNECT_TIMEOUT, &timeout_seconds) == 0);
  const std::string password(xatm::test::mysql_password);
  if (mysql_real_connect(connection.get(), "localhost", "xatm", password.c_str(), "xatm_test", 0,
                         servers().mysql_socket.c_str(), 0) == nullptr) {
    MESSAGE("MariaDB: ", std::string(mysql_error(connection.get())));
    return nullptr;
  }
  return connection;
}

std::string mysql_query_value(const mysql_connection& connection, const char* sql) {
  INFO("MariaDB: ", std::string(mysql_error(connection.get())));
  REQUIRE(mysql_query(connection.get(), sql) == 0);
  mysql_result result(mysql_store_result(connection.get()));
  REQUIRE(result != nullptr);
  MYSQL_ROW row = mysql_fetch_row(result.get());
  REQUIRE(row != nullptr);
  REQUIRE(row[0] != nullptr);
  return row[0];
}

void check_pg_answers() {
  const auto connection = connect_pg(servers().pg);
  INFO("PostgreSQL: ", std::string(PQerrorMessage(connection.get())));
  REQUIRE(pg_connected(connection));
  CHECK(std::atoi(pg_query_value(connection, "SHOW max_prepared_transactions").c_str()) > 0);
  CHECK(pg_query_value(connection, "SELECT current_user") == "xatm");
  CHECK(pg_query_value(connection, "SELECT current_database()") == "xatm_test");
}

void check_mysql_answers() {
  const auto connection = connect_mysql();
  REQUIRE(connection != nullptr);
  CHECK(mysql_query_value(connection, "SELECT VERSION()").find("MariaDB") != std::string::npos);
  CHECK(mysql_query_value(connection, "SELECT DATABASE()") == "xatm_test");
}

}  // namespace

TEST_CASE("harness: the fixture hands out every connection string") {
  const auto& env = servers();
  CHECK_FALSE(env.dir.empty());
  CHECK_FALSE(env.pg.empty());
  CHECK_FALSE(env.pg2.empty());
  CHECK_FALSE(env.mysql.empty());
  CHECK_FALSE(env.mysql_root.empty());
  CHECK(env.mysql_socket == env.dir + "/mysql.sock");
  // The password travels in libpq's keyword quoting: \' inside single quotes.
  CHECK(env.mysql.find(R"(password='xatm pass\'%"w0rd')") != std::string::npos);
  CHECK(env.pg.find("host=" + env.dir) != std::string::npos);
}

TEST_CASE("harness: PostgreSQL answers, with prepared transactions enabled") {
  check_pg_answers();
  const auto second = connect_pg(servers().pg2);
  INFO("PostgreSQL: ", std::string(PQerrorMessage(second.get())));
  REQUIRE(pg_connected(second));
  CHECK(pg_query_value(second, "SELECT current_database()") == "xatm_test2");
}

TEST_CASE("harness: MariaDB answers the xatm user with the hostile password") { check_mysql_answers(); }

TEST_CASE("harness: PostgreSQL comes back after an immediate stop") {
  xatm::test::stop_pg_immediate();
  CHECK_FALSE(pg_connected(connect_pg(servers().pg)));
  xatm::test::start_pg();
  check_pg_answers();
}

TEST_CASE("harness: MariaDB comes back after kill -9") {
  xatm::test::kill_mysql();
  CHECK(connect_mysql() == nullptr);
  xatm::test::start_mysql();
  check_mysql_answers();
}
