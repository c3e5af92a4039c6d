// Internal: the state a transaction_manager shares with its global transactions. Thread-safe:
// the registry is read-mostly under a shared mutex, counters are atomics, the decision store does
// its own locking.
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
#include <thread>

#include "core/decision_store.h"
#include "core/preflight.h"
#include "xatm/connection_settings.h"
#include "xatm/recovery.h"
#include "core/resource_manager.h"
#include "xatm/transaction_manager.h"

namespace xatm::detail {

struct tm_core : std::enable_shared_from_this<tm_core> {
  tm_options options;
  std::unique_ptr<decision_store> log;

  mutable std::shared_mutex registry_mutex;
  std::map<std::string, rm_connector, std::less<>> registry;

  std::atomic<std::uint64_t> next_sequence{1};

  // The RM names whose first application connection passed the durability check (preflight.h).
  durability_checks application_durability;

  std::atomic<std::uint64_t> committed{0};
  std::atomic<std::uint64_t> one_phase{0};
  std::atomic<std::uint64_t> rolled_back{0};
  std::atomic<std::uint64_t> completion_pending{0};

  // gtrids of this incarnation whose commit() or rollback gave up and left branches to recovery,
  // with the time they were handed over. Everything else of this incarnation may be in flight,
  // so recovery leaves it alone. A recovery run works on a copy taken BEFORE it reads the log:
  // a gtrid handed over after its decision became durable then always meets that decision.
  mutable std::mutex handed_over_mutex;
  std::map<std::string, std::chrono::steady_clock::time_point, std::less<>> handed_over;
  void hand_over(const std::string& gtrid);
  void take_back(const std::string& gtrid);  // finished after all: recovery need not look

  // Adds `name` to the registry; throws configuration_error for a bad or taken name.
  void register_rm(std::string name, rm_connector connector);

  // The background recovery thread (tm_options::recovery_interval): started after the first
  // begin()'s recovery run, stopped and joined by the transaction_manager's destructor (the
  // core itself may live on in global transactions that were not destroyed yet).
  void start_background_recovery();
  void stop_background_recovery() noexcept;
  std::mutex stop_mutex;
  std::condition_variable stop_requested;
  bool stopping = false;  // under stop_mutex
  std::thread recovery_thread;

  // One recovery run at a time (start, background thread, recover_now()).
  std::mutex recovery_mutex;
  std::once_flag initial_recovery;
  std::map<std::string, std::chrono::steady_clock::time_point> three_phase_sightings;  // under recovery_mutex
  recovery_report recover();

  // Three-phase mode: TM-owned control connections per RM (idle, autocommit), reused; the RMs
  // whose marker table is known to exist; markers whose branches are all finished, deleted by
  // the next recovery run (lazily, off the commit path).
  std::mutex control_mutex;
  std::map<std::string, std::vector<std::unique_ptr<resource_manager>>, std::less<>> idle_controls;
  std::set<std::string, std::less<>> marker_tables_ready;
  std::vector<std::pair<std::string, std::vector<std::string>>> markers_to_delete;  // gtrid, RMs
  result<std::unique_ptr<resource_manager>> lease_control(std::string_view rm_name);
  result<std::unique_ptr<resource_manager>> fresh_control(std::string_view rm_name);
  void release_control(std::unique_ptr<resource_manager> control);
  void delete_markers_later(std::string gtrid, std::vector<std::string> rm_names);
  void delete_finished_markers() noexcept;

  // Incarnation leases (core/identity.h): one connection per RM holding this incarnation's lock,
  // (re)taken at every recovery run, the first before the first begin() returns.
  std::mutex lease_mutex;
  std::map<std::string, std::unique_ptr<resource_manager>, std::less<>> leases;
  void hold_leases() noexcept;

  // RM names whose identity the application's first connection verified (transaction_manager::
  // connect); the TM's own connections are verified every time (connect()).
  std::mutex verified_mutex;
  std::set<std::string, std::less<>> verified_for_application;
  // RM names that decisions pending at open use and that have no identity pinned (a log from
  // before identities): never pinned on the TM's word, an operator re-pins them (xatm-recover
  // --repin). Written in the constructor only.
  std::set<std::string, std::less<>> unpinned_with_decisions;
  // Checks a new connection against the identity pinned for its RM name (pinning it at the first
  // meeting): a failure names the RM and what differs.
  result<void> verify(resource_manager& connection);

  bool is_registered(std::string_view rm_name) const;
  // A new connection of the TM's own to a registered RM (phase-2 retries, rollback of orphans,
  // control connections): every call on it is bounded by options.rm_call_timeout.
  // It reaches the database pinned for the name (verify()), or the connect fails.
  result<std::unique_ptr<resource_manager>> connect(std::string_view rm_name);
  // A new connection for the application: no call timeout, its SQL may run as long as it needs
  // (the engine bounds the verbs it sends on it with deadlines of its own).
  result<std::unique_ptr<resource_manager>> connect_for_application(std::string_view rm_name) const;
};

// `settings` with connect_timeout set to `timeout` (in whole seconds, rounded up) unless it sets
// one already: connecting to a silent server then fails instead of waiting for ever.
connection_settings with_connect_timeout(connection_settings settings, std::chrono::milliseconds timeout);

// A connector for an RM of a dialect, by the backend registered under that name (core/backend.h);
// throws configuration_error for an unknown dialect, empty settings or a keyword the dialect does
// not know, before anything connects. Its connects give up after `connect_timeout`
// unless the settings name a connect_timeout of their own (with_connect_timeout).
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
