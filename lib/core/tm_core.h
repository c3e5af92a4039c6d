// Internal: the core of a transaction manager, shared with the global transactions it began
// (they may outlive it): its options and decision store, the RM registry and the connections
// it opens for itself, the gtrids handed over to recovery, the incarnation leases, the
// three-phase unit, the recovery runs and their background thread, and the counters.
// transaction_manager (include/xatm/transaction_manager.h) is a thin handle on it. Thread-safe:
// every method may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>

#include "core/decision_store.h"
#include "core/preflight.h"
#include "core/resource_manager.h"
#include "core/marker_unit.h"
#include "core/tm_metrics.h"
#include "xatm/connection_settings.h"
#include "xatm/recovery.h"
#include "xatm/tcc.h"
#include "xatm/transaction_manager.h"

namespace xatm::detail {

class tm_core : public std::enable_shared_from_this<tm_core> {
 public:
  // A core over an opened store. Throws log_failure_error when the store cannot list its
  // pending decisions.
  tm_core(tm_options options, std::unique_ptr<decision_store> store);
  tm_core(const tm_core&) = delete;
  tm_core& operator=(const tm_core&) = delete;

  const tm_options& options() const noexcept { return options_; }
  decision_store& store() const noexcept { return *store_; }
  marker_unit& markers() noexcept { return markers_; }

  // A fresh gtrid of this incarnation: `<tm_id>.<incarnation id>.<seq>[.p3|.cm]`.
  std::string next_gtrid(commit_protocol protocol);

  // ---- the RM registry and connections -------------------------------------------------------
  // Adds `name` to the registry; throws configuration_error for a bad or taken name.
  void register_rm(std::string name, rm_connector connector);
  bool is_registered(std::string_view rm_name) const;
  // TCC participants (xatm/tcc.h) share the RMs' namespace: one name, one kind. Throws
  // configuration_error for a bad or taken name or a null participant.
  void register_tcc(std::string name, std::shared_ptr<tcc_participant> participant);
  // The participant registered under `name`, or nullptr.
  std::shared_ptr<tcc_participant> participant(std::string_view name) const;
  // A new connection for the application (transaction_manager::connect()), with its throws: the
  // first one to each RM passes the durability check and checks (or pins) the database's
  // identity. No call timeout: its SQL may run as long as it needs (the engine bounds the verbs
  // it sends on it with deadlines of its own).
  std::unique_ptr<resource_manager> connect_for_application(std::string_view rm_name);
  // A new connection of the TM's own to a registered RM (phase-2 retries, rollback of orphans,
  // control connections, leases): every call on it is bounded by options().rm_call_timeout.
  // It reaches the database pinned for the name (verify()), or the connect fails.
  result<std::unique_ptr<resource_manager>> connect(std::string_view rm_name);

  // ---- work handed over to recovery -----------------------------------------------------------
  // gtrids of this incarnation whose commit() or rollback gave up and left branches to recovery.
  // Everything else of this incarnation may be in flight, so recovery leaves it alone.
  void hand_over(const std::string& gtrid);
  void take_back(const std::string& gtrid);  // finished after all: recovery need not look

  // ---- recovery ----------------------------------------------------------------------------------
  // One run now (one at a time): takes the leases, deletes finished markers, resolves.
  recovery_report recover();
  // Before the first transaction: one run, then the background thread (tm_options::
  // recovery_interval). Only the first call does anything.
  void recover_once_then_in_background();
  // Stops and joins the background thread; called by the transaction_manager's destructor (the
  // core itself may live on in global transactions that were not destroyed yet).
  void stop_background_recovery() noexcept;

  // ---- counters (tm_metrics.h) -------------------------------------------------------------------
  tm_metrics& metrics() noexcept { return metrics_; }
  tm_statistics statistics() const noexcept;
  tm_health health() const;

