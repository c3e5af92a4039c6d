// The MariaDB/MySQL adapter: the XA verbs as XA statements over Connector/C (docs/design.md section 4).
// Verbs go out with the non-blocking API (mysql_real_query_start/_cont) so that drive_calls() can
// overlap several RMs; recover() and exec() block, until the connection's call deadline if it has
// one (run_query, through the same non-blocking API).
//
// Read-only detection (docs/design.md section 4). The session runs with
// session_track_transaction_info=STATE, so the server reports the transaction's state
// (`T___W___` once the branch took a write lock on a transactional table) in the OK packet of
// the statement that changed it. Connector/C's status callback hands every report to this
// adapter, whoever ran the statement: exec() or the application on the native handle. Two holes
// remain, and the probe closes them: a state change made by a statement that answers with a
// result set (INSERT ... RETURNING, a SELECT calling a writing function) travels in an EOF
// packet that carries no tracker data, and the report is lost. So unless a W was seen, end sends
// `DO UUID()` before XA END: it writes nothing, but it is unsafe for statement-based replication,
// which adds the tracker's `s` flag, and any change makes the server send the whole state, W
// included. When no report comes back (`s` was already set), the branch counts as writing:
// slower, never wrong. A read-only branch then ends with XA COMMIT ... ONE PHASE instead of a
// prepare. information_schema.innodb_trx is no alternative: InnoDB refreshes that table from a
// cache at most every 100 ms, and not at all while it keeps being read (trx0i_s.cc), so it can
// show a branch that wrote as having modified nothing.
#include "mysql/mysql.h"

#include <mysql.h>
#include <poll.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/sql_adapter.h"
#include "mysql/connection_options.h"
#include "mysql/innodb_status.h"
#include "mysql/mysql_backend.h"
#include "mysql/mysql_errors.h"
#include "mysql/mysql_xid.h"

namespace xatm::mysql {
namespace {

using mysql_detail::failure_context;
using mysql_detail::mysql_step;
using mysql_detail::native_error;
using clock = std::chrono::steady_clock;

using connection_ptr = detail::c_handle<MYSQL, &mysql_close>;
using result_ptr = detail::c_handle<MYSQL_RES, &mysql_free_result>;

constexpr const char* read_only_probe = "DO UUID()";
// autocommit=1 in the same statement (no extra round trip): a server whose global autocommit is
// 0 would otherwise open a transaction with the first statement of a connection that is not in a
// branch (XA RECOVER, a SELECT), and every XA COMMIT/ROLLBACK of a prepared XID on it would then
// fail with XAER_OUTSIDE (1400); three-phase marker rows would never be committed.
constexpr const char* track_state_setup = "SET SESSION session_track_transaction_info='STATE', autocommit=1";

// The transaction state the tracker reports outside any transaction.
constexpr std::array<char, 8> no_transaction = {'_', '_', '_', '_', '_', '_', '_', '_'};

native_error read_error(MYSQL* conn) {
  return native_error{mysql_errno(conn), mysql_sqlstate(conn), mysql_error(conn)};
}

// A result set as text: every value binary-safe (mysql_fetch_lengths), SQL NULL as nullopt.
query_result read_rows(MYSQL_RES* rows) {
  query_result table;
  unsigned int columns = mysql_num_fields(rows);
  const MYSQL_FIELD* fields = mysql_fetch_fields(rows);
  for (unsigned int column = 0; column < columns; ++column) table.columns.emplace_back(fields[column].name);
  table.rows.reserve(static_cast<std::size_t>(mysql_num_rows(rows)));
  while (MYSQL_ROW row = mysql_fetch_row(rows)) {
    const unsigned long* lengths = mysql_fetch_lengths(rows);
    auto& values = table.rows.emplace_back();
    values.reserve(columns);
    for (unsigned int column = 0; column < columns; ++column) {
      if (row[column] == nullptr) {
        values.emplace_back(std::nullopt);
      } else {
        values.emplace_back(std::string(row[column], lengths[column]));
      }
    }
  }
  table.affected_rows = table.rows.size();
  return table;
}

template <class T>
std::optional<T> parse_number(std::string_view text) {
  T value{};
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// MYSQL_WAIT_* -> poll() events. A wait for the timeout alone still needs a socket to watch:
// POLLIN, and the caller's deadline rules.
short poll_events(int wait_status) {
  short events = 0;
  if ((wait_status & MYSQL_WAIT_READ) != 0) events |= POLLIN;
  if ((wait_status & MYSQL_WAIT_WRITE) != 0) events |= POLLOUT;
  if ((wait_status & MYSQL_WAIT_EXCEPT) != 0) events |= POLLPRI;
  if (events == 0) events = POLLIN;
  return events;
}

// poll() revents -> the MYSQL_WAIT_* I/O flags to resume a driver call with. A hung-up or failed
// socket wakes every direction the driver waits for: it finds out what happened.
int io_flags(short revents, int wait_status) {
  int flags = 0;
  if ((revents & POLLIN) != 0) flags |= MYSQL_WAIT_READ;
  if ((revents & POLLOUT) != 0) flags |= MYSQL_WAIT_WRITE;
  if ((revents & POLLPRI) != 0) flags |= MYSQL_WAIT_EXCEPT;
  if ((revents & (POLLERR | POLLHUP | POLLNVAL)) != 0) {
    flags |= wait_status & (MYSQL_WAIT_READ | MYSQL_WAIT_WRITE | MYSQL_WAIT_EXCEPT);
  }
  return flags;
}

// Waits for what a non-blocking Connector/C operation asked for (`wait_status`, MYSQL_WAIT_*) and
// answers the flags to resume it with; 0 when `deadline` passed first.
int wait_for_driver(MYSQL* conn, int wait_status, std::optional<clock::time_point> deadline) {
  std::optional<clock::time_point> driver_timeout;
  if ((wait_status & MYSQL_WAIT_TIMEOUT) != 0) {
    driver_timeout = clock::now() + std::chrono::milliseconds(mysql_get_timeout_value_ms(conn));
  }
  int io_wanted = wait_status & (MYSQL_WAIT_READ | MYSQL_WAIT_WRITE | MYSQL_WAIT_EXCEPT);
  pollfd ready{mysql_get_socket(conn), poll_events(wait_status), 0};
  while (true) {
    auto now = clock::now();
    if (driver_timeout && now >= *driver_timeout) return MYSQL_WAIT_TIMEOUT;
    if (deadline && now >= *deadline) return 0;
    std::optional<clock::time_point> until = deadline;
    if (driver_timeout && (!until || *driver_timeout < *until)) until = driver_timeout;
    int timeout_ms = -1;
    if (until) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(*until - now).count();
      timeout_ms = static_cast<int>(std::clamp<std::chrono::milliseconds::rep>(left, 0, 1 << 30));
    }
    int answered = ::poll(&ready, 1, timeout_ms);
    if (answered < 0 && errno != EINTR) return io_wanted;  // let the driver meet the error
    if (answered <= 0) continue;
    if (int flags = io_flags(ready.revents, wait_status) & wait_status; flags != 0) return flags;
  }
}

// Closes a MariaDB 10.11 race (docs/design.md section 6). When a session that holds a prepared
// branch ends, the server first hands the branch's XID over to other sessions (THD::cleanup ->
// trans_xa_detach, sql/xa.cc), then drops the session from the processlist (unlink_thd,
// sql/mysqld.cc), and only then lets InnoDB detach the transaction (THD::free_connection ->
// ha_close_connection -> innobase_close_connection -> trx_disconnect_prepared). An XA COMMIT or
// ROLLBACK that lands before that last step finds no detached transaction in InnoDB
// (trx_get_trx_by_xid), yet answers OK, because ha_commit_or_rollback_by_xid (sql/handler.cc)
// ignores the engine's XAER_NOTA and forgets the XID: the transaction stays prepared, unlisted and
// holding its locks, until a restart brings it back with its decision gone.
//
// So the process remembers, for each branch it left prepared behind a connection it closed or
// lost, which server session held it. A resolving commit or rollback of that branch answers
// XA_RETRY while the session is in the processlist, waits until it has been gone for
// `detach_settle`, then reads the transaction list of SHOW ENGINE INNODB STATUS and answers
// XA_RETRY while InnoDB lists a transaction held by that session (innodb_status.h): once none
// is, trx_disconnect_prepared has run, and the XID was handed over before it. Without that listing (no PROCESS privilege, or the
// list cut at 1 MiB) it waits `processlist_grace` after the session left the processlist instead.
//
// The listing is never read while the session is still ending: MariaDB 10.11's monitor prints,
// for each transaction, its session's context (thd_get_error_context_description), and printing
// a session in the middle of its teardown crashed the server (signal 11 in strlen, seen about
// once in a thousand immediate reads in tests/fencing/detach_race_test.cpp). Thread-safe.
class sessions_left_behind {
 public:
  static sessions_left_behind& instance() {
    static sessions_left_behind sessions;
    return sessions;
  }

