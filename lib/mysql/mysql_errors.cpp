// MariaDB/MySQL native errors -> XA codes. The only file that interprets an errno.
//
// | native error                               | step                        | xa_code            |
// |--------------------------------------------|-----------------------------|--------------------|
// | Connector/C lost the socket (2001-2006,    | any                         | rm_failure         |
// | 2012, 2013, 2026, 2047, 2055, 5013-5015),  |                             |                    |
// | server shutdown 1053, KILL 1927,           |                             |                    |
// | aborted 1152/1184, MySQL idle timeout 4031 |                             |                    |
// | 1044/1045/1698 access denied, 1049 no db   | connect                     | rm_failure         |
// | 1193 unknown variable (server too old)     | connect                     | invalid            |
// | 1397 XAER_NOTA                             | any                         | not_found          |
// | 1398 XAER_INVAL                            | prepare                     | rm_error           |
// |                                            | others                      | invalid            |
// | 1399 XAER_RMFAIL "... ROLLBACK ONLY state" | any                         | rollback           |
// | 1399 XAER_RMFAIL other states              | any                         | protocol           |
// | 1400 XAER_OUTSIDE                          | any                         | outside            |
// | 1401 XAER_RMERR                            | any                         | rm_error           |
// | 1402 XA_RBROLLBACK                         | any                         | rollback           |
// | 1440 XAER_DUPID                            | any                         | duplicate_id       |
// | 1613 XA_RBTIMEOUT / 1614 XA_RBDEADLOCK     | any                         | rollback_timeout / |
// |                                            |                             | rollback_deadlock  |
// | 1213 ER_LOCK_DEADLOCK                      | commit, rollback            | retry              |
// |                                            | others                      | rollback_deadlock  |
// | 1205 ER_LOCK_WAIT_TIMEOUT                  | commit, rollback            | retry              |
// |                                            | start                       | rm_error           |
// |                                            | others                      | rollback_timeout   |
// | anything else                              | any                         | rm_error           |
//
// Why 1399 is not XAER_RMFAIL's "RM unavailable": MariaDB and MySQL answer ER_XAER_RMFAIL for
// "The command cannot be executed when global transaction is in the <state> state", a statement
// that is illegal in the branch's current state, on a connection that is perfectly alive. Taken
// as xa_code::rm_failure it would turn a state mix-up into "in doubt" (one-phase commit) or an
// endless recovery retry. The state name comes from a fixed English table (xa_state_names in
// sql/xa.cc) even when lc_messages translates the sentence, so it can be read: in "ROLLBACK ONLY"
// the server has already rolled the branch back (a deadlock victim answers that to XA END), which
// is an XA_RB* outcome; every other state is a protocol error.
//
// Why 1398 is not XAER_INVAL at prepare: an adapter's XAER_INVAL to prepare tells the TM that
// the RM cannot prepare as configured (commit() throws configuration_error; PostgreSQL's
// max_prepared_transactions = 0). MariaDB and MySQL have no such setting: XA is always on with
// InnoDB (innodb_support_xa is gone since MariaDB 10.3 / MySQL 8.0), and XA PREPARE answers
// XAER_NOTA, XAER_RMFAIL or XA_RBROLLBACK, never 1398; should it ever, it is the RM's error, not
// a setting. The nearest thing, a non-transactional table (MyISAM, Aria, MEMORY) written in a
// branch, is not refused at all: MariaDB 10.11 prepares it without a warning, and a rollback
// leaves that write in place. Use InnoDB tables in branches.
//
// Why lock errors depend on the step: InnoDB rolls the whole transaction back on a deadlock, so
// in a branch the branch is gone. A lock wait timeout in XA PREPARE or one-phase XA COMMIT
// (waiting for the backup lock) makes the server roll the branch back too, and the first error
// raised is the one the client sees. In XA COMMIT/ROLLBACK of a prepared branch the server says
// "return error to user for a retry" (sql/xa.cc): the branch is still prepared.
#include "mysql/mysql_errors.h"

#include <errmsg.h>
#include <mysqld_error.h>

#include <string>

