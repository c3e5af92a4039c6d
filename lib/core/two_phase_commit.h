// Internal: the protocol engine's entry points (docs/design.md section 4). global_transaction
// hands its branches here; the steps themselves are in two_phase_commit.cpp.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "xatm/global_transaction.h"
#include "core/resource_manager.h"
#include "core/tcc_branches.h"

namespace xatm::detail {

class tm_core;

// One verb on one connection, waiting for the answer until `deadline` at the latest. An RM that
// has not answered by then is abandoned (its connection closed: an unprepared branch dies with
// it, a prepared one stays for recovery) and the call fails with rm_failure. The engine's calls
// on the application's connections go through here or through one poll() loop over all RMs
// (drive_calls), never through the blocking verbs, which wait as long as the driver does on a
// connection without a call timeout.
result<vote> call_until(resource_manager& rm, xa_verb verb, const xid& branch,
                        std::chrono::steady_clock::time_point deadline);

// Commits (or rolls back) a transaction's enlisted branches by `protocol`: the steps of
// docs/design.md section 4 in order, with three-phase mode's marker steps (section 7), or the
// commit-marker protocol's (section 12) with the decision row in the branch on `decision_rm`.
// Returns committed or completion_pending, or throws the outcome global_transaction::commit()
// documents.
// TCC branches (`tcc`, two-phase only) vote with their tries, which succeeded at enlist_tcc(): the
// decision is always logged when there are any, and they are confirmed next to the XA commits.
commit_outcome run_commit(tm_core& core, const std::string& gtrid, std::chrono::steady_clock::time_point started,
                          std::vector<enlisted_branch>& branches, std::vector<tcc_branch>& tcc,
                          commit_protocol protocol, const std::string& decision_rm);
// Cancels a rolled-back transaction's TCC branches, retrying within commit_retry_window: all
// cancelled, their records go (decision_store::mark_complete); otherwise the gtrid is handed
// over to recovery, which cancels the rest (no decision: presumed abort). Never throws.
void cancel_tcc_branches(tm_core& core, const std::string& gtrid, std::vector<tcc_branch>& tcc) noexcept;

}  // namespace xatm::detail
