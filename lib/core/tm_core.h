// Internal: the state a transaction_manager shares with its global transactions. Thread-safe:
// the registry is read-mostly under a shared mutex, counters are atomics, the decision log does
// its own locking.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>

#include "sqlite/decision_log.h"
#include "xatm/recovery.h"
#include "xatm/transaction_manager.h"

namespace xatm::detail {

struct tm_core {
  tm_options options;
  std::unique_ptr<decision_log> log;

  mutable std::shared_mutex registry_mutex;
  std::map<std::string, rm_connector, std::less<>> registry;

  std::atomic<std::uint64_t> next_sequence{1};

  std::atomic<std::uint64_t> committed{0};
  std::atomic<std::uint64_t> one_phase{0};
  std::atomic<std::uint64_t> rolled_back{0};
  std::atomic<std::uint64_t> completion_pending{0};

  // gtrids of this incarnation whose commit() or rollback gave up and left branches to recovery.
  // Everything else of this incarnation may be in flight, so recovery leaves it alone.
  mutable std::mutex handed_over_mutex;
  std::set<std::string, std::less<>> handed_over;
  void hand_over(const std::string& gtrid);
  bool is_handed_over(std::string_view gtrid) const;

  // One recovery run at a time (start, background thread, recover_now()).
  std::mutex recovery_mutex;
  std::once_flag initial_recovery;
  recovery_report recover();

  bool is_registered(std::string_view rm_name) const;
  // A new connection to a registered RM (the TM's own: phase-2 retries, rollback of orphans).
  result<std::unique_ptr<resource_manager>> connect(std::string_view rm_name) const;
};

// Opens the decision log, turning refusals into the public exceptions: log_in_use_error (held
// by another process), configuration_error (another tm_id, bad directory, ...) or
// log_failure_error (damaged: never presume abort over it).
std::unique_ptr<decision_log> open_decision_log(const std::string& path, const std::string& tm_id);

}  // namespace xatm::detail
