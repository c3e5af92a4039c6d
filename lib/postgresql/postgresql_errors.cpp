// PostgreSQL's native errors to XA codes. The rules, by step:
//
//   any step, session gone (libpq lost the socket, FATAL/PANIC, 08xxx, 57P01-03)  XAER_RMFAIL
//   prepare, commit_one_phase: the server has rolled the transaction back on any
//     ERROR, so the answer is an XA_RB* code chosen by SQLSTATE (23 integrity,
//     40P01 deadlock, 40001 transient, ...), except max_prepared_transactions = 0   XAER_INVAL
//     (55000 "prepared transactions are disabled": a server setting, not this branch's
//     fault; XAER_INVAL at prepare is how an adapter says so, and the TM reports it as
//     configuration_error. The branch is rolled back all the same.)
//   resolve: 42704 no such gid                                                  XAER_NOTA
//            55000 gid busy (another session is finishing it)                   XA_RETRY
//            0A000 it belongs to another database, and anything else            XAER_RMERR
//   start, end, rollback, recover, exec, connect                                XAER_RMERR
#include "postgresql/postgresql_errors.h"

#include <cstring>
#include <string>

namespace xatm::postgresql_detail {
namespace {

std::string field(const PGresult* answer, int code) {
  const char* text = answer == nullptr ? nullptr : PQresultErrorField(answer, code);
  return text == nullptr ? std::string() : std::string(text);
}

// libpq's messages end in a newline and may continue on tab-indented lines; failures are one line.
std::string one_line(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\t' || c == '\r') c = ' ';
  }
  while (!text.empty() && text.back() == ' ') text.pop_back();
  std::string squeezed;
  for (char c : text) {
    if (c == ' ' && !squeezed.empty() && squeezed.back() == ' ') continue;
    squeezed += c;
  }
  return squeezed;
}

bool starts_with(std::string_view text, std::string_view prefix) { return text.substr(0, prefix.size()) == prefix; }

// The server's own words: primary message, then detail and hint when it gave them.
std::string server_message(const PGresult* answer, const PGconn* conn) {
  std::string message = field(answer, PG_DIAG_MESSAGE_PRIMARY);
  if (message.empty()) {
    // libpq-generated results (lost connection, protocol trouble) carry no fields, only text.
    const char* text = answer != nullptr ? PQresultErrorMessage(answer) : nullptr;
    if ((text == nullptr || *text == '\0') && conn != nullptr) text = PQerrorMessage(conn);
    message = text == nullptr ? std::string() : std::string(text);
  }
  if (auto detail = field(answer, PG_DIAG_MESSAGE_DETAIL); !detail.empty()) message += " (detail: " + detail + ")";
  if (auto hint = field(answer, PG_DIAG_MESSAGE_HINT); !hint.empty()) message += " (hint: " + hint + ")";
  return one_line(std::move(message));
}

// The XA_RB* code for an error that made the server roll the transaction back.
xa_code rollback_code(std::string_view sqlstate) {
  if (starts_with(sqlstate, "23") || sqlstate == "40002") return xa_code::rollback_integrity;
  if (sqlstate == "40P01") return xa_code::rollback_deadlock;
  if (sqlstate == "40001") return xa_code::rollback_transient;          // serialization failure: retry
  if (starts_with(sqlstate, "53")) return xa_code::rollback_transient;  // out of memory, disk, slots
  if (sqlstate == "57014") return xa_code::rollback_timeout;            // statement_timeout (or a cancel)
  if (sqlstate == "42710") return xa_code::rollback_other;              // the gid is already prepared
  return xa_code::rollback;
}

bool mentions(std::string_view text, std::string_view what) { return text.find(what) != std::string_view::npos; }

// "prepared transactions are disabled", hint "Set max_prepared_transactions to a nonzero value."
// The GUC name survives translation of the messages; the English text is the fallback.
bool is_prepared_transactions_disabled(const PGresult* answer, std::string_view sqlstate) {
  if (sqlstate != "55000") return false;
  auto primary = field(answer, PG_DIAG_MESSAGE_PRIMARY);
  auto hint = field(answer, PG_DIAG_MESSAGE_HINT);
  return mentions(hint, "max_prepared_transactions") || mentions(primary, "max_prepared_transactions") ||
         mentions(primary, "prepared transactions are disabled");
}

failure make(xa_code code, std::string sqlstate, std::string message, const failure_context& context) {
  failure cause;
  cause.code = code;
  cause.sqlstate = std::move(sqlstate);
  cause.rm_name = std::string(context.rm_name);
  cause.message = scrub_password(std::move(message), context.password);
  return cause;
}

// What a lost session means for the branch at this step: said in the message for the operator.
const char* lost_consequence(pg_step step) {
  switch (step) {
    case pg_step::prepare: return " (the branch may or may not be prepared: recovery resolves it)";
    case pg_step::commit_one_phase: return " (the outcome of the one-phase commit is unknown: in doubt)";
    case pg_step::resolve:
      return " (the prepared branch may or may not be finished: retry, or let recovery resolve it)";
    case pg_step::start:
    case pg_step::end:
    case pg_step::rollback:
    case pg_step::exec: return " (the server rolls back an unprepared branch of a lost session)";
    case pg_step::connect:
    case pg_step::recover: return "";
  }
  return "";
}

}  // namespace

