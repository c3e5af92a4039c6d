// support/adapter_checks.h: what the tests that talk to the servers directly (the adapter tests
// integration/postgresql_test.cpp and mysql_test.cpp, and others) do alike against their live server: connect a
// resource manager, look at the data from a connection of its own, make fresh xids and row ids, write a row in a
// branch. What differs per adapter (the connect function, the conninfo, the table) is a
// parameter; each test keeps thin wrappers with its own defaults. Use from the test's thread.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdint>
#include <ctime>
#include <memory>
#include <random>
#include <string>
#include <utility>

#include "support/result_checks.h"
#include "xatm/connection_settings.h"
#include "core/resource_manager.h"
#include "xatm/result.h"
#include "xatm/xid.h"

namespace xatm::test {

// An adapter's connect(): postgresql::connect or mysql::connect.
using rm_connect_fn = result<std::unique_ptr<resource_manager>> (*)(std::string rm_name,
                                                                    const connection_settings& settings);

inline connection_settings settings_of(const std::string& conninfo) {
  return connection_settings::parse(conninfo).value();
}

// A connected resource manager named `name`; fails the test with `<what>: <failure>` when it
// cannot connect.
inline std::unique_ptr<resource_manager> open_rm_with(rm_connect_fn connect, const std::string& conninfo,
                                                      const std::string& name, const char* what = "connect") {
  auto rm = connect(name, settings_of(conninfo));
  if (!rm.ok()) FAIL(what << ": " << rm.error().describe());
  return std::move(rm).value();
}

// The rows of `sql` run on `rm`; fails the test when it fails.
inline query_result run(connection& rm, const std::string& sql) {
  auto rows = rm.exec(sql);
  if (!rows.ok()) FAIL(sql << ": " << rows.error().describe());
  return std::move(rows).value();
}

// The rows of one query on a connection of its own (the test's view from outside the branch).
inline query_result query_with(rm_connect_fn connect, const std::string& sql, const std::string& conninfo) {
  auto rm = open_rm_with(connect, conninfo, "observer");
  return run(*rm, sql);
}

// The one non-null value of a result that must have exactly one row of one column.
inline std::string single_value_of(const query_result& rows) {
  REQUIRE(rows.rows.size() == 1);
  REQUIRE(rows.rows[0].size() == 1);
  REQUIRE(rows.rows[0][0].has_value());
  return *rows.rows[0][0];
}

// The one value `sql` answers on `rm` (one row of one non-null column).
inline std::string single_value(connection& rm, const std::string& sql) { return single_value_of(run(rm, sql)); }

// A fresh xatm xid whose gtrid names `tm_id`: the pid and the start time keep runs and parallel
// test processes apart.
inline xid next_test_xid(const std::string& tm_id, const std::string& bqual) {
  static const auto started = static_cast<std::uint64_t>(std::time(nullptr));
  static std::uint64_t sequence = 0;
  gtrid_parts parts{tm_id, std::to_string(::getpid()), started * 1000 + ++sequence, commit_protocol::two_phase};
  return xid(xatm_format_id, format_gtrid(parts).value(), bqual);
}

// A random positive row id, so that parallel runs do not collide (not a practical concern).
inline std::int64_t next_row_id() {
  static std::mt19937_64 random{std::random_device{}()};
  return static_cast<std::int64_t>(random() >> 2);
}

// The test tables are `<table> (id, note)`.
inline std::string insert_row_sql(const std::string& table, std::int64_t id) {
  return "INSERT INTO " + table + " (id, note) VALUES (" + std::to_string(id) + ", 'x')";
}

// Starts a branch that inserts one row into `table` and ends it; returns the row's id.
inline std::int64_t write_and_end_in(resource_manager& rm, const xid& branch, const std::string& table) {
  auto id = next_row_id();
  REQUIRE_OK(rm.start(branch));
  REQUIRE_OK(rm.exec(insert_row_sql(table, id)));
  REQUIRE_OK(rm.end(branch));
  return id;
}

}  // namespace xatm::test