 private:
  // The raw connection from the registry's connector, no check.
  result<std::unique_ptr<resource_manager>> open(std::string_view rm_name) const;
  // Checks a new connection against the identity pinned for its RM name (pinning it at the first
  // meeting): a failure names the RM and what differs.
  result<void> verify(resource_manager& connection);
  // Incarnation leases (core/identity.h): one connection per RM holding this incarnation's lock,
  // (re)taken at every recovery run, the first before the first begin() returns.
  void hold_leases() noexcept;

  const tm_options options_;
  const std::unique_ptr<decision_store> store_;
  marker_unit markers_;
  std::atomic<std::uint64_t> next_sequence_{1};

  mutable std::shared_mutex registry_mutex_;
  std::map<std::string, rm_connector, std::less<>> registry_;
  std::map<std::string, std::shared_ptr<tcc_participant>, std::less<>> participants_;  // by registry_mutex_

  // The RM names whose first application connection passed the server check (preflight.h).
  server_checks application_checks_;
  // RM names whose identity the application's first connection verified; the TM's own
  // connections are verified every time (connect()).
  std::mutex verified_mutex_;
  std::set<std::string, std::less<>> verified_for_application_;
  // RM names that decisions pending at open use and that have no identity pinned (a log from
  // before identities): never pinned on the TM's word, an operator re-pins them (xatm-recover
  // --repin). Written in the constructor only.
  std::set<std::string, std::less<>> unpinned_with_decisions_;

  // With the time each was handed over. A recovery run works on a copy taken BEFORE it reads the
  // log: a gtrid handed over after its decision became durable then always meets that decision.
  mutable std::mutex handed_over_mutex_;
  std::map<std::string, std::chrono::steady_clock::time_point, std::less<>> handed_over_;

  std::mutex lease_mutex_;
  std::map<std::string, std::unique_ptr<resource_manager>, std::less<>> leases_;

  // One recovery run at a time (start, background thread, recover_now()).
  std::mutex recovery_mutex_;
  std::once_flag initial_recovery_;
  std::map<std::string, std::chrono::steady_clock::time_point> marker_sightings_;  // under recovery_mutex_

  std::mutex stop_mutex_;
  std::condition_variable stop_requested_;
  bool stopping_ = false;         // under stop_mutex_
  bool markers_backlog_ = false;  // under stop_mutex_: marker_unit asks for an early deletion
  std::thread recovery_thread_;

  tm_metrics metrics_;
  // Decision records in the store when it opened: with the store's written and deleted counts,
  // the pending-decisions gauge.
  std::uint64_t pending_at_open_ = 0;
};

// `settings` with connect_timeout set to `timeout` (in whole seconds, rounded up) unless it sets
// one already: connecting to a silent server then fails instead of waiting for ever.
connection_settings with_connect_timeout(connection_settings settings, std::chrono::milliseconds timeout);

// A connector for an RM of a registered dialect (core/backend.h); throws configuration_error
// for an unknown dialect, empty settings or a keyword the dialect does not know, before
// anything connects. Its connects give up after `connect_timeout` unless the settings name a
// connect_timeout of their own (with_connect_timeout).
rm_connector make_connector(const std::string& rm_name, std::string_view dialect, const connection_settings& settings,
                            std::chrono::milliseconds connect_timeout);

// The decision store, opened by the wiring layer (lib/builtin_stores.cpp, the one file that names
// the SQLite store); lib/core sees only a decision_store.
//
// Opens the decision log at `path` (`vfs_name`: the SQLite VFS, tm_wiring::log_vfs), turning
// refusals into the public exceptions: log_in_use_error (held by another process),
// configuration_error (another tm_id, bad directory, ...) or log_failure_error (damaged or
// unreadable: never presume abort over it).
std::unique_ptr<decision_store> open_decision_log(const std::string& path, const std::string& tm_id,
                                                  const std::string& vfs_name = {});
// The pid of the process that holds the decision log at `path`, or nullopt when nobody does.
[[nodiscard]] result<std::optional<int>> decision_log_holder(const std::string& path);
// The tm_id stored in the decision log at `path`, read without changing its files.
[[nodiscard]] result<std::string> stored_tm_id(const std::string& path);

}  // namespace xatm::detail
