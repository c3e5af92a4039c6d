// Internal: the state a transaction_manager shares with its global transactions. Thread-safe:
// the registry is read-mostly under a shared mutex, counters are atomics, the decision log does
// its own locking.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>

#include "sqlite/decision_log.h"
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

  bool is_registered(std::string_view rm_name) const;
  // A new connection to a registered RM (the TM's own: phase-2 retries, rollback of orphans).
  result<std::unique_ptr<resource_manager>> connect(std::string_view rm_name) const;
};

}  // namespace xatm::detail
