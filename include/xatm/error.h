// xatm/error.h: the one flat family of exceptions the public API throws.
//
// Every exception derives from xatm::error and answers questions about the cause: the XA code,
// the RM's native code and SQLSTATE, and which RM answered. Catch `xatm::error` for "anything
// xatm", or a subclass for one outcome. Messages never contain passwords.
#pragma once

#include <stdexcept>
#include <string>

#include "xatm/export.h"
#include "xatm/result.h"

namespace xatm {

class XATM_EXPORT error : public std::runtime_error {
 public:
  explicit error(failure cause);

  xa_code code() const noexcept { return cause_.code; }
  int native_code() const noexcept { return cause_.native_code; }
  const std::string& sqlstate() const noexcept { return cause_.sqlstate; }
  const std::string& rm_name() const noexcept { return cause_.rm_name; }
  const failure& cause() const noexcept { return cause_; }

 private:
  failure cause_;
};

// The global transaction was rolled back on every RM; cause() says which branch and why.
class XATM_EXPORT rolled_back_error : public error {
  using error::error;
};

// The outcome is unknown: a one-phase commit whose reply was lost. Recovery cannot tell either;
// check the data. Never report such a transaction as committed or as rolled back.
class XATM_EXPORT in_doubt_error : public error {
  using error::error;
};

// An RM did the opposite of the decision (XA_HEUR*). Needs a human.
class XATM_EXPORT heuristic_error : public error {
  using error::error;
};

// A transaction or prepare timeout expired; the transaction was rolled back.
class XATM_EXPORT timeout_error : public error {
  using error::error;
};

// Bad settings: a malformed connection string, a server setting xatm needs that is off, ...
// commit() throws it, after rolling every branch back, when an RM refuses to prepare as it is
// configured (PostgreSQL with max_prepared_transactions = 0): rm_name() names the RM, the
// message the setting and its fix. Every transaction that writes there and on another RM fails
// the same way until it is changed; one whose only writing branch is there commits in one phase.
class XATM_EXPORT configuration_error : public error {
  using error::error;
};

// Invalid input rejected before anything was sent to an RM (oversize XID, bad tm_id, ...).
class XATM_EXPORT invalid_argument_error : public error {
  using error::error;
};

// The decision log cannot be written or is damaged; the TM refuses further commits.
class XATM_EXPORT log_failure_error : public error {
  using error::error;
};

// The decision log is held by another process (a running TM, or another xatm-recover).
class XATM_EXPORT log_in_use_error : public error {
  using error::error;
};

// A call that is illegal in the branch's current XA state (commit before prepare, ...).
class XATM_EXPORT protocol_error : public error {
  using error::error;
};

// Any other RM failure (connection lost, SQL error, unknown XID).
class XATM_EXPORT rm_error : public error {
  using error::error;
};

}  // namespace xatm