  void remember(const xid& branch, unsigned long session) {
    std::lock_guard lock(mutex_);
    // The server finishes with a session within moments; an entry this old was resolved
    // elsewhere (another process's recovery) and is only clutter.
    auto stale = clock::now() - std::chrono::minutes(10);
    std::erase_if(sessions_, [&](const auto& entry) { return entry.second.remembered < stale; });
    sessions_.insert_or_assign(branch, left_session{session, clock::now(), std::nullopt});
  }
  std::optional<unsigned long> session_of(const xid& branch) const {
    std::lock_guard lock(mutex_);
    auto found = sessions_.find(branch);
    if (found == sessions_.end()) return std::nullopt;
    return found->second.session;
  }
  // How long ago the session of `branch` was first seen gone from the processlist (zero now).
  clock::duration gone_for(const xid& branch) {
    std::lock_guard lock(mutex_);
    auto found = sessions_.find(branch);
    if (found == sessions_.end()) return clock::duration::zero();
    auto now = clock::now();
    if (!found->second.gone_since) found->second.gone_since = now;
    return now - *found->second.gone_since;
  }
  void forget(const xid& branch) {
    std::lock_guard lock(mutex_);
    sessions_.erase(branch);
  }

 private:
  struct left_session {
    unsigned long session;
    clock::time_point remembered;
    std::optional<clock::time_point> gone_since;  // first seen gone from the processlist
  };
  mutable std::mutex mutex_;
  std::map<xid, left_session> sessions_;
};

// How long after the session left the processlist the InnoDB listing is first read. The server
// thread is then inside THD::free_connection, running a few statements before
// ha_close_connection detaches the branch: microseconds on a live server. The wait keeps the
// monitor away from a session being torn down (see above); the listing itself is the proof.
constexpr auto detach_settle = std::chrono::milliseconds(250);

// The fallback's wait after the session left the processlist, when the listing cannot be read.
// A second is far beyond a scheduling delay of a live server; it is a bound, not a proof.
constexpr auto processlist_grace = std::chrono::seconds(1);

class mysql_rm final : public detail::sql_adapter {
 public:
  mysql_rm(std::string rm_name, connection_settings settings)
      : sql_adapter(std::move(rm_name), std::move(settings), detail::log_channel::mysql) {}