namespace xatm::mysql_detail {
namespace {

// MySQL 8's ER_CLIENT_INTERACTION_TIMEOUT ("disconnected by the server because of inactivity");
// MariaDB's headers do not define it.
constexpr unsigned int mysql_client_interaction_timeout = 4031;

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

xa_code code_for(const native_error& error, mysql_step step) {
  if (is_connection_lost(error.number)) return xa_code::rm_failure;
  switch (error.number) {
    // Refused credentials or database: the RM cannot be connected to, as libpq reports it for
    // PostgreSQL (the same rm_error from transaction_manager::connect(), and recovery lists the
    // RM as unreachable). The server's message says why.
    case ER_DBACCESS_DENIED_ERROR:
    case ER_ACCESS_DENIED_ERROR:
    case ER_ACCESS_DENIED_NO_PASSWORD_ERROR:
    case ER_BAD_DB_ERROR: return step == mysql_step::connect ? xa_code::rm_failure : xa_code::rm_error;
    case ER_UNKNOWN_SYSTEM_VARIABLE: return step == mysql_step::connect ? xa_code::invalid : xa_code::rm_error;
    case ER_XAER_NOTA: return xa_code::not_found;
    case ER_XAER_INVAL: return step == mysql_step::prepare ? xa_code::rm_error : xa_code::invalid;
    case ER_XAER_RMFAIL: return says_rolled_back(error) ? xa_code::rollback : xa_code::protocol;
    case ER_XAER_OUTSIDE: return xa_code::outside;
    case ER_XAER_RMERR: return xa_code::rm_error;
    case ER_XA_RBROLLBACK: return xa_code::rollback;
    case ER_XAER_DUPID: return xa_code::duplicate_id;
    case ER_XA_RBTIMEOUT: return xa_code::rollback_timeout;
    case ER_XA_RBDEADLOCK: return xa_code::rollback_deadlock;
    case ER_LOCK_DEADLOCK:
      if (step == mysql_step::commit || step == mysql_step::rollback) return xa_code::retry;
      return xa_code::rollback_deadlock;
    case ER_LOCK_WAIT_TIMEOUT:
      if (step == mysql_step::commit || step == mysql_step::rollback) return xa_code::retry;
      if (step == mysql_step::start) return xa_code::rm_error;
      return xa_code::rollback_timeout;
    default: return xa_code::rm_error;
  }
}

failure make(xa_code code, const native_error& error, const failure_context& context) {
  failure cause = make_failure(code, std::string(context.what) + ": " + scrub_password(error.message, context.password),
                               std::string(context.rm_name));
  cause.native_code = static_cast<int>(error.number);
  cause.sqlstate = error.sqlstate;
  return cause;
}

}  // namespace

bool is_connection_lost(unsigned int number) noexcept {
  switch (number) {
    case CR_SOCKET_CREATE_ERROR:
    case CR_CONNECTION_ERROR:
    case CR_CONN_HOST_ERROR:
    case CR_IPSOCK_ERROR:
    case CR_UNKNOWN_HOST:
    case CR_SERVER_GONE_ERROR:
    case CR_SERVER_HANDSHAKE_ERR:
    case CR_SERVER_LOST:
    case CR_SSL_CONNECTION_ERROR:
    case CR_CONN_UNKNOWN_PROTOCOL:
    case CR_SERVER_LOST_EXTENDED:
    case CR_ERR_NET_READ:
    case CR_ERR_NET_WRITE:
    case CR_ERR_NET_UNCOMPRESS:
    case ER_SERVER_SHUTDOWN:
    case ER_ABORTING_CONNECTION:
    case ER_NEW_ABORTING_CONNECTION:
    case ER_CONNECTION_KILLED:
    case mysql_client_interaction_timeout: return true;
    default: return false;
  }
}

native_error connection_closed() { return native_error{CR_SERVER_GONE_ERROR, "HY000", "the connection is closed"}; }

failure statement_failure(const native_error& error, mysql_step step, const failure_context& context) {
  return make(code_for(error, step), error, context);
}

failure connect_failure(const native_error& error, const failure_context& context) {
  xa_code code = code_for(error, mysql_step::connect);
  // Whatever else refuses a connection (too many connections, handshake) is the server's state,
  // not the settings': the caller may try again later.
  if (code != xa_code::invalid) code = xa_code::rm_failure;
  return make(code, error, context);
}

xa_code rollback_cause(unsigned int number) noexcept {
  switch (number) {
    case ER_LOCK_DEADLOCK: return xa_code::rollback_deadlock;
    case ER_LOCK_WAIT_TIMEOUT: return xa_code::rollback_timeout;
    default: return xa_code::ok;
  }
}

bool says_rolled_back(const native_error& error) noexcept {
  switch (error.number) {
    case ER_XA_RBROLLBACK:
    case ER_XA_RBTIMEOUT:
    case ER_XA_RBDEADLOCK: return true;
    case ER_XAER_RMFAIL: return contains(error.message, "ROLLBACK ONLY");
    default: return false;
  }
}

bool says_still_active(const native_error& error) noexcept {
  return error.number == ER_XAER_RMFAIL && contains(error.message, "ACTIVE");
}

bool is_unknown_xid(const native_error& error) noexcept { return error.number == ER_XAER_NOTA; }

bool is_discarded_read_only(const native_error& error) noexcept { return error.number == ER_XA_RBROLLBACK; }

bool is_no_such_table(const failure& cause) noexcept {
  return cause.sqlstate == "42S02" || cause.native_code == ER_NO_SUCH_TABLE;
}

std::string scrub_password(std::string message, std::string_view password) {
  if (password.empty() || message.find(password) == std::string::npos) return message;
  return "(message withheld: it contains the text of the password)";
}

}  // namespace xatm::mysql_detail
