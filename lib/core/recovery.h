// Internal: the recovery algorithm (DESIGN.md section 6), shared by the TM and xatm-recover.
// Not thread-safe by itself: callers serialize runs (the TM holds its recovery mutex, the tool
// holds the log's lock).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "sqlite/decision_log.h"
#include "xatm/recovery.h"
#include "xatm/transaction_manager.h"

namespace xatm::detail {

struct recovery_context {
  std::string tm_id;
  decision_log* log = nullptr;
  std::map<std::string, rm_connector, std::less<>> rms;
  // The running TM's incarnation (0 for the offline tool: nothing is live).
  std::uint64_t live_incarnation = 0;
  // For the live incarnation: true when the TM handed the gtrid over to recovery (its commit()
  // returned completion pending, or its rollback failed); anything else may still be in flight.
  std::function<bool(std::string_view gtrid)> handed_over;
  bool dry_run = false;
};

recovery_report run_recovery(const recovery_context& context);

}  // namespace xatm::detail