  ~mysql_rm() override {
    log_branch_left(conn_ != nullptr);
    // Closed here, while every member the status callback may touch is still alive.
    remember_session_if_prepared();
    conn_.reset();
  }

  std::string_view dialect() const noexcept override { return dialect_; }

  MYSQL* connection() noexcept { return conn_.get(); }

 private:
  // One statement of a verb. A verb is one to three of them (rollback of an active branch:
  // XA END, XA ROLLBACK; end: probe, XA END; commit answered XAER_NOTA: XA COMMIT, XA RECOVER).
  enum class stage : std::uint8_t {
    xa_start,
    probe,
    xa_end,
    xa_prepare,
    xa_commit_one_phase,
    xa_commit,
    xa_rollback,
    recover_check,
    processlist_check,  // has the session that left the branch prepared left the processlist, and
                        // long enough ago? (sessions_left_behind)
    innodb_check,       // then: does InnoDB still list a transaction of that session?
  };

  // The verb in flight.
  struct pending_call {
    pending_call(xa_verb verb_called, xid branch_called) : verb(verb_called), branch(std::move(branch_called)) {}

    xa_verb verb;
    xid branch;
    bool resolving = false;     // commit/rollback of a prepared XID this connection does not carry
    std::vector<stage> stages;  // what is left to send after the current statement
    stage current = stage::xa_start;
    std::string statement;                        // the current statement's text
    int wait_status = 0;                          // MYSQL_WAIT_* the driver waits for; 0 when it does not
    std::optional<clock::time_point> timeout_at;  // when MYSQL_WAIT_TIMEOUT is due
    bool fetching = false;                        // in mysql_store_result_start/_cont rather than the query
    int query_error = 0;                          // mysql_real_query_start/_cont's answer
    MYSQL_RES* fetched = nullptr;                 // mysql_store_result_start/_cont's answer
    std::uint64_t reports_before_probe = 0;
    bool ended_again = false;             // rollback already re-sent XA END after "still ACTIVE"
    std::optional<failure> not_found;     // the XAER_NOTA that the XA RECOVER check is about
    unsigned long ended_session = 0;      // the server session that held the branch (sessions_left_behind)
    std::optional<result<vote>> outcome;  // set once the verb has finished

    // "commit of <xid>", for messages and enabled log records: built only when one is written.
    // Names the verb the server is running: a read-only branch asked to prepare is finished by
    // XA COMMIT ... ONE PHASE, and a failure there is a failed one-phase commit, not a prepare.
    std::string what() const {
      const bool one_phase = current == stage::xa_commit_one_phase;
      return std::string(one_phase ? "one-phase commit" : xa_verb_name(verb)) + " of " + branch.to_string();
    }
  };

  // The transaction-state reports of the session tracker (read-only detection).
  static void on_status(void* self, enum enum_mariadb_status_info type, ...);
  void note_transaction_state(const char* text, std::size_t length) noexcept;
  bool tracker_says_written() const noexcept { return tracked_state_[4] == 'W'; }
  // A W the tracker reported is certain; its absence only means "none reported yet".
  std::optional<bool> wrote_so_far() const noexcept override { return tracker_says_written(); }

  // The verbs, non-blocking (resource_manager's adapter half): each a plan of stages, one
  // statement per stage.
  result<void> send(xa_verb verb, const xid& branch) override;
  std::string statement_for(stage step, const xid& branch) const;
  mysql_step step_of(stage step) const;
  void run_stage(stage next);
  void run_next_stage_or(result<vote> answer);
  io_wait waiting_for() const noexcept override;
  int ready_flags() const;
  bool advance() override;
  void settle(int status);
  void on_operation_done();
  void on_success();
  void on_error(const native_error& error);
  void on_innodb_listing(const query_result& table);
  void on_processlist(const query_result& table);
  void fall_back_to_processlist(const std::string& why);
  void finish(result<vote> answer);
  void finish_lost(const native_error& error);
  result<vote> outcome() override { return take_outcome(call_); }
  void cancel() noexcept override;

  // Blocking calls (recover, exec, session setup), bounded by the call deadline.
  // Runs SQL and waits for its answer, at most `timeout` (nullopt: as long as it takes).
  result<query_result> run_query(std::string_view sql, mysql_step step, std::string_view what,
                                 std::optional<std::chrono::milliseconds> timeout);
  // MariaDB lists XIDs as SQL literals, MySQL 8 as 0x<hex> (xid_literal() is accepted by both).
  const char* recover_statement() const {
    return dialect_ == "mysql" ? "XA RECOVER CONVERT XID" : "XA RECOVER FORMAT='SQL'";
  }
  recovered_branches parse_recovered(const query_result& table) const;
  result<recovered_branches> do_recover() override;
  result<query_result> do_exec(std::string_view sql) override;

  // The connection.
  // The backend of the server this connection reached (the same statements until it connects).
  const detail::backend& sql_backend() const noexcept override {
    return dialect_ == "mysql" ? detail::mysql_backend() : detail::mariadb_backend();
  }
  void* do_native_handle() noexcept override { return conn_.get(); }
  bool is_connected() const noexcept override { return conn_ != nullptr; }
  result<void> open_connection(const std::string& description) override;
  void close_connection(const char* why) noexcept override;
  void remember_session_if_prepared() noexcept;
  failure_context context(std::string_view what) const { return {name(), what, password()}; }

