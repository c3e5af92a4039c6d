// The PostgreSQL adapter: the XA verbs as plain SQL over libpq (docs/design.md section 4). PostgreSQL
// has no XA START or END: a branch is an ordinary transaction block until PREPARE TRANSACTION
// names it with the pgjdbc-encoded gid. Verbs go out with PQsendQuery on a non-blocking
// connection so that drive_calls() can overlap several RMs; recover() and exec() block, until the
// connection's call deadline if it has one (exec_blocking).
#include "postgresql/postgresql.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/sql_adapter.h"
#include "postgresql/postgresql_backend.h"
#include "postgresql/postgresql_errors.h"
#include "postgresql/postgresql_xid.h"

namespace xatm::postgresql {
namespace {

using postgresql_detail::failure_context;
using postgresql_detail::pg_step;

using connection_ptr = detail::c_handle<PGconn, &PQfinish>;
using result_ptr = detail::c_handle<PGresult, &PQclear>;

// The read-only probe sent at end: NULL while the transaction has no xid, i.e. wrote nothing.
constexpr const char* read_only_probe = "SELECT pg_current_xact_id_if_assigned() IS NULL";

constexpr const char* recover_query =
    "SELECT gid, extract(epoch from now() - prepared)::bigint FROM pg_prepared_xacts "
    "WHERE database = current_database()";

// The pgjdbc gid is digits (and a sign), base64 and underscores: nothing a quote could break.
// The xid type guarantees it; this check keeps the quoting safe even if that ever changed.
bool is_safe_gid(std::string_view gid) {
  if (gid.empty() || gid.size() >= 200) return false;  // PostgreSQL's GIDSIZE is 200 with the NUL
  for (char c : gid) {
    bool safe = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '+' || c == '/' ||
                c == '=' || c == '_' || c == '-';
    if (!safe) return false;
  }
  return true;
}

// An answer as text, every value binary-safe (PQgetlength), SQL NULL as nullopt, with the
// statement's row count.
query_result read_rows(const PGresult* rows) {
  query_result table;
  for (int column = 0; column < PQnfields(rows); ++column) table.columns.emplace_back(PQfname(rows, column));
  table.rows.reserve(static_cast<std::size_t>(PQntuples(rows)));
  for (int row = 0; row < PQntuples(rows); ++row) {
    auto& values = table.rows.emplace_back();
    values.reserve(table.columns.size());
    for (int column = 0; column < PQnfields(rows); ++column) {
      if (PQgetisnull(rows, row, column) != 0) {
        values.emplace_back(std::nullopt);
      } else {
        values.emplace_back(
            std::string(PQgetvalue(rows, row, column), static_cast<std::size_t>(PQgetlength(rows, row, column))));
      }
    }
  }
  // PQcmdTuples: "" for statements without a row count; it takes a non-const result but only reads.
  std::string_view count = PQcmdTuples(const_cast<PGresult*>(rows));
  std::uint64_t affected = 0;
  if (std::from_chars(count.data(), count.data() + count.size(), affected).ec == std::errc{}) {
    table.affected_rows = affected;
  }
  return table;
}

// Waits until `socket` is ready for `events`; false when `deadline` passed first. Without a
// deadline it waits as long as it takes. A poll() error answers true: libpq will report it.
bool wait_for_socket(int socket, short events, std::optional<std::chrono::steady_clock::time_point> deadline) {
  pollfd ready{socket, events, 0};
  while (true) {
    int timeout_ms = -1;
    if (deadline) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      timeout_ms = static_cast<int>(std::min<std::chrono::milliseconds::rep>(left.count(), 1 << 30));
    }
    int answered = ::poll(&ready, 1, timeout_ms);
    if (answered > 0 || (answered < 0 && errno != EINTR)) return true;
  }
}

// The connect_timeout libpq applies to `conn`: the connection string's, else PGCONNECT_TIMEOUT's
// or a service file's (PQconninfo has the value libpq settled on); "" when none.
std::string connect_timeout_setting(PGconn* conn) {
  std::string setting;
  PQconninfoOption* options = PQconninfo(conn);
  for (const PQconninfoOption* option = options; option != nullptr && option->keyword != nullptr; ++option) {
    if (std::string_view(option->keyword) == "connect_timeout" && option->val != nullptr) setting = option->val;
  }
  PQconninfoFree(options);
  return setting;
}

// A connect_timeout as libpq reads it (strtol, spaces around allowed); nullopt when it is no
// integer. "" is 0: no timeout.
std::optional<long> whole_seconds(std::string_view text) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  if (text.empty()) return 0;
  if (text.front() == '+') text.remove_prefix(1);
  long seconds = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (error != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return seconds;
}

// PQconnectdbParams's waiting, by hand, for a connection begun with PQconnectStartParams:
// PQconnectPoll until the connection is made or has failed, poll() on its socket in between.
// libpq applies connect_timeout only in its own blocking connect, so this applies it the same way:
// each server address tried gets connect_timeout seconds (at least 2; none when it is unset or
// not positive). Unlike libpq, a server silent that long ends the connect rather than moving on
// to the next host. Answers "" when PQstatus says how the connect ended, else why it was given
// up, in libpq's words, to follow PQerrorMessage (the connection is then unusable).
std::string finish_connecting(PGconn* conn) {
  using clock = std::chrono::steady_clock;
  const std::string setting = connect_timeout_setting(conn);
  const std::optional<long> seconds = whole_seconds(setting);
  if (!seconds) return "invalid integer value \"" + setting + "\" for connection option \"connect_timeout\"";
  const std::chrono::seconds per_address(*seconds > 0 ? std::max(*seconds, 2L) : 0L);
  // The address being tried, which the deadline belongs to (PQhostaddr is "" on a unix socket).
  auto address_tried = [conn] {
    auto text = [](const char* value) { return std::string(value == nullptr ? "" : value); };
    return text(PQhost(conn)) + '\n' + text(PQport(conn)) + '\n' + text(PQhostaddr(conn));
  };
  std::string address;
  std::optional<clock::time_point> deadline;
  PostgresPollingStatusType polled = PGRES_POLLING_WRITING;  // where libpq's own loop starts too
  while (polled == PGRES_POLLING_READING || polled == PGRES_POLLING_WRITING) {
    if (per_address.count() > 0 && address_tried() != address) {
      address = address_tried();
      deadline = clock::now() + per_address;
    }
    if (PQsocket(conn) < 0) return "invalid socket";
    if (!wait_for_socket(PQsocket(conn), polled == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline)) {
      return "timeout expired";
    }
    polled = PQconnectPoll(conn);
  }
  return {};
}

class postgresql_rm final : public detail::sql_adapter {
 public:
  postgresql_rm(std::string rm_name, connection_settings settings)
      : sql_adapter(std::move(rm_name), std::move(settings), detail::log_channel::pg) {}

