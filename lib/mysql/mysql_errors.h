// Internal: the one place that reads MariaDB's and MySQL's native errors (server errnos 1xxx,
// Connector/C's client errors 2xxx/5xxx) and turns them into xatm::failure with an XA code.
// The same errno means different things at different protocol steps (ER_LOCK_WAIT_TIMEOUT in
// XA PREPARE has rolled the branch back, in XA COMMIT it only asks for a retry), so every
// function takes the step. Pure functions: call them from any thread.
#pragma once

#include <string>
#include <string_view>

#include "xatm/result.h"

namespace xatm::mysql_detail {

// What the statement that failed was doing.
enum class mysql_step {
  connect,           // mysql_real_connect and the session setup after it
  start,             // XA START
  probe,             // the read-only probe sent before XA END
  end,               // XA END of a branch that may go on to prepare
  prepare,           // XA PREPARE, or the XA COMMIT ... ONE PHASE of a read-only branch
  commit_one_phase,  // XA COMMIT ... ONE PHASE of an ended branch
  commit,            // XA COMMIT of a prepared branch (own or resolved)
  rollback,          // XA END / XA ROLLBACK while rolling back
  recover,           // XA RECOVER
  exec,              // the application's SQL
};

// An error as Connector/C reports it: mysql_errno(), mysql_sqlstate(), mysql_error().
struct native_error {
  unsigned int number = 0;
  std::string sqlstate;
  std::string message;
};

// Who answered and what was asked, for the failure's message and rm_name.
struct failure_context {
  std::string_view rm_name;
  std::string_view what;      // "prepare of 2019914801:tm.1.1:1 (XA PREPARE ...)", ...
  std::string_view password;  // scrubbed from the driver's messages; empty when none was set
};

// The error to report when a verb finds the handle already closed (CR_SERVER_GONE_ERROR).
native_error connection_closed();

// True when the error means the session is gone: Connector/C lost or never had the socket
// (CR_SERVER_GONE_ERROR, CR_SERVER_LOST, ...) or the server ended the session (shutdown, KILL).
// The MYSQL handle is unusable afterwards.
bool is_connection_lost(unsigned int number) noexcept;

// The failure for an error answered to `step`; see the .cpp for the table.
failure statement_failure(const native_error& error, mysql_step step, const failure_context& context);

// The failure for a mysql_real_connect that did not connect: xa_code::invalid for refused
// credentials or an unknown database (a configuration problem), xa_code::rm_failure otherwise.
failure connect_failure(const native_error& error, const failure_context& context);

// An error that, seen inside a branch, has made the branch rollback-only: ER_LOCK_DEADLOCK
// (InnoDB rolled the whole transaction back) and ER_LOCK_WAIT_TIMEOUT (xatm's rule, so that a
// MariaDB branch fails like a PostgreSQL one: a statement that lost its lock dooms the branch).
// Answers the XA_RB* code to report at end, or xa_code::ok for any other error.
xa_code rollback_cause(unsigned int number) noexcept;

// True when an XA_RB*/XAER_RMFAIL answer says the RM already rolled the branch back (XA_RB*,
// or XAER_RMFAIL "... in the ROLLBACK ONLY state").
bool says_rolled_back(const native_error& error) noexcept;

// True for XAER_RMFAIL "... when global transaction is in the ACTIVE state": the statement
// needed an ended branch and the branch is still active on the server.
bool says_still_active(const native_error& error) noexcept;

// True for XAER_NOTA: the server does not know the XID, or (MariaDB) it is prepared but still
// attached to the live session that prepared it.
bool is_unknown_xid(const native_error& error) noexcept;

// True for XA_RBROLLBACK answered to an XA COMMIT/ROLLBACK of a prepared branch that another
// session prepared: MariaDB answers it when that branch had written nothing, so that the server
// discarded it when its session ended (sql/xa.cc trans_xa_detach). Nothing was committed nor lost.
bool is_discarded_read_only(const native_error& error) noexcept;

// True when a failure of this adapter says a statement named a table that does not exist
// (ER_NO_SUCH_TABLE, SQLSTATE 42S02).
bool is_no_such_table(const failure& cause) noexcept;

// `message`, or a notice instead of it when it contains the text of `password`. Replacing only
// the password by "***" would show where its text stood, and so the password itself: a password
// "p" turned "accepting" into "acce***ting", a password "mysql" a socket path "/run/***d/".
std::string scrub_password(std::string message, std::string_view password);

}  // namespace xatm::mysql_detail