bool is_error_result(const PGresult* answer) noexcept {
  if (answer == nullptr) return true;
  switch (PQresultStatus(answer)) {
    case PGRES_BAD_RESPONSE:
    case PGRES_NONFATAL_ERROR:
    case PGRES_FATAL_ERROR: return true;
    default: return false;
  }
}

bool is_connection_lost(const PGresult* answer, const PGconn* conn) noexcept {
  if (conn == nullptr || PQstatus(conn) == CONNECTION_BAD) return true;
  if (answer == nullptr) return false;
  const char* severity = PQresultErrorField(answer, PG_DIAG_SEVERITY_NONLOCALIZED);
  if (severity != nullptr && (std::strcmp(severity, "FATAL") == 0 || std::strcmp(severity, "PANIC") == 0)) {
    return true;  // the server ends the session after a FATAL, whatever the SQLSTATE
  }
  const char* sqlstate = PQresultErrorField(answer, PG_DIAG_SQLSTATE);
  if (sqlstate == nullptr) return false;
  std::string_view state(sqlstate);
  // 08: connection exception; 57P01-57P03: admin shutdown, crash shutdown, cannot connect now.
  return starts_with(state, "08") || state == "57P01" || state == "57P02" || state == "57P03";
}

bool is_undefined_table(const failure& cause) noexcept { return cause.sqlstate == "42P01"; }

failure statement_failure(const PGresult* answer, const PGconn* conn, pg_step step, const failure_context& context) {
  std::string sqlstate = field(answer, PG_DIAG_SQLSTATE);
  std::string message = std::string(context.what) + " failed: " + server_message(answer, conn);

  if (is_connection_lost(answer, conn)) {
    return make(xa_code::rm_failure, std::move(sqlstate), "connection lost: " + message + lost_consequence(step),
                context);
  }
  switch (step) {
    case pg_step::prepare:
      if (is_prepared_transactions_disabled(answer, sqlstate)) {
        return make(xa_code::invalid, std::move(sqlstate),
                    "PostgreSQL's max_prepared_transactions is 0: set it > 0 in postgresql.conf and restart "
                    "the server (the branch was rolled back). " +
                        message,
                    context);
      }
      [[fallthrough]];
    case pg_step::commit_one_phase: {
      // An ERROR while the transaction block ends aborts the whole transaction: the branch is gone.
      // (The code is read before `sqlstate` is moved into the failure.)
      xa_code code = rollback_code(sqlstate);
      return make(code, std::move(sqlstate), message + " (the branch was rolled back)", context);
    }
    case pg_step::resolve:
      if (sqlstate == "42704") return make(xa_code::not_found, std::move(sqlstate), message, context);
      if (sqlstate == "55000") {
        return make(xa_code::retry, std::move(sqlstate),
                    message + " (another session is finishing this prepared transaction: retry later)", context);
      }
      if (sqlstate == "0A000") {
        return make(xa_code::rm_error, std::move(sqlstate),
                    message +
                        " (the prepared transaction belongs to another database: connect to the database "
                        "where it was prepared to finish it)",
                    context);
      }
      return make(xa_code::rm_error, std::move(sqlstate), message, context);
    case pg_step::connect:
    case pg_step::start:
    case pg_step::end:
    case pg_step::rollback:
    case pg_step::recover:
    case pg_step::exec: return make(xa_code::rm_error, std::move(sqlstate), message, context);
  }
  return make(xa_code::rm_error, std::move(sqlstate), message, context);
}

failure driver_failure(const PGconn* conn, pg_step step, const failure_context& context) {
  if (conn == nullptr) {
    return make(xa_code::rm_failure, {}, std::string(context.what) + " failed: not connected", context);
  }
  std::string message = std::string(context.what) + " failed: " + one_line(PQerrorMessage(conn));
  if (!is_connection_lost(nullptr, conn)) return make(xa_code::rm_error, {}, std::move(message), context);
  return make(xa_code::rm_failure, {}, "connection lost: " + message + lost_consequence(step), context);
}

failure connect_failure(const PGconn* conn, const failure_context& context, std::string_view gave_up) {
  // libpq's text for the attempt ends "... failed: " until it knows why: `gave_up` completes it.
  std::string reason =
      conn == nullptr ? std::string("out of memory") : one_line(PQerrorMessage(conn) + std::string(gave_up));
  return make(xa_code::rm_failure, {}, std::string(context.what) + " failed: " + reason, context);
}

bool answered_rollback(const PGresult* answer) noexcept {
  // PQcmdStatus takes a non-const PGresult* but only reads it.
  return answer != nullptr && std::strcmp(PQcmdStatus(const_cast<PGresult*>(answer)), "ROLLBACK") == 0;
}

failure rolled_back_instead(const failure_context& context) {
  return make(xa_code::rollback, {},
              std::string(context.what) +
                  " answered ROLLBACK: a statement of the branch had failed, so PostgreSQL rolled it back",
              context);
}

std::string scrub_password(std::string message, std::string_view password) {
  if (password.empty() || message.find(password) == std::string::npos) return message;
  return "(message withheld: it contains the text of the password)";
}

}  // namespace xatm::postgresql_detail