  ~postgresql_rm() override { log_branch_left(conn_ != nullptr); }

  std::string_view dialect() const noexcept override { return "postgresql"; }

  PGconn* connection() noexcept { return conn_.get(); }

 private:
  // The verb in flight: one statement, sent with PQsendQuery, answered by one or more PGresults.
  struct pending_call {
    xa_verb verb;
    pg_step step;
    xid branch;                           // the verb's XID
    std::string statement;                // what was sent; empty when the verb sends nothing
    bool own_unprepared = false;          // ROLLBACK of this connection's own, never prepared, branch
    bool flushing = false;                // PQflush still has bytes to send
    result_ptr answer;                    // the first error result, else the last result
    std::optional<result<vote>> outcome;  // set once the verb has finished

    // "prepare of <xid> (PREPARE TRANSACTION '<gid>')", for messages and enabled log records:
    // built only when one is written, never on the way of a verb that succeeds.
    std::string what() const {
      std::string text = std::string(xa_verb_name(verb)) + " of " + branch.to_string();
      if (!statement.empty()) text += " (" + statement + ")";
      return text;
    }
  };

  // The verbs, non-blocking (resource_manager's adapter half): one statement each, or none.
  result<void> send(xa_verb verb, const xid& branch) override;
  result<std::string> checked_gid(const xid& branch) const;
  result<void> send_statement(pending_call next_call);
  io_wait waiting_for() const noexcept override;
  bool advance() override;
  void interpret_answer();
  void finish(result<vote> answer);
  void finish_lost(const PGresult* answer);
  result<vote> outcome() override { return take_outcome(call_); }
  void cancel() noexcept override;

