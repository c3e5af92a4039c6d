// xatm/connection.h: the application's connection to one registered database (a resource manager).
//
// transaction_manager::connect() hands one out; enlist it in a global_transaction and run the
// branch's SQL on it with exec() or through the driver's own handle. It offers no transaction
// control: the transaction manager alone starts, prepares, commits and rolls back the branch it
// carries. Thread safety: one thread at a time per connection.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "xatm/export.h"
#include "xatm/result.h"

namespace xatm {

class resource_manager;  // xatm's side of the same connection (internal)

// exec()'s answer: the rows of the last statement (text, NULL as nullopt) and its row count.
struct query_result {
  std::vector<std::string> columns;
  std::vector<std::vector<std::optional<std::string>>> rows;
  std::uint64_t affected_rows = 0;
};

class XATM_EXPORT connection {
 public:
  virtual ~connection() = default;
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  // The RM's registered name (1..48 of [A-Za-z0-9_-]); every failure carries it.
  virtual const std::string& name() const noexcept = 0;
  // "postgresql", "mariadb" or "mysql".
  virtual std::string_view dialect() const noexcept = 0;

  // Runs SQL (one statement, or several for PostgreSQL) and returns the last statement's rows.
  // Inside an enlisted transaction it runs in the branch. Do not send transaction control
  // statements (BEGIN, COMMIT, XA ...): the transaction manager tracks the branch's state.
  virtual result<query_result> exec(std::string_view sql) = 0;
  // The driver's handle: PGconn* for PostgreSQL, MYSQL* for MariaDB/MySQL, with the same rule
  // as exec(). A commit left finishing in the background (tm_options::early_acknowledgement)
  // is waited for first.
  virtual void* native_handle() = 0;

  // False after the connection was lost or closed for a timeout; reconnect() opens a new one.
  virtual bool connected() const noexcept = 0;
  // Drops the connection and its unfinished branch (the RM rolls it back unless prepared) and
  // connects again.
  virtual result<void> reconnect() = 0;

  // Bounds every call on this connection that would otherwise wait as long as the driver does
  // (exec() included). A call with no answer within `timeout` closes the connection and fails
  // with xa_code::rm_failure. nullopt, the default: no bound.
  virtual void set_call_timeout(std::optional<std::chrono::milliseconds> timeout) noexcept = 0;
  virtual std::optional<std::chrono::milliseconds> call_timeout() const noexcept = 0;

 private:
  // Every connection is xatm's own resource_manager: the engine finds its side of it from here.
  friend class resource_manager;
  connection() = default;
};

}  // namespace xatm
