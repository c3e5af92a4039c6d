// xatm/global_transaction.h: one global transaction, from begin() to commit() or rollback().
//
// RAII: a global_transaction destroyed before commit() or rollback() rolls every branch back
// (and logs what it did; destructors never throw). Use it from one thread at a time, together
// with the connections enlisted in it. Outcomes are explicit: commit() returns committed or
// completion_pending, or throws one of rolled_back_error, timeout_error, configuration_error,
// in_doubt_error, heuristic_error, log_failure_error (see commit()).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "xatm/connection.h"
#include "xatm/export.h"
#include "xatm/xid.h"

namespace xatm {

enum class commit_outcome : std::uint8_t {
  // Every branch committed.
  committed,
  // The commit decision is durable, so the transaction IS committed, but some branch did not
  // confirm its commit within the retry window (its RM was unreachable). Recovery finishes it;
  // until then that RM may not show the changes yet.
  completion_pending,
};

class transaction_manager;
namespace detail {
class tm_core;  // the transaction manager's shared state (lib/core/tm_core.h)
struct enlisted_branch {
  resource_manager* rm;  // xatm's side of the application's connection carrying the branch
  xid id;                // (xatm formatID, gtrid, branch number)
};
struct tcc_branch;  // a TCC branch (lib/core/tcc_branches.h)
}  // namespace detail

class XATM_EXPORT global_transaction {
 public:
  global_transaction(global_transaction&& other) noexcept;
  global_transaction& operator=(global_transaction&& other) noexcept;
  ~global_transaction();

  // Starts a branch of this transaction on `rm` (PostgreSQL: BEGIN; MySQL: XA START). `rm` must
  // come from a registered RM (transaction_manager::connect), carry no branch, and stay alive
  // until this transaction finishes. Run the branch's SQL on it afterwards. Returns `rm`.
  // Throws configuration_error (unregistered RM), protocol_error (already enlisted or busy) or
  // rm_error (the RM refused; the transaction itself is unharmed).
  connection& enlist(connection& rm);
  // Adds a TCC branch on the registered participant `participant` (xatm/tcc.h, docs/tcc.md): the
  // branch is recorded durably in the decision log, then its try is sent with `payload` (at
  // most 64 KiB), bounded by tm_options::prepare_timeout. Returns the branch's number (1, 2, ...
  // among this transaction's TCC branches). A try that succeeded is this branch's yes vote:
  // commit() decides XA and TCC branches together and then confirms it (a rollback cancels it),
  // retrying until the participant answers, within commit_retry_window and then by recovery.
  // Two-phase protocol only. Throws configuration_error (unknown participant, another
  // protocol), invalid_argument_error (payload too large) or protocol_error (finished) before
  // anything is sent; log_failure_error when the record could not be written; and, when the try
  // is refused, fails or times out, rolls the whole transaction back (XA branches rolled back,
  // TCC branches cancelled) and throws rolled_back_error naming the participant and why.
  std::uint32_t enlist_tcc(std::string_view participant, std::string payload);

  // Commits atomically across the enlisted branches (docs/design.md section 4).
  //  - returns committed: every branch committed;
  //  - returns completion_pending: committed (the decision is durable); some branch will be
  //    committed by recovery;
  //  - throws rolled_back_error: rolled back on every RM; cause() names the branch that voted no
  //    (or failed) and why;
  //  - throws timeout_error: the transaction or a prepare took too long; rolled back;
  //  - throws configuration_error: an RM cannot prepare as it is set up (PostgreSQL's
  //    max_prepared_transactions = 0); rolled back on every RM; rm_name() and the message say
  //    which RM and which setting to change;
  //  - throws in_doubt_error: the single writing branch was committed in one phase and its reply
  //    was lost (or did not come within tm_options::rm_call_timeout): nobody can know the
  //    outcome without looking at the data;
  //  - throws heuristic_error: an RM rolled back a branch after the commit decision (or a TCC
//    participant refused its confirm: its barrier had cancelled it);
  //  - throws log_failure_error: the decision could not be made durable. A full disk
  //    (SQLITE_FULL: nothing was written) rolled the transaction back; any other write or fsync
  //    failure leaves it undecided (branches remain prepared, since the record may be on disk)
  //    until the TM is restarted and recovery reads the log. Either way this TM refuses every
  //    later commit with log_failure_error until it is restarted (docs/faults.md).
  commit_outcome commit();

  // Rolls every branch back. Never logs anything (presumed abort).
  void rollback();

  const std::string& gtrid() const noexcept { return gtrid_; }
  bool finished() const noexcept { return finished_; }
  commit_protocol protocol() const noexcept { return protocol_; }

 private:
  friend class transaction_manager;
  using branch = detail::enlisted_branch;
  global_transaction(std::shared_ptr<detail::tm_core> core, std::string gtrid, commit_protocol protocol);
  void rollback_branches() noexcept;
  // The bqual's tail naming the RM that decides (three-phase: the arbiter; commit-marker: the
  // decision RM) and the start of its identity.
  std::string three_phase_suffix(const std::string& arbiter) const;
  std::string commit_marker_suffix(const std::string& decision_rm, std::size_t number_size) const;

  std::shared_ptr<detail::tm_core> core_;
  std::string gtrid_;
  std::chrono::steady_clock::time_point started_;
  std::vector<branch> branches_;
  // TCC branches, in enlist order (an incomplete type here: std::vector allows it, and every
  // member that needs it complete is defined in lib/core/global_transaction.cpp).
  std::vector<detail::tcc_branch> tcc_branches_;
  commit_protocol protocol_ = commit_protocol::two_phase;
  // Commit-marker protocol: the RM whose branch carries the decision row, fixed at the first
  // enlist (every bqual names it).
  std::string decision_rm_;
  bool finished_ = false;
};

}  // namespace xatm