  // Blocking calls (recover, exec), bounded by the call deadline.
  result<result_ptr> exec_blocking(const std::string& sql, pg_step step, std::string_view what);
  result<recovered_branches> do_recover() override;
  result<query_result> do_exec(std::string_view sql) override;

  // The connection.
  const detail::backend& sql_backend() const noexcept override { return detail::postgresql_backend(); }
  void* do_native_handle() noexcept override { return conn_.get(); }
  bool is_connected() const noexcept override { return conn_ && PQstatus(conn_.get()) == CONNECTION_OK; }
  result<void> open_connection(const std::string& description) override;
  void close_connection(const char* why) noexcept override;
  failure_context context(std::string_view what) const { return {name(), what, password()}; }
  static void log_notice(void* rm, const PGresult* notice);

  // The branch wrote through exec(): an INSERT, UPDATE, DELETE or MERGE reported rows. Then end
  // needs no read-only probe, and wrote_so_far() can say so. (Writes through the native handle
  // are not seen: the probe still asks for those.)
  std::optional<bool> wrote_so_far() const noexcept override {
    return wrote_through_exec_ ? std::optional<bool>(true) : std::nullopt;
  }
  bool wrote_through_exec_ = false;

  connection_ptr conn_;
  std::optional<pending_call> call_;
};

result<std::string> postgresql_rm::checked_gid(const xid& branch) const {
  std::string gid = postgresql::gid_of(branch);
  if (!is_safe_gid(gid)) {
    // Not XAER_INVAL: at prepare that means "the RM is configured so it cannot prepare" to the
    // engine (configuration_error). Unreachable with xatm's own XIDs, whose gids are base64.
    return fail(xa_code::rm_error, "the gid of " + branch.to_string() + " is not safe to quote in SQL");
  }
  return gid;
}

result<void> postgresql_rm::send(xa_verb verb, const xid& branch) {
  if (!conn_) return postgresql_detail::driver_failure(nullptr, pg_step::start, context(xa_verb_name(verb)));
  PGconn* conn = conn_.get();
  // Only failures below need the text; a verb that goes out builds none.
  auto what = [&] { return std::string(xa_verb_name(verb)) + " of " + branch.to_string(); };
  PGTransactionStatusType transaction = PQtransactionStatus(conn);
  pending_call next_call{.verb = verb,
                         .step = pg_step::start,
                         .branch = branch,
                         .statement = {},
                         .answer = nullptr,
                         .outcome = std::nullopt};
  std::string& statement = next_call.statement;

  switch (verb) {
    case xa_verb::start:
      if (transaction != PQTRANS_IDLE) {
        return fail(xa_code::outside, what() +
                                          ": the connection is already inside a transaction that xatm did "
                                          "not start (BEGIN through exec() or the native handle?)");
      }
      set_read_only(false);
      wrote_through_exec_ = false;
      next_call.step = pg_step::start;
      statement = "BEGIN";
      break;

    case xa_verb::end:
      if (transaction == PQTRANS_INERROR) {
        // A statement of the branch failed: PostgreSQL will only roll it back. Nothing to ask;
        // prepare or commit will answer ROLLBACK, which reports the branch as rolled back.
        XATM_LOG(pg, debug) << "[" << name() << "] " << what() << ": the transaction has failed, prepare will "
                            << "answer rollback";
        set_read_only(false);
        call_ = std::move(next_call);
        finish(vote::commit);
        return {};
      }
      if (transaction == PQTRANS_IDLE) {
        return fail(xa_code::rm_error, what() +
                                           ": the branch's transaction is no longer open on the connection "
                                           "(COMMIT or ROLLBACK through exec() or the native handle?); "
                                           "xatm cannot know its outcome");
      }
      if (transaction != PQTRANS_INTRANS) {
        return fail(xa_code::rm_error, what() + ": a command sent through the native handle is still running");
      }
      if (wrote_through_exec_) {
        // It wrote: nothing to ask (the probe would answer "not read-only").
        set_read_only(false);
        call_ = std::move(next_call);
        finish(vote::commit);
        return {};
      }
      next_call.step = pg_step::end;
      statement = read_only_probe;
      break;

    case xa_verb::end_failed:
      // PostgreSQL has no XA END: the base class marks the branch rollback-only, and the only
      // verb left for it is rollback, which sends ROLLBACK.
      XATM_LOG(pg, debug) << "[" << name() << "] " << what() << ": nothing to send";
      next_call.verb = verb;
      call_ = std::move(next_call);
      finish(vote::commit);
      return {};

    case xa_verb::prepare:
      next_call.step = pg_step::prepare;
      if (read_only()) {
        // Nothing was written: commit it now and keep it out of phase two (XA_RDONLY).
        statement = "COMMIT";
      } else {
        auto gid = checked_gid(branch);
        if (!gid) return std::move(gid).error();
        statement = "PREPARE TRANSACTION '" + gid.value() + "'";
      }
      break;

    case xa_verb::commit_one_phase:
      next_call.step = pg_step::commit_one_phase;
      statement = "COMMIT";
      break;

    case xa_verb::commit:
    case xa_verb::rollback: {
      bool own_unprepared = verb == xa_verb::rollback && current_branch() && *current_branch() == branch &&
                            state() != branch_state::prepared;
      if (own_unprepared) {
        next_call.step = pg_step::rollback;
        next_call.own_unprepared = true;
        statement = "ROLLBACK";
        break;
      }
      // COMMIT/ROLLBACK PREPARED refuse to run inside a transaction block (SQLSTATE 25001).
      if (transaction != PQTRANS_IDLE) {
        return fail(xa_code::outside, what() +
                                          ": the connection is inside a transaction that xatm did not "
                                          "start; COMMIT/ROLLBACK PREPARED cannot run there");
      }
      auto gid = checked_gid(branch);
      if (!gid) return std::move(gid).error();
      next_call.step = pg_step::resolve;
      statement =
          std::string(verb == xa_verb::commit ? "COMMIT PREPARED '" : "ROLLBACK PREPARED '") + gid.value() + "'";
      break;
    }
  }
  next_call.verb = verb;
  return send_statement(std::move(next_call));
}

result<void> postgresql_rm::send_statement(pending_call next_call) {
  PGconn* conn = conn_.get();
  XATM_LOG(pg, debug) << "[" << name() << "] send " << next_call.what();
  call_ = std::move(next_call);
  if (PQsendQuery(conn, call_->statement.c_str()) == 0) {
    finish_lost(nullptr);  // decides between "lost" and a local libpq error
    return {};
  }
  // Non-blocking: what did not fit in the socket buffer goes out as advance() is called.
  int flushed = PQflush(conn);
  if (flushed < 0) {
    finish_lost(nullptr);
    return {};
  }
  call_->flushing = flushed == 1;
  return {};
}

io_wait postgresql_rm::waiting_for() const noexcept {
  if (!call_ || call_->outcome || !conn_) return {};  // finished: nothing to wait for
  // While a send is pending, libpq asks to wait for either direction: the server may need to
  // have its answer read before it accepts more input.
  short events = call_->flushing ? static_cast<short>(POLLIN | POLLOUT) : static_cast<short>(POLLIN);
  return {PQsocket(conn_.get()), events};
}

bool postgresql_rm::advance() {
  if (!call_ || call_->outcome) return true;
  if (!conn_) {
    finish_lost(nullptr);
    return true;
  }
  PGconn* conn = conn_.get();
  if (PQconsumeInput(conn) == 0) {
    finish_lost(nullptr);
    return true;
  }
  if (call_->flushing) {
    int flushed = PQflush(conn);
    if (flushed < 0) {
      finish_lost(nullptr);
      return true;
    }
    if (flushed == 1) return false;
    call_->flushing = false;
  }
  while (PQisBusy(conn) == 0) {
    result_ptr next(PQgetResult(conn));
    if (!next) {  // the statement is complete
      interpret_answer();
      return true;
    }
    if (!call_->answer || !postgresql_detail::is_error_result(call_->answer.get())) {
      call_->answer = std::move(next);  // keep the first error, or else the last answer
    }
  }
  return false;
}

void postgresql_rm::interpret_answer() {
  const PGresult* answer = call_->answer.get();
  if (answer == nullptr) {
    finish(fail(xa_code::rm_error, call_->what() + ": the server sent no answer"));
    return;
  }
  if (postgresql_detail::is_error_result(answer)) {
    if (postgresql_detail::is_connection_lost(answer, conn_.get())) {
      finish_lost(answer);
      return;
    }
    finish(postgresql_detail::statement_failure(answer, conn_.get(), call_->step, context(call_->what())));
    return;
  }
  switch (call_->verb) {
    case xa_verb::end: {
      if (PQntuples(answer) != 1 || PQnfields(answer) != 1) {
        finish(fail(xa_code::rm_error, call_->what() + ": unexpected answer to the read-only probe"));
        return;
      }
      set_read_only(std::string_view(PQgetvalue(answer, 0, 0)) == "t");
      XATM_LOG(pg, debug) << "[" << name() << "] " << call_->what() << ": "
                          << (read_only() ? "read-only" : "wrote data");
      finish(vote::commit);
      return;
    }
    case xa_verb::prepare:
    case xa_verb::commit_one_phase:
      if (postgresql_detail::answered_rollback(answer)) {
        finish(postgresql_detail::rolled_back_instead(context(call_->what())));
        return;
      }
      finish(call_->verb == xa_verb::prepare && read_only() ? vote::read_only : vote::commit);
      return;
    case xa_verb::start:
    case xa_verb::end_failed:
    case xa_verb::commit:
    case xa_verb::rollback: break;  // the answer carries nothing beyond "done"
  }
  finish(vote::commit);
}

void postgresql_rm::finish(result<vote> answer) {
  log_outcome([this] { return call_->what(); }, answer);
  call_->answer.reset();
  call_->outcome = std::move(answer);
}

// libpq failed (answer == nullptr) or the server answered with a session-ending error.
void postgresql_rm::finish_lost(const PGresult* answer) {
  auto cause = answer != nullptr
                   ? postgresql_detail::statement_failure(answer, conn_.get(), call_->step, context(call_->what()))
                   : postgresql_detail::driver_failure(conn_.get(), call_->step, context(call_->what()));
  if (cause.code != xa_code::rm_failure) {  // a local libpq error, the session is still fine
    finish(std::move(cause));
    return;
  }
  close_connection("connection lost");
  finish(answer_for_lost_session(
      call_->own_unprepared, [this] { return call_->what(); }, std::move(cause)));
}

void postgresql_rm::cancel() noexcept {
  call_.reset();
  close_connection("cancelled");
}

void postgresql_rm::close_connection(const char* why) noexcept {
  if (!conn_) return;
  log_closing(why);
  conn_.reset();
  set_read_only(false);
}

result<void> postgresql_rm::open_connection(const std::string& description) {
  // Keyword and value arrays straight from the parsed settings: no conninfo string is rebuilt,
  // so no value is ever re-quoted. expand_dbname = 0: a dbname is a name, never a conninfo.
  std::vector<const char*> keywords;
  std::vector<const char*> values;
  for (const auto& [key, value] : settings().values()) {
    keywords.push_back(key.c_str());
    values.push_back(value.c_str());
  }
  if (!settings().get("application_name") && !settings().get("fallback_application_name")) {
    keywords.push_back("fallback_application_name");  // pg_stat_activity shows who holds the branch
    values.push_back("xatm");
  }
  keywords.push_back(nullptr);
  values.push_back(nullptr);

  XATM_LOG(pg, debug) << "[" << name() << "] " << description;
  connection_ptr conn(PQconnectStartParams(keywords.data(), values.data(), 0));
  if (!conn) return postgresql_detail::connect_failure(nullptr, context(description));
  // Before the server says anything: it may send notices while the session starts up (a setting
  // of the role or database it cannot apply, a collation version mismatch), which libpq's default
  // receiver would print on stderr.
  PQsetNoticeReceiver(conn.get(), &postgresql_rm::log_notice, this);
  std::string gave_up = PQstatus(conn.get()) == CONNECTION_BAD ? std::string() : finish_connecting(conn.get());
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return postgresql_detail::connect_failure(conn.get(), context(description), gave_up);
  }
  if (PQsetnonblocking(conn.get(), 1) != 0) {
    return postgresql_detail::driver_failure(conn.get(), pg_step::connect,
                                             context(description + " (non-blocking mode)"));
  }
  conn_ = std::move(conn);
  set_read_only(false);
  XATM_LOG(pg, debug) << "[" << name() << "] connected, server version " << PQserverVersion(conn_.get());
  return {};
}

