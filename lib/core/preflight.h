// Internal: the checks xatm makes on an RM's server before trusting it with a transaction, and
// the session settings it forces on the connections it opens for itself (docs/design.md
// sections 6 and 8, "As built").
//
// A server that acknowledges a commit it can lose on a host crash breaks xatm's promise in a way
// no TM can repair: a branch the TM committed comes back prepared (or not at all) after the TM
// forgot its decision, and presumed abort turns the commit into a rollback on that RM alone.
// check_server() refuses such a server (xa_code::invalid, naming the RM, the setting, its
// value and what it must be); tm_options::allow_unsafe_durability (xatm-recover
// --allow-unsafe-durability) skips it for tests and benchmarks on throwaway servers.
//
// A server that takes no writes (a physical standby, a read-only replica) is no RM for xatm,
// whatever the options: a connection string with several hosts, a service or a failover name
// may land on a replica of the right database, whose identity row matches but which may not
// have replayed every PREPARE of its primary. Recovery reading "no branch" there would forget a
// COMMIT decision and the primary's branch would be presumed aborted. The same query refuses it
// (xa_code::invalid, naming the RM, what the server is and what to do).
//
// Where it runs: on every connection the TM opens for itself (phase-2 retries, control
// connections, recovery's scans and resolutions: own_connection()), and on the first
// application connection to each RM name in a TM process (server_checks). Thread safety:
// the free functions use one connection from one thread; server_checks is thread-safe.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

#include "core/resource_manager.h"
#include "xatm/transaction_manager.h"

namespace xatm::detail {

// Runs ONE query on `rm` (a fresh, idle connection) and answers whether its server takes writes
// and (unless `allow_unsafe_durability`) keeps what it acknowledges across a host crash; what
// each dialect refuses is its backend's judge_writable() and judge_durability() (docs/design.md
// section 6, "durability preflight"). A connection without a backend (test doubles) passes
// without a query. A server that fails the check is xa_code::invalid with rm_name set; a failed
// query is its own failure (lost connection, ...).
result<void> check_server(resource_manager& rm, bool allow_unsafe_durability = false);

// Makes a new connection of the TM's own (not the application's) safe for xatm's statements
// (backend::own_session_statement()), and checks its server (check_server()). One round trip
// where the backend runs statement lists, two elsewhere. Answers the failure of either.
result<void> prepare_own_connection(resource_manager& rm, bool allow_unsafe_durability);

// A connector's answer for a connection of the TM's own: prepare_own_connection() on it, the
// connection dropped when that fails.
result<std::unique_ptr<resource_manager>> own_connection(result<std::unique_ptr<resource_manager>> connection,
                                                         bool allow_unsafe_durability);

// The application's connections (transaction_manager::connect()): check_server() runs on the
// first one to each RM name in this TM (and again after a refusal, until one passes), not on
// every connect.
class server_checks {
 public:
  // Checks `rm`, a connection just opened for the application, unless its RM name passed before
  // (durability only unless options.allow_unsafe_durability). The check's query is bounded by
  // options.rm_call_timeout (the connection's own call timeout is restored afterwards). Throws
  // configuration_error for a read-only or unsafe server, the matching xatm::error (rm_error,
  // ...) when the query fails.
  void require_first(resource_manager& rm, const tm_options& options);

 private:
  std::mutex mutex_;
  std::set<std::string, std::less<>> passed_;
};

}  // namespace xatm::detail
