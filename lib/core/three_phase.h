// Internal: three-phase mode's side of a transaction manager (docs/design.md section 7): the
// pre-commit step that writes the markers, the control connections it writes them on (the TM's
// own, idle and in autocommit, kept per RM and reused), the RMs whose marker table is known to
// exist, and the markers of finished transactions waiting to be deleted off the commit path.
// Thread-safe: any number of committing threads and one recovery run may use it at once.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/resource_manager.h"
#include "xatm/result.h"

namespace xatm::detail {

// What the pre-commit step found at the arbiter.
enum class precommit_verdict : std::uint8_t {
  committed,  // P won at the arbiter: the transaction is committed, whoever finishes it
  aborted,    // a terminator's A won first: the transaction must be rolled back
  in_doubt,   // the marker could be neither written nor read: the arbiter's row decides, through
              // termination; the branches stay prepared
};

struct precommit_result {
  precommit_verdict verdict = precommit_verdict::in_doubt;
  failure cause;  // for in_doubt: why the last attempt failed
};

class three_phase_unit {
 public:
  // Opens one of the TM's own connections to a registered RM (identity-checked, bounded).
  using own_connector = std::function<result<std::unique_ptr<resource_manager>>(std::string_view rm_name)>;

  explicit three_phase_unit(own_connector connect) : connect_(std::move(connect)) {}

  // PreCommit of `gtrid`. Inserting P at `arbiter` (branch 1's RM) is the commit point: from then
  // on any terminator commits too; if a terminator got there first with A, the transaction is
  // aborted. An insert whose reply was lost is retried once on a fresh connection (the
  // insert-if-absent is idempotent) and never assumed either way. Once P won, P goes to every
  // other RM of `rm_names` as a hint, so that a terminator that reaches only that RM commits at
  // once; hints change nothing when they fail. `marker_rms` is the row's list of RMs.
  [[nodiscard]] precommit_result precommit(const std::string& gtrid, const std::string& arbiter,
                                           const std::vector<std::string>& rm_names, const std::string& marker_rms);

  // Queues the deletion of a finished transaction's markers on `rm_names`; done by the next
  // delete_finished_markers() (each recovery run), never on the commit path.
  void delete_markers_later(std::string gtrid, std::vector<std::string> rm_names);
  // Deletes the queued markers; those it could not delete stay queued for the next run.
  void delete_finished_markers() noexcept;

 private:
  // A control connection to `rm_name`: an idle one, else a fresh one.
  result<std::unique_ptr<resource_manager>> lease_control(std::string_view rm_name);
  // A new control connection, its session prepared for markers and the marker table installed
  // at the first one to each RM.
  result<std::unique_ptr<resource_manager>> fresh_control(std::string_view rm_name);
  // Keeps a control connection for reuse, unless it was lost or carries a branch.
  void release_control(std::unique_ptr<resource_manager> control);

  own_connector connect_;
  std::mutex mutex_;
  std::map<std::string, std::vector<std::unique_ptr<resource_manager>>, std::less<>> idle_controls_;
  std::set<std::string, std::less<>> marker_tables_ready_;
  std::vector<std::pair<std::string, std::vector<std::string>>> markers_to_delete_;  // gtrid, RMs
};

}  // namespace xatm::detail