// Server notices (RAISE NOTICE, "WARNING: there is no transaction in progress", ...) go to stderr
// by default; a library must not write there. They go to xatm.pg instead, at the level of their
// severity, withheld whole when they contain the password's text (as error messages are).
void postgresql_rm::log_notice(void* rm, const PGresult* notice) {
  auto field = [notice](int code) -> std::string_view {
    const char* text = PQresultErrorField(notice, code);
    return text == nullptr ? std::string_view() : std::string_view(text);
  };
  const std::string_view severity = field(PG_DIAG_SEVERITY_NONLOCALIZED);
  // DEBUG1..5 all arrive as "DEBUG"; anything unknown is shown rather than hidden.
  log_level level = log_level::warning;
  if (severity == "DEBUG") level = log_level::debug;
  if (severity == "LOG" || severity == "INFO" || severity == "NOTICE") level = log_level::info;
  if (!detail::log_wanted(level)) return;
  const auto& self = *static_cast<const postgresql_rm*>(rm);
  std::string text = std::string(severity.empty() ? std::string_view("NOTICE") : severity) + ": " +
                     std::string(field(PG_DIAG_MESSAGE_PRIMARY));
  if (auto detail_text = field(PG_DIAG_MESSAGE_DETAIL); !detail_text.empty()) text += " DETAIL: " + std::string(detail_text);
  if (auto hint = field(PG_DIAG_MESSAGE_HINT); !hint.empty()) text += " HINT: " + std::string(hint);
  text = postgresql_detail::scrub_password(std::move(text), self.password());
  switch (level) {
    case log_level::debug: XATM_LOG(pg, debug) << "[" << self.name() << "] server says " << text; break;
    case log_level::info: XATM_LOG(pg, info) << "[" << self.name() << "] server says " << text; break;
    default: XATM_LOG(pg, warning) << "[" << self.name() << "] server says " << text; break;
  }
}

