// Internal: what tests and tools wire underneath a transaction_manager, outside the product's
// headers: RMs reached through any connector (scripted test RMs, interposers), a decision log
// opened through another SQLite VFS (fault injection).
#pragma once

#include <memory>
#include <string>

#include "core/resource_manager.h"
#include "xatm/transaction_manager.h"

namespace xatm::detail {

class tm_core;

// How a transaction_manager is built underneath; the defaults are the product's.
struct tm_wiring {
  // The SQLite VFS the decision log is opened with; empty: SQLite's default. A VFS registered
  // under this name with sqlite3_vfs_register() (tests inject I/O faults so); a name no VFS is
  // registered under is a configuration_error.
  std::string log_vfs;
};

struct tm_access {
  // A TM wired as `wiring` says; throws as transaction_manager's constructor does.
  static std::unique_ptr<transaction_manager> open(tm_options options, const tm_wiring& wiring);
  // Registers an RM reached through `connector` (checked as register_rm() checks a name).
  static void register_rm(transaction_manager& tm, std::string name, rm_connector connector);
};

}  // namespace xatm::detail
