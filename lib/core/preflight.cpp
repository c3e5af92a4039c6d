// The durability preflight and the session settings of the TM's own connections (preflight.h).
// What each dialect refuses, and why, is with its backend (lib/postgresql/postgresql_backend.cpp,
// lib/mysql/mysql_backend.cpp, judge_durability(), judge_writable()); a host crash is a power loss or a kernel
// crash, not a server crash. Core runs the query, words the refusal and decides when to ask.
//
// Not refused by any backend: settings that protect data pages against torn writes
// (full_page_writes on PostgreSQL, innodb_doublewrite on MariaDB). Turning them off is a
// legitimate configuration on storage that never tears a page (ZFS and other copy-on-write file
// systems, devices with atomic writes; MariaDB even turns the doublewrite buffer off by itself on
// such devices), and xatm cannot see the storage. A torn page is page corruption that hits local
// transactions alike, not an acknowledged XA outcome silently reversed, so xatm does not refuse
// them.
#include "core/preflight.h"

#include <string>
#include <utility>

#include "core/backend.h"
#include "xatm/error.h"

namespace xatm::detail {
namespace {

constexpr const char* opt_out =
    " (or, on a throwaway server for tests, tm_options::allow_unsafe_durability / "
    "xatm-recover --allow-unsafe-durability)";

// A value as the server printed it, shortened: it goes into a message.
std::string shown(const std::optional<std::string>& value) {
  if (!value) return "NULL";
  return value->size() <= 32 ? *value : value->substr(0, 32) + "...";
}

// Asks the backend's verdicts on the preflight query's answer and words a refusal.
result<void> judge(const resource_manager& rm, const backend& sql, const query_result& answer,
                   bool allow_unsafe_durability) {
  if (answer.rows.size() != 1 || answer.rows.front().size() < sql.preflight_query().values) {
    return make_failure(xa_code::rm_error, "RM '" + rm.name() + "': the server check got no settings back",
                        rm.name());
  }
  if (auto read_only = sql.judge_writable(answer.rows.front())) {
    return make_failure(xa_code::invalid,
                        "RM '" + rm.name() + "': the server " + read_only->what +
                            ". It is not used as this RM (nothing is done there, no decision is forgotten): " +
                            read_only->remedy,
                        rm.name());
  }
  if (allow_unsafe_durability) return {};
  auto unsafe = sql.judge_durability(answer.rows.front());
  if (!unsafe) return {};
  return make_failure(xa_code::invalid,
                      "RM '" + rm.name() + "': " + unsafe->setting + " = " + shown(unsafe->value) + " " + unsafe->why +
                          ": " + unsafe->remedy + opt_out,
                      rm.name());
}

}  // namespace

result<void> check_server(resource_manager& rm, bool allow_unsafe_durability) {
  const backend* sql = backend_of(rm);
  if (sql == nullptr) return {};  // test doubles
  auto answer = rm.exec(sql->preflight_query().sql);
  if (!answer) return std::move(answer).error();
  return judge(rm, *sql, answer.value(), allow_unsafe_durability);
}

result<void> prepare_own_connection(resource_manager& rm, bool allow_unsafe_durability) {
  const backend* sql = backend_of(rm);
  if (sql == nullptr) return {};  // test doubles
  std::string_view session = sql->own_session_statement();
  if (sql->runs_statement_lists()) {
    // One round trip: the session settings and the check's query in one exec() (it answers the
    // last statement's rows).
    auto answer = rm.exec(std::string(session) + "; " + std::string(sql->preflight_query().sql));
    if (!answer) return std::move(answer).error();
    return judge(rm, *sql, answer.value(), allow_unsafe_durability);
  }
  // One statement per exec(): check first, so that a refused server costs one round trip.
  if (auto safe = check_server(rm, allow_unsafe_durability); !safe) return safe;
  auto done = rm.exec(session);
  if (!done) return std::move(done).error();
  return {};
}

result<std::unique_ptr<resource_manager>> own_connection(result<std::unique_ptr<resource_manager>> connection,
                                                         bool allow_unsafe_durability) {
  if (!connection) return connection;
  if (auto ready = prepare_own_connection(*connection.value(), allow_unsafe_durability); !ready) {
    return std::move(ready).error();
  }
  return connection;
}

void server_checks::require_first(resource_manager& rm, const tm_options& options) {
  {
    std::lock_guard lock(mutex_);
    if (passed_.contains(rm.name())) return;
  }
  const auto own_timeout = rm.call_timeout();
  if (!own_timeout) rm.set_call_timeout(options.rm_call_timeout);
  auto safe = check_server(rm, options.allow_unsafe_durability);
  rm.set_call_timeout(own_timeout);
  if (!safe) {
    failure cause = std::move(safe).error();
    if (cause.code == xa_code::invalid) throw configuration_error(std::move(cause));
    throw_failure(cause);
  }
  std::lock_guard lock(mutex_);
  passed_.insert(rm.name());
}

}  // namespace xatm::detail