// PQexec would wait as long as the server stays silent (libpq has no read timeout), so this is
// PQexec by hand: PQsendQuery, then poll() until the connection's call deadline (if it has one;
// resource_manager::set_call_timeout). The answer is what PQexec answers: the first error
// result, else the last result. No answer in time closes the connection.
result<result_ptr> postgresql_rm::exec_blocking(const std::string& sql, pg_step step, std::string_view what) {
  if (!conn_) return postgresql_detail::driver_failure(nullptr, step, context(what));
  PGconn* conn = conn_.get();
  auto deadline = call_deadline();
  // libpq failed with the query under way (the socket broke): the session is unusable.
  auto lost = [&]() -> failure {
    auto cause = postgresql_detail::driver_failure(conn, step, context(what));
    close_connection("connection lost");
    return cause;
  };
  auto timed_out = [&]() -> failure {
    close_connection("no answer within the call timeout");
    return fail(xa_code::rm_failure, std::string(what) + ": no answer within the call timeout (" +
                                         std::to_string(call_timeout().value_or(std::chrono::milliseconds(0)).count()) +
                                         " ms); the connection was closed");
  };
  // Waits until libpq can make progress; false when the deadline passed first.
  auto wait = [&](short events) { return wait_for_socket(PQsocket(conn), events, deadline); };

  if (PQsendQuery(conn, sql.c_str()) == 0) {  // nothing sent: only a lost session ends the connection
    auto cause = postgresql_detail::driver_failure(conn, step, context(what));
    if (cause.code == xa_code::rm_failure) close_connection("connection lost");
    return cause;
  }
  while (true) {  // non-blocking: push the query out, reading meanwhile so the server never stalls
    int flushed = PQflush(conn);
    if (flushed < 0) return lost();
    if (flushed == 0) break;
    if (!wait(POLLIN | POLLOUT)) return timed_out();
    if (PQconsumeInput(conn) == 0) return lost();
  }
  result_ptr answer;
  bool copy_refused = false;
  while (true) {
    while (PQisBusy(conn) != 0) {
      if (!wait(POLLIN)) return timed_out();
      if (PQconsumeInput(conn) == 0) return lost();
    }
    result_ptr next(PQgetResult(conn));
    if (!next) break;  // the statement(s) finished
    ExecStatusType status = PQresultStatus(next.get());
    if (status == PGRES_COPY_IN) {
      // Leave COPY mode so the connection stays usable; COPY belongs on the native handle. The
      // server answers the refusal with an error result, read on the next turn.
      copy_refused = true;
      int queued = 0;
      while ((queued = PQputCopyEnd(conn, "COPY is not supported through xatm's exec()")) == 0) {
        if (!wait(POLLOUT)) return timed_out();
      }
      if (queued < 0) return lost();
      while (PQflush(conn) == 1) {
        if (!wait(POLLIN | POLLOUT)) return timed_out();
        if (PQconsumeInput(conn) == 0) return lost();
      }
      continue;
    }
    if (status == PGRES_COPY_OUT) {
      copy_refused = true;
      char* row = nullptr;
      int got = 0;
      while ((got = PQgetCopyData(conn, &row, 1)) != -1) {
        if (got > 0) {
          PQfreemem(row);
          continue;
        }
        if (got == -2) return lost();
        if (!wait(POLLIN)) return timed_out();
        if (PQconsumeInput(conn) == 0) return lost();
      }
      continue;
    }
    if (!answer || !postgresql_detail::is_error_result(answer.get())) answer = std::move(next);
  }
  if (copy_refused) {
    if (PQstatus(conn) == CONNECTION_BAD) close_connection("connection lost");
    return fail(xa_code::rm_error, std::string(what) + ": COPY is not supported by exec(); use the native handle");
  }
  if (!answer) return lost();
  if (postgresql_detail::is_error_result(answer.get())) {
    auto cause = postgresql_detail::statement_failure(answer.get(), conn, step, context(what));
    if (cause.code == xa_code::rm_failure) close_connection("connection lost");
    return cause;
  }
  return answer;
}

