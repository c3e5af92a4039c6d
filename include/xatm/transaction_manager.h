// xatm/transaction_manager.h: start here. The transaction manager (TM) of one process.
//
// A transaction_manager owns the durable decision log (SQLite), a registry of named resource
// managers (name -> how to connect, so that recovery can reconnect without the application), and
// hands out global transactions: begin() -> enlist() branches -> commit(). It is thread-safe: any
// number of threads may begin and commit transactions at once; each global_transaction and each
// RM connection is used by one thread at a time. Exactly one process may use a log at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "xatm/global_transaction.h"
#include "xatm/recovery.h"
#include "xatm/connection.h"
#include "xatm/export.h"
#include "xatm/statistics.h"
#include "xatm/tcc.h"

namespace xatm {

struct tm_options {
  std::string tm_id;     // 1..32 of [A-Za-z0-9_-]; stable across restarts; names the log's owner
  std::string log_path;  // the SQLite decision log; its directory must not be writable by others
  // A transaction older than this at commit() is rolled back and commit() throws timeout_error.
  std::chrono::milliseconds transaction_timeout{std::chrono::seconds(60)};
  // An RM that has not answered prepare (or end) within this counts as a no-vote.
  std::chrono::milliseconds prepare_timeout{std::chrono::seconds(10)};
  // After the decision, how long commit() waits for the branches' commits, the first attempt
  // and the retries of a branch that failed to commit (on new connections) together, before it
  // returns completion_pending and leaves the rest to recovery. A commit that is slow but alive
  // (a lagging synchronous standby) is cut off too: set it above the RMs' slowest commit.
  std::chrono::milliseconds commit_retry_window{std::chrono::seconds(5)};
  // How long xatm waits for any one answer from an RM (outside prepare and end, which
  // prepare_timeout bounds) before it counts the RM as unreachable and closes the connection:
  // connecting (libpq's and MariaDB's connect_timeout, in whole seconds, unless the connection
  // string sets one), a one-phase commit (no answer: in_doubt_error), rollbacks, each phase-2
  // retry, recovery's scans and resolutions (the RM is then reported unreachable or the branch
  // unresolved, and retried on the next run), three-phase marker statements. The application's
  // own SQL on its connections is never cut short by it (exec(), the native handle).
  std::chrono::milliseconds rm_call_timeout{std::chrono::seconds(30)};
  // Early acknowledgement (off by default): commit() returns `committed` as soon as the decision
  // is durable; the branches' commits are sent and finish in the background. Caveat: another
  // connection may not see the writes for a moment after commit() returns (the connections of
  // the transaction itself do: their next use waits for their commit). A crash meanwhile
  // changes nothing: the decision is durable and recovery commits the rest.
  bool early_acknowledgement = false;
  // The default protocol of begin(); begin(protocol) overrides it per transaction.
  commit_protocol protocol = commit_protocol::two_phase;
  // Commit-marker protocol: the RM whose branch carries the decision row and commits in one phase
  // (docs/commit-marker.md). Empty: the RM of each transaction's first enlisted branch. A
  // transaction with no branch on this RM writes the row on a connection of the TM's own there.
  std::string decision_rm{};
  // Three-phase and commit-marker protocols: a branch of theirs that any xatm instance's recovery
  // sees prepared in two scans at least this far apart is terminated by the marker rule
  // (docs/three-phase.md, docs/commit-marker.md). Timeouts decide when to act, never what.
  std::chrono::milliseconds precommit_timeout{std::chrono::seconds(30)};
  // Whether this TM's recovery terminates OTHER TMs' branches decided by markers (three-phase
  // and commit-marker). Default: when its protocol is one of those. It relies on every instance
  // giving each RM name the same database (the bqual names the deciding RM by name and by the
  // start of its identity; docs/three-phase.md).
  std::optional<bool> terminate_others{};
  // How often the background thread runs recovery (0: never; recover_now() still works).
  // Recovery also runs once before the first begin() returns.
  std::chrono::milliseconds recovery_interval{std::chrono::seconds(30)};
  // Off by default: every RM's server must keep what it acknowledges across a host crash, or
  // xatm refuses it (docs/design.md section 6): PostgreSQL with fsync = on and
  // max_prepared_transactions > 0; MariaDB/MySQL with innodb_flush_log_at_trx_commit = 1 (MariaDB:
  // or 3) and, when log_bin is ON, sync_binlog = 1. A server with an unsafe setting can lose a
  // committed branch on a crash, and presumed abort then turns that commit into a rollback on that
  // RM alone. The check reads the server's settings on the first connection the application opens
  // to each RM (connect() throws configuration_error naming the RM, the setting and its value)
  // and on every connection the TM opens for itself (phase-2 retries, recovery, three-phase
  // markers: such an RM is refused, and recovery reports it unreachable and acts on nothing
  // there). true skips the check: for tests and benchmarks on throwaway servers only. It never
  // lets in a server that takes no writes (a PostgreSQL standby, a MariaDB/MySQL server with
  // read_only or innodb_read_only on): the same query refuses it, since a replica may lack
  // branches its primary has prepared.
  bool allow_unsafe_durability = false;
};

namespace detail {
struct tm_access;
struct tm_wiring;
}  // namespace detail

class XATM_EXPORT transaction_manager {
 public:
  // Opens (or creates) the decision log, taking its lock and a new incarnation. Throws
  // configuration_error (bad tm_id, log of another tm_id, log in use) or log_failure_error
  // (damaged log: xatm never presumes abort over a log it cannot read).
  explicit transaction_manager(const tm_options& options);
  ~transaction_manager();
  transaction_manager(const transaction_manager&) = delete;
  transaction_manager& operator=(const transaction_manager&) = delete;

