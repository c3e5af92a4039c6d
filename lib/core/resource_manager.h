// Internal: xatm's side of a connection to one resource manager (a database), driven by XA verbs.
//
// The application sees the same object as a connection (include/xatm/connection.h): exec() and
// the native handle, no XA verb. Only the engines, recovery and the backends reach this side.
// A resource_manager owns one connection and carries at most one branch on it at a time. It
// mirrors the XA verbs (start, end, prepare, commit, rollback, recover, forget) and enforces the
// branch's XA state machine itself: an illegal call (commit before prepare, start twice, ...)
// fails with xa_code::protocol and sends nothing. Each verb also has a non-blocking form
// (begin_call / resume_call / finish_call) so the transaction manager can overlap the round trips
// of several RMs from one thread. The application runs its own SQL on the branch with exec() or
// through native_handle(). Thread safety: one thread at a time per object.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "xatm/connection.h"
#include "xatm/result.h"
#include "xatm/xid.h"

namespace xatm {

// Prepare's answer when it succeeds: XA_OK (vote to commit) or XA_RDONLY (the branch wrote
// nothing, it is already finished on the RM and takes no further part).
enum class vote : std::uint8_t { commit, read_only };

// Where this connection's branch stands in the XA state machine.
enum class branch_state : std::uint8_t {
  idle,           // no branch associated (ready to start, or to resolve a prepared XID)
  active,         // started: the application's SQL runs inside the branch
  ended,          // ended successfully: may be prepared or committed in one phase
  rollback_only,  // ended with failure or marked by the RM: can only be rolled back
  prepared,       // prepared: survives crashes until commit or rollback
};
const char* branch_state_name(branch_state state) noexcept;

// The verbs that have a non-blocking form.
enum class xa_verb : std::uint8_t {
  start,
  end,         // end with success (TMSUCCESS)
  end_failed,  // end with failure (TMFAIL): the branch becomes rollback-only
  prepare,
  commit,            // second phase of a prepared branch
  commit_one_phase,  // commit an ended branch without prepare
  rollback,
};
const char* xa_verb_name(xa_verb verb) noexcept;

// What a call in flight waits for: poll() `socket` for `events` (POLLIN / POLLOUT). A negative
// socket means "no I/O to wait for: call resume_call() again".
struct io_wait {
  int socket = -1;
  short events = 0;
};

// A prepared branch as the RM lists it.
struct prepared_branch {
  std::string raw;                          // the RM's own text: the gid, or the XA RECOVER data
  std::optional<xid> id;                    // parsed when the encoding is understood
  std::optional<std::int64_t> age_seconds;  // how long it has been prepared, when the RM says
};

// recover()'s answer: branches with xatm's formatID, and everything else (never touched).
struct recovered_branches {
  std::vector<xid> ours;                 // formatID 0x78617431; the caller filters by tm_id
  std::vector<prepared_branch> foreign;  // other formatIDs or other encodings
};

class resource_manager : public connection {
 public:
  ~resource_manager() override;

  // The registered name (1..48 of [A-Za-z0-9_-]); every failure carries it.
  const std::string& name() const noexcept final { return name_; }
  // "postgresql", "mariadb", "mysql" or a test double's name.
  std::string_view dialect() const noexcept override = 0;

  // ---- XA verbs (blocking) ----------------------------------------------------------------
  // Starts a new branch on this connection (PostgreSQL: BEGIN; MySQL: XA START).
  result<void> start(const xid& branch);
  // Ends the branch; with success == false it becomes rollback-only (XA END; PG: nothing sent).
  result<void> end(const xid& branch, bool success = true);
  // Prepares the ended branch. vote::read_only: it wrote nothing and is finished already.
  // A failure with an XA_RB* code means the RM rolled the branch back; xa_code::invalid means
  // the RM cannot prepare as configured (PostgreSQL: max_prepared_transactions = 0): the
  // branch is rollback-only.
  result<vote> prepare(const xid& branch);
  // Commits. one_phase == true: the ended branch commits without prepare; a lost reply here
  // (xa_code::rm_failure) means the outcome is unknown. one_phase == false: the branch must be
  // prepared, either this connection's own branch or any prepared XID (recovery); not_found
  // then means the RM no longer has it, and xa_code::retry means it is prepared but still
  // attached to another live session (MariaDB): try again later, it is not done.
  result<void> commit(const xid& branch, bool one_phase);
  // Rolls back: this connection's branch in any state (an active one is ended first), or any
  // prepared XID. not_found / retry as for commit().
  result<void> rollback(const xid& branch);
  // XA_FORGET. PostgreSQL and MariaDB never complete a branch heuristically, so there is never
  // anything to forget: answers ok, or protocol if the XID is this connection's unfinished branch.
  result<void> forget(const xid& branch);
  // Lists the prepared branches this RM holds (PostgreSQL: of the connected database).
  result<recovered_branches> recover();

  // ---- the same verbs, non-blocking ----------------------------------------------------------
  // begin_call() checks the state machine and sends the first statement without waiting. Then
  // wait on call_wait() and call resume_call() until it answers true, then finish_call() for the
  // outcome (vote::commit for verbs other than prepare). One call in flight per connection.
  result<void> begin_call(xa_verb verb, const xid& branch);
  io_wait call_wait() const noexcept;
  bool resume_call();
  result<vote> finish_call();
  // Gives up on the call in flight (a timeout): closes the connection, so the RM rolls back an
  // unprepared branch by itself; a branch that did get prepared is left to recovery.
  void abandon_call() noexcept;
  bool call_in_flight() const noexcept { return in_flight_.has_value(); }
  // Leaves the call in flight to finish in the background (the TM's early acknowledgement):
  // the next use of this connection (any verb, exec, recover, reconnect) first waits for its
  // answer and hands it to `on_done`. So this connection reads its own writes; others may not
  // see them until then. If the object is destroyed first, on_done is never called.
  void detach_call(std::function<void(const result<vote>&)> on_done);