result<recovered_branches> postgresql_rm::do_recover() {
  XATM_LOG(pg, debug) << "[" << name() << "] recover: scanning pg_prepared_xacts";
  auto answer = exec_blocking(recover_query, pg_step::recover, "recover (pg_prepared_xacts)");
  if (!answer) return std::move(answer).error();
  const PGresult* rows = answer.value().get();
  recovered_branches found;
  for (int row = 0; row < PQntuples(rows); ++row) {
    std::string gid = PQgetvalue(rows, row, 0);
    std::optional<std::int64_t> age;
    if (PQgetisnull(rows, row, 1) == 0) {
      std::string_view text = PQgetvalue(rows, row, 1);
      std::int64_t seconds = 0;
      if (std::from_chars(text.data(), text.data() + text.size(), seconds).ec == std::errc{}) age = seconds;
    }
    auto parsed = postgresql::parse_gid(gid);
    if (parsed && parsed.value().format_id() == xatm_format_id) {
      XATM_LOG(pg, debug) << "[" << name() << "] recover: ours " << parsed.value().to_string() << " gid " << gid;
      found.ours.push_back(std::move(parsed).value());
    } else {
      XATM_LOG(pg, debug) << "[" << name() << "] recover: foreign gid " << gid;
      std::optional<xid> id;
      if (parsed) id = std::move(parsed).value();
      found.foreign.push_back(prepared_branch{std::move(gid), std::move(id), age});
    }
  }
  return found;
}

result<query_result> postgresql_rm::do_exec(std::string_view sql) {
  // The SQL itself is not logged: it may carry the application's data.
  XATM_LOG(pg, debug) << "[" << name() << "] exec (" << sql.size() << " bytes)";
  // A failing statement inside a branch aborts its transaction; PQtransactionStatus() remembers
  // that (also for SQL run on the native handle), and end() reads it from there.
  auto answer = exec_blocking(std::string(sql), pg_step::exec, "exec");
  if (!answer) return std::move(answer).error();
  query_result rows = read_rows(answer.value().get());
  if (rows.affected_rows > 0) {
    const std::string_view command = PQcmdStatus(answer.value().get());
    for (std::string_view writing : {"INSERT", "UPDATE", "DELETE", "MERGE"}) {
      if (command.starts_with(writing)) wrote_through_exec_ = true;
    }
  }
  return rows;
}

}  // namespace

result<std::unique_ptr<resource_manager>> connect(std::string rm_name, const connection_settings& settings) {
  return detail::open_adapter<postgresql_rm>(std::move(rm_name), settings);
}

pg_conn* handle(resource_manager& rm) noexcept { return detail::native_connection<postgresql_rm>(rm); }

}  // namespace xatm::postgresql