  // Registers an RM by name. dialect: "postgresql", or "mysql" / "mariadb" (the same adapter).
  // The connection string is checked now: a malformed or empty one, or one with a keyword the
  // dialect does not know, throws configuration_error (so do a bad name or dialect), without the
  // password in the message. The decision log stores only the name.
  void register_rm(std::string name, std::string_view dialect, std::string_view conninfo);
  // Registers a TCC participant by name (xatm/tcc.h, docs/tcc.md), so that recovery can confirm
  // or cancel its branches after a crash without the application: register every participant
  // before the first begin(), as every RM. Names follow the RM names' rules and share their
  // namespace. Throws configuration_error for a bad or taken name or a null participant.
  void register_tcc(std::string name, std::shared_ptr<tcc_participant> participant);

  // A new connection to a registered RM, for the application to enlist. Throws rm_error when the
  // server is unreachable, configuration_error for an unknown name, and, on the first connection
  // to each RM, for a server that fails the durability check or takes no writes (a standby, a
  // read-only replica; allow_unsafe_durability above).
  std::unique_ptr<connection> connect(std::string_view rm_name);

  // A new global transaction with a fresh gtrid `<tm_id>.<incarnation id>.<seq>`. Nothing is logged.
  // The first call runs recovery first (register every RM before it): branches an earlier
  // incarnation left prepared are resolved before new work starts.
  global_transaction begin();
  global_transaction begin(commit_protocol protocol);

  // Runs recovery now (docs/design.md section 6) and reports what it found and did. Branches of
  // transactions in flight in this process are left alone. Safe from any thread; one run at a
  // time.
  recovery_report recover_now();

  const std::string& tm_id() const noexcept;
  // How many times the log was opened (for people), and this open's random incarnation id, the
  // middle part of every gtrid begin() makes: `<tm_id>.<incarnation id>.<seq>`.
  std::uint64_t incarnation() const noexcept;
  const std::string& incarnation_id() const noexcept;
  // Counters, gauges and latency histograms (xatm/statistics.h, docs/metrics.md): cheap, lock-free
  // reads; xatm/metrics.h renders them as Prometheus text.
  tm_statistics statistics() const noexcept;
  // Whether the decision log still takes decisions (a failed write refuses every later commit
  // until a restart) and whether the last recovery run left work outstanding.
  tm_health health() const;

 private:
  friend struct detail::tm_access;  // lib/core/tm_access.h: what tests and tools wire underneath
  transaction_manager(tm_options options, const detail::tm_wiring& wiring);

  // Everything else, the background recovery thread included, is the core's (lib/core/tm_core.h),
  // shared with the global transactions this TM began.
  std::shared_ptr<detail::tm_core> core_;
};

}  // namespace xatm