  // ---- the application's face (include/xatm/connection.h) ------------------------------------
  // Runs SQL (one statement, or several for PostgreSQL) and returns the last statement's rows.
  result<query_result> exec(std::string_view sql) final;
  // The driver's handle: PGconn* for PostgreSQL, MYSQL* for MariaDB/MySQL. Do not run
  // transaction control statements (COMMIT, XA ...) on it; xatm tracks the state.
  // A commit left running in the background (early acknowledgement) is finished first.
  void* native_handle() final;

  // After a successful end(): true when the RM told xatm the branch wrote nothing, so prepare
  // will answer vote::read_only. The TM uses it to pick one-phase commit before preparing.
  bool known_read_only() const noexcept { return state_ == branch_state::ended && branch_wrote_nothing(); }

  // While the branch is active, without a round trip: true when the RM has already reported a
  // write in it, false when it reported none so far (a hint: end() knows for sure), nullopt when
  // it reports nothing before end(). The commit-marker protocol uses it to choose whether the
  // decision row goes into this branch.
  virtual std::optional<bool> wrote_so_far() const noexcept { return std::nullopt; }

  branch_state state() const noexcept { return state_; }
  // The branch this connection carries (active, ended, rollback-only or prepared), if any.
  const std::optional<xid>& current_branch() const noexcept { return current_; }
  // False after the connection was lost or abandoned; reconnect() opens a new one.
  bool connected() const noexcept final { return is_connected(); }
  // Drops the connection and its unfinished branch (the RM rolls it back unless prepared) and
  // connects again.
  result<void> reconnect() final;

  // Bounds every call on this connection that would otherwise wait as long as the driver does:
  // the blocking XA verbs above, recover() and exec(). A call with no answer within `timeout`
  // closes the connection (the RM rolls back an unprepared branch; a prepared one stays for
  // commit or recovery from another connection) and fails with xa_code::rm_failure. nullopt,
  // the default: no bound. The transaction manager bounds the connections it opens for itself
  // (phase-2 retries, recovery, markers) with tm_options::rm_call_timeout; the non-blocking
  // forms take their deadline from drive_calls().
  void set_call_timeout(std::optional<std::chrono::milliseconds> timeout) noexcept final { call_timeout_ = timeout; }
  std::optional<std::chrono::milliseconds> call_timeout() const noexcept final { return call_timeout_; }

  // This side of a connection the application holds: every connection is a resource_manager.
  static resource_manager& of(connection& application_side) noexcept {
    return static_cast<resource_manager&>(application_side);
  }
  static std::unique_ptr<resource_manager> of(std::unique_ptr<connection> application_side) noexcept {
    if (!application_side) return nullptr;
    return std::unique_ptr<resource_manager>(&of(*application_side.release()));
  }

 protected:
  explicit resource_manager(std::string name);

  // For adapters' blocking work (do_recover, do_exec): when it must have an answer, if bounded.
  std::optional<std::chrono::steady_clock::time_point> call_deadline() const noexcept;

  // The adapter's half. send() starts the verb without blocking; advance() makes progress and
  // answers true when the verb finished; outcome() then gives the result. cancel() closes the
  // connection. The base class owns the state machine: these are only called for legal verbs.
  virtual result<void> send(xa_verb verb, const xid& branch) = 0;
  virtual io_wait waiting_for() const noexcept = 0;
  virtual bool advance() = 0;
  virtual result<vote> outcome() = 0;
  virtual void cancel() noexcept = 0;
  virtual result<recovered_branches> do_recover() = 0;
  virtual result<query_result> do_exec(std::string_view sql) = 0;
  virtual void* do_native_handle() noexcept = 0;
  virtual bool is_connected() const noexcept = 0;
  virtual result<void> do_connect() = 0;
  // After end: did the RM report that the branch wrote nothing? (false when unknown)
  virtual bool branch_wrote_nothing() const noexcept { return false; }

  // For adapters: a failure already tagged with this RM's name.
  failure fail(xa_code code, std::string message, int native_code = 0, std::string sqlstate = {}) const;

 private:
  struct call {
    xa_verb verb;
    xid branch;
    bool resolving;  // commit/rollback of a prepared XID this connection does not carry
  };
  result<void> check_legal(xa_verb verb, const xid& branch, bool& resolving) const;
  void apply_outcome(const call& finished, const result<vote>& answer);
  result<vote> run_blocking(xa_verb verb, const xid& branch);

  std::string name_;
  branch_state state_ = branch_state::idle;
  std::optional<xid> current_;
  std::optional<call> in_flight_;
  std::function<void(const result<vote>&)> detached_done_;
  std::optional<std::chrono::milliseconds> call_timeout_;
  void finish_detached();
};

// Drives every call in flight on `rms` with one poll() loop until each has finished or the
// deadline passes (answers already in their sockets by then still count). Answers the ones that
// did not finish (left in flight: abandon or keep waiting). Calls finished meanwhile are ready for finish_call().
// `on_answer`, if given, is called for each RM the moment its answer is complete, while the others may still be
// waiting.
std::vector<resource_manager*> drive_calls(std::span<resource_manager* const> rms,
                                           std::optional<std::chrono::steady_clock::time_point> deadline,
                                           const std::function<void(resource_manager&)>& on_answer = {});

// Opens a new connection to one registered RM: how the TM and recovery reach it without the
// application (a dialect's connect with the registered settings, or a test's scripted RM).
using rm_connector = std::function<result<std::unique_ptr<resource_manager>>()>;

}  // namespace xatm