  std::string dialect_ = "mariadb";
  // Written by the status callback; declared before conn_ so that it outlives the handle.
  std::array<char, 8> tracked_state_ = no_transaction;
  std::uint64_t state_reports_ = 0;
  connection_ptr conn_;
  unsigned long session_id_ = 0;  // the server's id of conn_'s session (CONNECTION_ID())
  std::optional<pending_call> call_;
  // A statement of the branch failed in a way that dooms it (deadlock, lock wait timeout);
  // end reports it as the branch's XA_RB* code.
  std::optional<failure> doomed_by_;
};

// Connector/C calls this for every server status change and every session-tracker item,
// possibly on the small stack of a non-blocking call: it only copies eight bytes.
void mysql_rm::on_status(void* self, enum enum_mariadb_status_info type, ...) {
  if (type != SESSION_TRACK_TYPE) return;
  va_list args;
  va_start(args, type);
  int track_type = va_arg(args, int);
  if (track_type == SESSION_TRACK_TRANSACTION_STATE) {
    const auto* value = va_arg(args, MARIADB_CONST_STRING*);
    if (value != nullptr) static_cast<mysql_rm*>(self)->note_transaction_state(value->str, value->length);
  }
  va_end(args);
}

void mysql_rm::note_transaction_state(const char* text, std::size_t length) noexcept {
  tracked_state_ = no_transaction;
  for (std::size_t i = 0; i < tracked_state_.size() && i < length; ++i) tracked_state_[i] = text[i];
  ++state_reports_;
}

std::string mysql_rm::statement_for(stage step, const xid& branch) const {
  // xid_literal() is X'<hex>',X'<hex>',<formatID>: nothing in it can break out of the SQL.
  switch (step) {
    case stage::xa_start: return "XA START " + mysql::xid_literal(branch);
    case stage::probe: return read_only_probe;
    case stage::xa_end: return "XA END " + mysql::xid_literal(branch);
    case stage::xa_prepare: return "XA PREPARE " + mysql::xid_literal(branch);
    case stage::xa_commit_one_phase: return "XA COMMIT " + mysql::xid_literal(branch) + " ONE PHASE";
    case stage::xa_commit: return "XA COMMIT " + mysql::xid_literal(branch);
    case stage::xa_rollback: return "XA ROLLBACK " + mysql::xid_literal(branch);
    case stage::recover_check: return recover_statement();
    case stage::innodb_check: return "SHOW ENGINE INNODB STATUS";
    case stage::processlist_check:
      return "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = " + std::to_string(call_->ended_session);
  }
  return {};
}

mysql_step mysql_rm::step_of(stage step) const {
  switch (step) {
    case stage::xa_start: return mysql_step::start;
    case stage::probe: return mysql_step::probe;
    case stage::xa_end: return call_->verb == xa_verb::rollback ? mysql_step::rollback : mysql_step::end;
    case stage::xa_prepare: return mysql_step::prepare;
    case stage::xa_commit_one_phase:
      return call_->verb == xa_verb::prepare ? mysql_step::prepare : mysql_step::commit_one_phase;
    case stage::xa_commit: return mysql_step::commit;
    case stage::xa_rollback: return mysql_step::rollback;
    case stage::recover_check:
    case stage::innodb_check:
    case stage::processlist_check: return mysql_step::recover;
  }
  return mysql_step::exec;
}

result<void> mysql_rm::send(xa_verb verb, const xid& branch) {
  if (!conn_) return fail(xa_code::rm_failure, std::string(xa_verb_name(verb)) + ": not connected");
  bool own = current_branch() && *current_branch() == branch;
  pending_call next_call(verb, branch);
  std::vector<stage> plan;
  switch (verb) {
    case xa_verb::start:
      set_read_only(false);
      doomed_by_.reset();
      tracked_state_ = no_transaction;
      plan = {stage::xa_start};
      break;
    case xa_verb::end:
      set_read_only(false);
      if (tracker_says_written() || doomed_by_) {
        plan = {stage::xa_end};
      } else {
        plan = {stage::probe, stage::xa_end};
      }
      break;
    case xa_verb::end_failed:
      // MariaDB and MySQL have no XA END ... TMFAIL: the branch ends normally and the base class
      // keeps it rollback-only, so that rollback is the only verb left for it.
      plan = {stage::xa_end};
      break;
    case xa_verb::prepare:
      // A read-only branch is finished here, never prepared: a prepared branch that wrote
      // nothing is discarded by MariaDB when its session ends (see mysql_errors.h).
      plan = {read_only() ? stage::xa_commit_one_phase : stage::xa_prepare};
      break;
    case xa_verb::commit_one_phase: plan = {stage::xa_commit_one_phase}; break;
    case xa_verb::commit:
      next_call.resolving = !own;
      plan = {stage::xa_commit};
      break;
    case xa_verb::rollback:
      next_call.resolving = !own;
      // XA ROLLBACK refuses an ACTIVE branch (XAER_RMFAIL): end it first.
      if (own && state() == branch_state::active) {
        plan = {stage::xa_end, stage::xa_rollback};
      } else {
        plan = {stage::xa_rollback};
      }
      break;
  }
  if (next_call.resolving) {
    if (auto session = sessions_left_behind::instance().session_of(branch)) {
      next_call.ended_session = *session;
      plan.insert(plan.begin(), {stage::processlist_check, stage::innodb_check});
    }
  }
  next_call.stages.assign(plan.begin() + 1, plan.end());
  call_ = std::move(next_call);
  run_stage(plan.front());
  return {};
}

void mysql_rm::run_stage(stage next) {
  call_->current = next;
  call_->statement = statement_for(next, call_->branch);
  call_->fetching = false;
  call_->fetched = nullptr;
  call_->query_error = 0;
  if (next == stage::probe) call_->reports_before_probe = state_reports_;
  XATM_LOG(mysql, debug) << "[" << name() << "] " << call_->what() << ": send " << call_->statement;
  if (!conn_) {
    finish_lost(mysql_detail::connection_closed());
    return;
  }
  settle(mysql_real_query_start(&call_->query_error, conn_.get(), call_->statement.data(), call_->statement.size()));
}

// Called with the status of every _start/_cont: 0 means the operation completed.
void mysql_rm::settle(int status) {
  call_->wait_status = status;
  call_->timeout_at.reset();
  if (status == 0) {
    on_operation_done();
    return;
  }
  if ((status & MYSQL_WAIT_TIMEOUT) != 0) {
    call_->timeout_at = clock::now() + std::chrono::milliseconds(mysql_get_timeout_value_ms(conn_.get()));
  }
}

void mysql_rm::on_operation_done() {
  MYSQL* conn = conn_.get();
  if (call_->fetching) {
    result_ptr rows(call_->fetched);
    call_->fetched = nullptr;
    call_->fetching = false;
    if (!rows) {
      on_error(read_error(conn));
      return;
    }
    auto table = read_rows(rows.get());
    if (call_->current == stage::innodb_check) {
      on_innodb_listing(table);
      return;
    }
    if (call_->current == stage::processlist_check) {
      on_processlist(table);
      return;
    }
    auto listed = parse_recovered(table);
    bool still_prepared = false;
    for (const auto& ours : listed.ours) still_prepared = still_prepared || ours == call_->branch;
    for (const auto& other : listed.foreign) still_prepared = still_prepared || other.id == call_->branch;
    if (still_prepared) {
      finish(fail(xa_code::retry,
                  call_->what() + ": the branch is prepared but still attached to the live session "
                                  "that prepared it (MariaDB answers XAER_NOTA to other sessions "
                                  "until that session ends); try again later",
                  call_->not_found->native_code, call_->not_found->sqlstate));
    } else {
      finish(std::move(*call_->not_found));
    }
    return;
  }
  if (call_->query_error != 0) {
    on_error(read_error(conn));
    return;
  }
  if (call_->current == stage::recover_check || call_->current == stage::innodb_check ||
      call_->current == stage::processlist_check) {
    call_->fetching = true;
    settle(mysql_store_result_start(&call_->fetched, conn));
    return;
  }
  if (mysql_field_count(conn) != 0) {
    // No XA statement answers rows; drop whatever came so the connection stays in sync.
    result_ptr unexpected(mysql_store_result(conn));
  }
  on_success();
}

// SHOW ENGINE INNODB STATUS answered (Type, Name, Status): see sessions_left_behind.
void mysql_rm::on_innodb_listing(const query_result& table) {
  auto held = mysql_detail::session_transaction::unknown;
  if (table.rows.size() == 1 && table.rows[0].size() == 3 && table.rows[0][2]) {
    held = mysql_detail::innodb_transaction_of(*table.rows[0][2], call_->ended_session);
  }
  switch (held) {
    case mysql_detail::session_transaction::attached:
      finish(fail(xa_code::retry, call_->what() + ": InnoDB still holds the branch's transaction for the session (id " +
                                      std::to_string(call_->ended_session) + ") that left it prepared; resolving it " +
                                      "now would race MariaDB's detach of the branch: try again later"));
      return;
    case mysql_detail::session_transaction::none:
      sessions_left_behind::instance().forget(call_->branch);
      run_next_stage_or(vote::commit);
      return;
    case mysql_detail::session_transaction::unknown:
      fall_back_to_processlist("InnoDB's transaction list is incomplete (over 1 MiB?)");
      return;
  }
}

// Without the listing, the wait after the session left the processlist is all there is to go
// by (processlist_grace). Logged as a warning once per process (every resolve retries it), at
// debug level afterwards.
void mysql_rm::fall_back_to_processlist(const std::string& why) {
  static std::atomic<bool> warned{false};
  std::string message = "[" + name() + "] " + call_->what() + ": " + why + "; going by the time since session " +
                        std::to_string(call_->ended_session) +
                        " left the processlist instead (MariaDB's PROCESS privilege lets xatm read the list)";
  if (warned.exchange(true)) {
    XATM_LOG(mysql, debug) << message;
  } else {
    XATM_LOG(mysql, warning) << message;
  }
  if (sessions_left_behind::instance().gone_for(call_->branch) < processlist_grace) {
    finish(fail(xa_code::retry, call_->what() + ": the session (id " + std::to_string(call_->ended_session) +
                                    ") that left the branch prepared has just ended; InnoDB may not have detached " +
                                    "the branch yet: try again later"));
    return;
  }
  sessions_left_behind::instance().forget(call_->branch);
  run_next_stage_or(vote::commit);
}

// Is the session that left the branch prepared gone from the processlist? Then, once it has
// been gone for detach_settle, on to the InnoDB listing.
void mysql_rm::on_processlist(const query_result& table) {
  bool gone = table.rows.size() == 1 && !table.rows[0].empty() && table.rows[0][0] == "0";
  if (!gone) {
    finish(fail(xa_code::retry, call_->what() + ": the session (id " + std::to_string(call_->ended_session) +
                                    ") that left the branch prepared is still ending on the server; resolving it now " +
                                    "could race MariaDB's detach of the branch: try again later"));
    return;
  }
  // Waits here rather than answering XA_RETRY: the wait is short and certain to end, and a
  // resolver (recovery, a test) should not need a second run for it.
  auto gone_for = sessions_left_behind::instance().gone_for(call_->branch);
  if (gone_for < detach_settle) std::this_thread::sleep_for(detach_settle - gone_for);
  run_next_stage_or(vote::commit);
}

void mysql_rm::on_success() {
  switch (call_->current) {
    case stage::probe: {
      bool reported = state_reports_ != call_->reports_before_probe;
      set_read_only(reported && !tracker_says_written());
      XATM_LOG(mysql, debug) << "[" << name() << "] " << call_->what() << ": transaction state "
                             << (reported ? std::string(tracked_state_.data(), tracked_state_.size())
                                          : std::string("not reported, counted as writing"))
                             << (read_only() ? " (read-only)" : "");
      run_next_stage_or(vote::commit);
      return;
    }
    case stage::xa_end:
      if (call_->verb == xa_verb::end && doomed_by_) {
        // The server kept the branch (a lock wait timeout only undoes its statement), xatm does not.
        failure cause = *doomed_by_;
        cause.message = call_->what() + ": " + cause.message;
        finish(std::move(cause));
        return;
      }
      run_next_stage_or(vote::commit);
      return;
    case stage::xa_commit_one_phase: finish(call_->verb == xa_verb::prepare ? vote::read_only : vote::commit); return;
    case stage::xa_start:
    case stage::xa_prepare:
    case stage::xa_commit:
    case stage::xa_rollback:
    case stage::recover_check:
    case stage::innodb_check:
    case stage::processlist_check: run_next_stage_or(vote::commit); return;
  }
}

void mysql_rm::on_error(const native_error& error) {
  if (mysql_detail::is_connection_lost(error.number)) {
    finish_lost(error);
    return;
  }
  std::string what = call_->what() + " (" + call_->statement + ")";
  failure cause = mysql_detail::statement_failure(error, step_of(call_->current), context(what));
  switch (call_->current) {
    case stage::innodb_check:
      // Most likely no PROCESS privilege: the processlist is all there is to go by.
      fall_back_to_processlist("cannot read InnoDB's transaction list (" + cause.describe() + ")");
      return;
    case stage::probe:
      // Not worth failing the verb over: XA END says what state the branch is in.
      XATM_LOG(mysql, debug) << "[" << name() << "] " << call_->what() << ": the read-only probe failed, counted "
                             << "as writing: " << cause.describe();
      set_read_only(false);
      run_next_stage_or(vote::commit);
      return;
    case stage::xa_end:
      if (call_->verb == xa_verb::rollback) {
        // Rolling back anyway: whatever XA END thought of the branch, XA ROLLBACK decides.
        XATM_LOG(mysql, debug) << "[" << name() << "] " << call_->what() << ": " << cause.describe();
        run_next_stage_or(vote::commit);
        return;
      }
      if (mysql_detail::says_rolled_back(error)) {
        if (call_->verb == xa_verb::end_failed) {
          finish(vote::commit);  // rollback-only was the point
          return;
        }
        if (doomed_by_) {
          // "ROLLBACK ONLY" does not say why; the statement that doomed the branch does.
          cause.code = doomed_by_->code;
          cause.message += " (after: " + doomed_by_->message + ")";
        }
      }
      finish(std::move(cause));
      return;
    case stage::xa_commit:
      if (call_->resolving && mysql_detail::is_unknown_xid(error)) {
        call_->not_found = std::move(cause);
        run_stage(stage::recover_check);
        return;
      }
      if (call_->resolving && dialect_ == "mariadb" && mysql_detail::is_discarded_read_only(error)) {
        XATM_LOG(mysql, info) << "[" << name() << "] " << call_->what() << ": the branch had written nothing; "
                              << "MariaDB discarded it when the session that prepared it ended";
        finish(vote::commit);
        return;
      }
      finish(std::move(cause));
      return;
    case stage::xa_rollback:
      if (mysql_detail::says_rolled_back(error)) {
        XATM_LOG(mysql, debug) << "[" << name() << "] " << call_->what()
                               << ": already rolled back by the server: " << cause.describe();
        finish(vote::commit);
        return;
      }
      if (!call_->resolving && !call_->ended_again && mysql_detail::says_still_active(error)) {
        call_->ended_again = true;
        call_->stages = {stage::xa_rollback};
        run_stage(stage::xa_end);
        return;
      }
      if (call_->resolving && mysql_detail::is_unknown_xid(error)) {
        call_->not_found = std::move(cause);
        run_stage(stage::recover_check);
        return;
      }
      finish(std::move(cause));
      return;
    case stage::xa_start:
    case stage::xa_prepare:
    case stage::xa_commit_one_phase:
    case stage::recover_check:
    case stage::processlist_check: finish(std::move(cause)); return;
  }
}

void mysql_rm::run_next_stage_or(result<vote> answer) {
  if (call_->stages.empty()) {
    finish(std::move(answer));
    return;
  }
  stage next = call_->stages.front();
  call_->stages.erase(call_->stages.begin());
  run_stage(next);
}

void mysql_rm::finish(result<vote> answer) {
  log_outcome([this] { return call_->what(); }, answer);
  call_->wait_status = 0;
  call_->stages.clear();
  call_->outcome = std::move(answer);
}

// The session is gone. An unprepared branch went with it: the server rolls back the XA
// transaction of a session that ends, which is exactly what a rollback of it asked for.
void mysql_rm::finish_lost(const native_error& error) {
  std::string what = call_->what() + " (" + call_->statement + ")";
  failure cause = mysql_detail::statement_failure(error, step_of(call_->current), context(what));
  cause.code = xa_code::rm_failure;
  close_connection("connection lost");
  bool own_unprepared = call_->verb == xa_verb::rollback && !call_->resolving && state() != branch_state::prepared;
  finish(answer_for_lost_session(
      own_unprepared, [this] { return call_->what(); }, std::move(cause)));
}

int mysql_rm::ready_flags() const {
  int wanted = call_->wait_status;
  int ready = 0;
  pollfd ready_poll{mysql_get_socket(conn_.get()), poll_events(wanted), 0};
  if (::poll(&ready_poll, 1, 0) > 0) ready = io_flags(ready_poll.revents, wanted);
  // MYSQL_WAIT_TIMEOUT tells the driver its read/write timeout expired: only when it really did.
  if ((wanted & MYSQL_WAIT_TIMEOUT) != 0 && call_->timeout_at && clock::now() >= *call_->timeout_at) {
    ready |= MYSQL_WAIT_TIMEOUT;
  }
  return ready & wanted;
}

io_wait mysql_rm::waiting_for() const noexcept {
  if (!call_ || call_->outcome || !conn_ || call_->wait_status == 0) return {};  // nothing to wait for
  return {static_cast<int>(mysql_get_socket(conn_.get())), poll_events(call_->wait_status)};
}

bool mysql_rm::advance() {
  if (!call_ || call_->outcome) return true;
  if (!conn_) {
    finish_lost(mysql_detail::connection_closed());
    return true;
  }
  if (call_->wait_status == 0) {  // cannot happen: settle() either waits or finishes the stage
    finish(fail(xa_code::rm_error, call_->what() + ": the driver waits for nothing and has not finished"));
    return true;
  }
  int ready = ready_flags();
  if (ready == 0) return false;  // woken for nothing: wait again
  if (call_->fetching) {
    settle(mysql_store_result_cont(&call_->fetched, conn_.get(), ready));
  } else {
    settle(mysql_real_query_cont(&call_->query_error, conn_.get(), ready));
  }
  return call_->outcome.has_value();
}

void mysql_rm::cancel() noexcept {
  close_connection("cancelled");  // first: it looks at the call in flight
  call_.reset();
}

// The connection is closing (or was lost) while its session may hold the branch prepared: note
// the session, so that resolving the branch from another session waits until InnoDB let go of it.
void mysql_rm::remember_session_if_prepared() noexcept {
  if (!conn_ || !current_branch() || dialect_ != "mariadb") return;
  bool may_be_prepared =
      state() == branch_state::prepared || (call_ && !call_->resolving && call_->verb == xa_verb::prepare);
  if (!may_be_prepared) return;
  try {
    sessions_left_behind::instance().remember(*current_branch(), session_id_);
  } catch (const std::exception& e) {
    // Out of memory: the branch is still resolved, only without the wait for its session.
    XATM_LOG(mysql, warning) << "[" << name() << "] cannot note the session of " << current_branch()->to_string()
                             << ": " << e.what();
  }
}

void mysql_rm::close_connection(const char* why) noexcept {
  if (!conn_) return;
  log_closing(why);
  remember_session_if_prepared();
  conn_.reset();
  set_read_only(false);
  doomed_by_.reset();
  tracked_state_ = no_transaction;
}

result<void> mysql_rm::open_connection(const std::string& description) {
  connection_ptr conn(mysql_init(nullptr));
  if (!conn) return fail(xa_code::rm_error, description + ": Connector/C is out of memory");
  // Non-blocking calls for the verbs; blocking ones stay allowed on the same handle.
  if (mysql_options(conn.get(), MYSQL_OPT_NONBLOCK, nullptr) != 0) {
    return fail(xa_code::rm_error, description + ": Connector/C cannot run non-blocking calls");
  }
  // Never reconnect silently: a new session would have lost the branch without anyone knowing.
  my_bool reconnect = 0;
  (void)mysql_options(conn.get(), MYSQL_OPT_RECONNECT, &reconnect);  // ignored: 0 is the default anyway
  // TLS, timeouts, option files (connection_options.h).
  auto arguments = mysql_detail::apply(conn.get(), settings());
  if (!arguments) return fail(arguments.error().code, description + ": " + arguments.error().message);
  // Every transaction-state report reaches on_status(), also for SQL run on the native handle.
  if (mysql_optionsv(conn.get(), MARIADB_OPT_STATUS_CALLBACK, &mysql_rm::on_status, this) != 0) {
    return fail(xa_code::rm_error, description + ": Connector/C has no status callback (3.3 or newer needed)");
  }

  const auto& given = arguments.value();
  auto c_string = [](const std::optional<std::string>& value) { return value ? value->c_str() : nullptr; };

  XATM_LOG(mysql, debug) << "[" << name() << "] " << description;
  if (mysql_real_connect(conn.get(), c_string(given.host), c_string(given.user), c_string(given.password),
                         c_string(given.database), given.port, c_string(given.unix_socket), 0) == nullptr) {
    return mysql_detail::connect_failure(read_error(conn.get()), context(description));
  }
  conn_ = std::move(conn);
  session_id_ = mysql_thread_id(conn_.get());
  std::string_view version = mysql_get_server_info(conn_.get());
  dialect_ = version.find("MariaDB") != std::string_view::npos ? "mariadb" : "mysql";
  tracked_state_ = no_transaction;
  // Still connecting: the session setup waits no longer than connect_timeout.
  std::optional<std::chrono::milliseconds> setup_timeout;
  if (given.connect_timeout && *given.connect_timeout > 0) setup_timeout = std::chrono::seconds(*given.connect_timeout);
  if (auto tracking =
          run_query(track_state_setup, mysql_step::connect,
                    description + " (session setup: session_track_transaction_info, autocommit)", setup_timeout);
      !tracking) {
    close_connection("session setup failed");
    return std::move(tracking).error();
  }
  XATM_LOG(mysql, debug) << "[" << name() << "] connected, server " << version << " (" << dialect_ << ")";
  return {};
}

// Blocking for the caller, but through the non-blocking API so that it can give up after
// `timeout` (the blocking mysql_real_query waits as long as the server is silent, unless the
// application set read_timeout). Answers the last result set (CALL can send several) or, for
// statements without rows, the affected row count. No answer in time closes the connection.
result<query_result> mysql_rm::run_query(std::string_view sql, mysql_step step, std::string_view what,
                                         std::optional<std::chrono::milliseconds> timeout) {
  auto failed = [&]() -> failure {
    native_error error = read_error(conn_.get());
    failure cause = mysql_detail::statement_failure(error, step, context(what));
    if (mysql_detail::is_connection_lost(error.number)) close_connection("connection lost");
    return cause;
  };
  if (!conn_) return fail(xa_code::rm_failure, std::string(what) + ": not connected");
  MYSQL* conn = conn_.get();
  std::optional<clock::time_point> deadline;
  if (timeout) deadline = clock::now() + *timeout;
  auto timed_out = [&]() -> failure {
    close_connection("no answer in time");
    return fail(xa_code::rm_failure, std::string(what) + ": no answer within " + std::to_string(timeout->count()) +
                                         " ms; the connection was closed");
  };
  // Drives one non-blocking operation (its _start already called) to its end; false when the
  // deadline passed first.
  auto complete = [&](int status, const auto& resume) {
    while (status != 0) {
      int ready = wait_for_driver(conn, status, deadline);
      if (ready == 0) return false;
      status = resume(ready);
    }
    return true;
  };
  int query_error = 0;
  if (!complete(mysql_real_query_start(&query_error, conn, sql.data(), sql.size()),
                [&](int ready) { return mysql_real_query_cont(&query_error, conn, ready); })) {
    return timed_out();
  }
  if (query_error != 0) return failed();
  query_result table;
  while (true) {
    if (mysql_field_count(conn) != 0) {
      MYSQL_RES* fetched = nullptr;
      if (!complete(mysql_store_result_start(&fetched, conn),
                    [&](int ready) { return mysql_store_result_cont(&fetched, conn, ready); })) {
        return timed_out();
      }
      result_ptr rows(fetched);
      if (!rows) return failed();
      table = read_rows(rows.get());
    } else {
      my_ulonglong affected = mysql_affected_rows(conn);
      if (table.columns.empty() && affected != static_cast<my_ulonglong>(-1)) table.affected_rows = affected;
    }
    int more = 0;  // 0: another result follows, -1: done, > 0: error
    if (!complete(mysql_next_result_start(&more, conn),
                  [&](int ready) { return mysql_next_result_cont(&more, conn, ready); })) {
      return timed_out();
    }
    if (more > 0) return failed();
    if (more < 0) break;
  }
  return table;
}

recovered_branches mysql_rm::parse_recovered(const query_result& table) const {
  recovered_branches found;
  for (const auto& row : table.rows) {
    if (row.size() < 4 || !row[3]) continue;
    const std::string& data = *row[3];
    std::optional<xid> id;
    if (dialect_ == "mysql") {
      auto format_id = row[0] ? parse_number<std::int32_t>(*row[0]) : std::nullopt;
      auto gtrid_length = row[1] ? parse_number<std::size_t>(*row[1]) : std::nullopt;
      auto bqual_length = row[2] ? parse_number<std::size_t>(*row[2]) : std::nullopt;
      if (format_id && gtrid_length && bqual_length) {
        if (auto parsed = mysql::parse_hex(*format_id, *gtrid_length, *bqual_length, data)) {
          id = std::move(parsed).value();
        }
      }
    } else if (auto parsed = mysql::parse_sql_literal(data)) {
      id = std::move(parsed).value();
    }
    if (id && id->format_id() == xatm_format_id) {
      found.ours.push_back(std::move(*id));
    } else {
      // MariaDB does not say how long a branch has been prepared: no age.
      found.foreign.push_back(prepared_branch{data, std::move(id), std::nullopt});
    }
  }
  return found;
}

result<recovered_branches> mysql_rm::do_recover() {
  const char* statement = recover_statement();
  XATM_LOG(mysql, debug) << "[" << name() << "] recover: " << statement;
  auto table = run_query(statement, mysql_step::recover, std::string("recover (") + statement + ")", call_timeout());
  if (!table) return std::move(table).error();
  auto found = parse_recovered(table.value());
  for (const auto& ours : found.ours) XATM_LOG(mysql, debug) << "[" << name() << "] recover: ours " << ours.to_string();
  for (const auto& other : found.foreign) XATM_LOG(mysql, debug) << "[" << name() << "] recover: foreign " << other.raw;
  return found;
}

result<query_result> mysql_rm::do_exec(std::string_view sql) {
  // The SQL itself is not logged: it may carry the application's data.
  XATM_LOG(mysql, debug) << "[" << name() << "] exec (" << sql.size() << " bytes)";
  bool in_branch = state() == branch_state::active;
  auto answer = run_query(sql, mysql_step::exec, "exec", call_timeout());
  if (!answer && in_branch && !doomed_by_) {
    xa_code cause = mysql_detail::rollback_cause(static_cast<unsigned int>(answer.error().native_code));
    if (cause != xa_code::ok) {
      failure doom = answer.error();
      doom.code = cause;
      doom.message = "a statement of the branch failed, the branch is rollback-only: " + doom.message;
      XATM_LOG(mysql, debug) << "[" << name() << "] " << current_branch()->to_string() << ": " << doom.describe();
      doomed_by_ = std::move(doom);
    }
  }
  return answer;
}

}  // namespace

result<std::unique_ptr<resource_manager>> connect(std::string rm_name, const connection_settings& settings) {
  return detail::open_adapter<mysql_rm>(std::move(rm_name), settings);
}

st_mysql* handle(resource_manager& rm) noexcept { return detail::native_connection<mysql_rm>(rm); }

}  // namespace xatm::mysql
