// Internal: the one place that reads libpq's and PostgreSQL's native errors (SQLSTATE, severity,
// command tags, libpq's connection messages) and turns them into xatm::failure with an XA code.
// The same SQLSTATE means different things at different protocol steps (an error in PREPARE
// TRANSACTION has rolled the branch back, the same error in COMMIT PREPARED has not), so every
// function takes the step. Pure functions: call them from any thread.
#pragma once

#include <libpq-fe.h>

#include <string>
#include <string_view>

#include "xatm/result.h"

namespace xatm::postgresql_detail {

// What the statement that failed was doing.
enum class pg_step {
  connect,           // opening the connection
  start,             // BEGIN
  end,               // the read-only probe sent at end
  prepare,           // PREPARE TRANSACTION, or the COMMIT of a read-only branch
  commit_one_phase,  // COMMIT of an ended branch
  resolve,           // COMMIT PREPARED / ROLLBACK PREPARED
  rollback,          // ROLLBACK of the connection's own unprepared branch
  recover,           // the pg_prepared_xacts scan
  exec,              // the application's SQL
};

// Who answered and what was asked, for the failure's message and rm_name.
struct failure_context {
  std::string_view rm_name;
  std::string_view what;      // "PREPARE TRANSACTION of 2019652657:tm.1.1:1", ...
  std::string_view password;  // scrubbed from libpq's own messages; empty when none was set
};

// True when a result's status is an error (PGRES_FATAL_ERROR, PGRES_BAD_RESPONSE, ...).
bool is_error_result(const PGresult* answer) noexcept;

// True when `answer` (an error result, or nullptr when libpq gave none) means the session is
// gone: libpq lost the socket, or the server sent a FATAL/PANIC (57P01 admin shutdown, 08xxx).
bool is_connection_lost(const PGresult* answer, const PGconn* conn) noexcept;

// The failure for an error result of `step`. Lost connections are xa_code::rm_failure; the
// rest depends on the step (see the .cpp for the table). Carries SQLSTATE and the server's
// message, detail and hint.
failure statement_failure(const PGresult* answer, const PGconn* conn, pg_step step, const failure_context& context);

// The failure when libpq itself failed (PQsendQuery, PQflush or PQconsumeInput answered an
// error, or PQexec returned no result), with PQerrorMessage: xa_code::rm_failure when the
// session is gone (or conn is nullptr), else xa_code::rm_error.
failure driver_failure(const PGconn* conn, pg_step step, const failure_context& context);

// The failure for a connect that did not reach CONNECTION_OK (xa_code::rm_failure): libpq's
// message, followed by `gave_up` when xatm gave up waiting ("timeout expired").
failure connect_failure(const PGconn* conn, const failure_context& context, std::string_view gave_up = {});

// True when a COMMIT or PREPARE TRANSACTION was answered with the command tag "ROLLBACK": the
// transaction had already failed, and PostgreSQL rolled it back instead (no error is raised).
bool answered_rollback(const PGresult* answer) noexcept;

// The failure for answered_rollback(): xa_code::rollback, the branch is gone.
failure rolled_back_instead(const failure_context& context);

// True when a failure of this adapter says a statement named a table that does not exist
// (SQLSTATE 42P01 undefined_table).
bool is_undefined_table(const failure& cause) noexcept;

// `message`, or a notice instead of it when it contains the text of `password`. Replacing only
// the password by "***" would show where its text stood, and so the password itself: a password
// "p" turned "accepting" into "acce***ting", a password "mysql" a socket path "/run/***d/".
std::string scrub_password(std::string message, std::string_view password);

}  // namespace xatm::postgresql_detail
