// Internal: the marker side of a transaction manager, for the two protocols decided by marker
// rows in the RMs (docs/design.md sections 7 and 12): three-phase mode's pre-commit step, the
// commit-marker protocol's decision tables and its settling of a lost commit reply, the control
// connections markers are written on (the TM's own, idle and in autocommit, kept per RM and
// reused), the RMs whose marker table is known to exist, and the markers of finished
// transactions waiting to be deleted off the commit path.
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

#include "core/markers.h"
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

class marker_unit {
 public:
  // Opens one of the TM's own connections to a registered RM (identity-checked, bounded).
  using own_connector = std::function<result<std::unique_ptr<resource_manager>>(std::string_view rm_name)>;

  // `on_backlog` is called (from a committing thread, without locks held) when many finished
  // transactions' markers wait for deletion: the TM then deletes them soon, off the commit path.
  marker_unit(own_connector connect, std::function<void()> on_backlog)
      : connect_(std::move(connect)), on_backlog_(std::move(on_backlog)) {}

  // PreCommit of `gtrid`. Inserting P at `arbiter` (branch 1's RM) is the commit point: from then
  // on any terminator commits too; if a terminator got there first with A, the transaction is
  // aborted. An insert whose reply was lost is retried once on a fresh connection (the
  // insert-if-absent is idempotent) and never assumed either way. Once P won, P goes to every
  // other RM of `rm_names` as a hint, so that a terminator that reaches only that RM commits at
  // once; hints change nothing when they fail. `marker_rms` is the row's list of RMs.
  [[nodiscard]] precommit_result precommit(const std::string& gtrid, const std::string& arbiter,
                                           const std::vector<std::string>& rm_names, const std::string& marker_rms);

  // Inserts `proposal` for `gtrid` at `rm_name` unless a row exists there, and answers which row
  // won: precommitted (P) or aborted (A), or in_doubt when neither the insert nor the read got an
  // answer (two attempts, the second on a fresh connection). The insert-if-absent waits behind an
  // uncommitted row of the same gtrid, so a coordinator settling its own lost commit reply with
  // `aborted` learns what its decision branch did.
  [[nodiscard]] precommit_result decide(const std::string& gtrid, const std::string& rm_name, marker_state proposal,
                                        const std::string& marker_rms);

  // The commit-marker protocol's qualified tables at `rm_name` (found once, then cached); the
  // marker table is created there first if missing.
  [[nodiscard]] result<decision_tables> tables_at(const std::string& rm_name);

  // Queues the deletion of a finished transaction's markers on `rm_names`; done by the next
  // delete_finished_markers() (each recovery run, or sooner once many wait), never on the commit path.
  void delete_markers_later(std::string gtrid, std::vector<std::string> rm_names);
  // Deletes the queued markers, many per statement; those it could not delete stay queued.
  void delete_finished_markers() noexcept;
  // How many finished transactions' markers wait for deletion.
  std::size_t markers_waiting() const;

  // Deletion is asked for sooner than the next recovery run once this many transactions wait.
  static constexpr std::size_t deletion_backlog = 256;

 private:
  // A control connection to `rm_name`: an idle one, else a fresh one.
  result<std::unique_ptr<resource_manager>> lease_control(std::string_view rm_name);
  // A new control connection, its session prepared for markers and the marker table installed
  // at the first one to each RM.
  result<std::unique_ptr<resource_manager>> fresh_control(std::string_view rm_name);
  // Keeps a control connection for reuse, unless it was lost or carries a branch.
  void release_control(std::unique_ptr<resource_manager> control);

  own_connector connect_;
  std::function<void()> on_backlog_;
  mutable std::mutex mutex_;
  std::map<std::string, decision_tables, std::less<>> decision_tables_;
  std::map<std::string, std::vector<std::unique_ptr<resource_manager>>, std::less<>> idle_controls_;
  std::set<std::string, std::less<>> marker_tables_ready_;
  std::vector<std::pair<std::string, std::vector<std::string>>> markers_to_delete_;  // gtrid, RMs
};

}  // namespace xatm::detail
