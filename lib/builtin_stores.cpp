// The wiring layer's decision store (docs/design.md section 2): the one place that names the
// store built into libxatm, the SQLite one (lib/sqlite). lib/core declares these functions
// (core/tm_core.h) and sees only a decision_store; a second store would be chosen here.
#include <memory>
#include <optional>
#include <string>

#include "core/decision_store.h"
#include "core/tm_core.h"
#include "sqlite/sqlite_decision_store.h"
#include "xatm/error.h"

namespace xatm::detail {

std::unique_ptr<decision_store> open_decision_log(const std::string& path, const std::string& tm_id,
                                                  const std::string& vfs_name) {
  auto opened = sqlite_decision_store::open({path, tm_id, vfs_name});
  if (opened) return std::move(opened).value();
  store_refusal refused = std::move(opened).refused();
  switch (refused.reason) {
    case open_refusal::in_use: throw log_in_use_error(std::move(refused.cause));
    // A log that exists but cannot be trusted is a log failure, never a reason to presume abort.
    case open_refusal::unusable: throw log_failure_error(std::move(refused.cause));
    case open_refusal::misconfigured: break;
  }
  throw configuration_error(std::move(refused.cause));
}

result<std::optional<int>> decision_log_holder(const std::string& path) {
  return sqlite_decision_store::lock_holder(path);
}

result<std::string> stored_tm_id(const std::string& path) { return sqlite_decision_store::stored_tm_id(path); }

}  // namespace xatm::detail
