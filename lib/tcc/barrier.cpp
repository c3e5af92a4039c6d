// The participant's side of TCC (xatm/tcc.h, docs/tcc.md): a barrier row per (gtrid, branch,
// step), written in the same local transaction as the participant's business change, so that
// the change and the fact that it happened commit or roll back together.
//
// The steps of one branch run one at a time: each holds the branch's try row locked. A try
// inserts that row; a cancel that finds none inserts it too (origin 'cancel'), fencing off a try
// still on its way; a confirm locks it with SELECT ... FOR UPDATE. Then:
//
//   step     try row           other rows        does
//   try      absent            -                 insert it, run business        -> ran
//            origin try        -                                                -> duplicate
//            origin cancel     -                                                -> refused_after_cancel
//   confirm  absent            -                                                -> not_tried
//            origin cancel     -                                                -> conflict
//            origin try        confirm           nothing                        -> duplicate
//                              cancel            nothing                        -> conflict
//                              none              insert confirm, run business   -> ran
//   cancel   absent            -                 insert try (cancel), cancel    -> empty_cancel
//            any               cancel            nothing                        -> duplicate
//                              confirm           nothing                        -> conflict
//                              none              insert cancel, run business    -> ran
//
// Try and cancel insert the try row first and look only when it exists (a duplicate key):
// looking first, with a locking read of a row that is not there, would take InnoDB gap locks,
// which make concurrent tries of unrelated branches deadlock (new gtrids share the index's
// last gap). A duplicate key ends the attempt (PostgreSQL aborts the transaction on an error);
// the next attempt locks the existing row and reads it. Two deliveries that race on the same
// missing row: the second insert waits for the first and then fails (or, if the first rolled
// back, succeeds). Deadlocks left over are retried after a short random pause. The barrier
// transaction is a one-branch global transaction of the participant's own transaction
// manager, so it commits in one phase and never writes that TM's decision log.
#include <algorithm>
#include <chrono>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "core/backend.h"
#include "core/identity.h"
#include "core/resource_manager.h"
#include "xatm/connection.h"
#include "xatm/error.h"
#include "xatm/global_transaction.h"
#include "xatm/tcc.h"
#include "xatm/transaction_manager.h"

namespace xatm {

const char* tcc_step_name(tcc_step step) noexcept {
  switch (step) {
    case tcc_step::try_: return "try";
    case tcc_step::confirm: return "confirm";
    case tcc_step::cancel: return "cancel";
  }
  return "unknown";
}

const char* tcc_answer_name(tcc_answer answer) noexcept {
  switch (answer) {
    case tcc_answer::done: return "done";
    case tcc_answer::refused: return "refused";
    case tcc_answer::failed: return "failed";
  }
  return "unknown";
}

const char* barrier_outcome_name(barrier_outcome outcome) noexcept {
  switch (outcome) {
    case barrier_outcome::ran: return "ran";
    case barrier_outcome::duplicate: return "duplicate";
    case barrier_outcome::empty_cancel: return "empty_cancel";
    case barrier_outcome::refused_after_cancel: return "refused_after_cancel";
    case barrier_outcome::conflict: return "conflict";
    case barrier_outcome::not_tried: return "not_tried";
    case barrier_outcome::wrong_database: return "wrong_database";
  }
  return "unknown";
}

tcc_answer answer_for(barrier_outcome outcome) noexcept {
  switch (outcome) {
    case barrier_outcome::ran:
    case barrier_outcome::duplicate:
    case barrier_outcome::empty_cancel: return tcc_answer::done;
    case barrier_outcome::refused_after_cancel:
    case barrier_outcome::conflict: return tcc_answer::refused;
    case barrier_outcome::not_tried:
    case barrier_outcome::wrong_database: return tcc_answer::failed;
  }
  return tcc_answer::failed;
}

std::string barrier_schema(std::string_view dialect) {
  const detail::backend* sql = detail::find_backend(dialect);
  if (sql == nullptr) {
    throw invalid_argument_error(make_failure(
        xa_code::invalid, "unknown dialect '" + std::string(dialect) + "' (" + detail::dialect_list() + ")"));
  }
  return sql->barrier_table_ddl();
}

namespace {

// How often a step is run again after it lost a race on the try row (see the top of the file).
constexpr int max_attempts = 8;

// A request comes from the network: check it before any of it reaches SQL. gtrids are what
// xatm makes (and any XA gtrid a coordinator could use with this barrier): 1..64 bytes of
// [A-Za-z0-9_.-], quoted as a literal after this check.
void check_request(const tcc_request& request) {
  bool safe = !request.gtrid.empty() && request.gtrid.size() <= 64 &&
              std::all_of(request.gtrid.begin(), request.gtrid.end(), [](char c) {
                return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                       c == '-' || c == '.';
              });
  if (!safe) {
    throw invalid_argument_error(
        make_failure(xa_code::invalid, "a TCC gtrid must be 1..64 characters of A-Z a-z 0-9 _ . -"));
  }
  if (request.branch == 0 || request.branch > 2147483647U) {
    throw invalid_argument_error(make_failure(xa_code::invalid, "a TCC branch number is 1..2147483647"));
  }
}

// An insert met a row that is there (PostgreSQL unique_violation, MariaDB ER_DUP_ENTRY).
bool duplicate_key(const failure& cause) {
  return cause.sqlstate == "23505" || cause.native_code == 1062;
}

// Lost a race with a concurrent delivery of the same branch: run the step again.
bool lost_race(const failure& cause) {
  return duplicate_key(cause)          // a row the branch's lock should have kept out
         || cause.sqlstate == "40P01"  // PostgreSQL deadlock_detected
         || cause.sqlstate == "40001"  // serialization_failure
         || cause.native_code == 1213;  // ER_LOCK_DEADLOCK
}

// A random pause of up to attempt x 5 ms, so that deliveries that deadlocked do not meet again.
void pause_before_retry(int attempt) {
  thread_local std::minstd_rand random(std::random_device{}());
  std::uniform_int_distribution<int> ms(1, attempt * 5);
  std::this_thread::sleep_for(std::chrono::milliseconds(ms(random)));
}

// What one attempt found: the outcome, or the failure of a barrier statement.
struct verdict {
  barrier_outcome outcome = barrier_outcome::duplicate;
  bool run_business = false;
};

// The barrier's statements for one branch. The gtrid was checked (check_request), so it is
// quoted as a literal here.
class barrier_statements {
 public:
  barrier_statements(connection& db, const tcc_request& request)
      : db_(db), gtrid_("'" + request.gtrid + "'"), branch_(std::to_string(request.branch)) {}

  // The try row's origin, locked; nullopt when there is none.
  result<std::optional<std::string>> lock_try_row() {
    auto rows = db_.exec("SELECT origin FROM xatm_tcc_barrier WHERE " + where() + " AND step = 'try' FOR UPDATE");
    if (!rows) return std::move(rows).error();
    if (rows.value().rows.empty()) return std::optional<std::string>();
    return std::optional<std::string>(rows.value().rows.front().front().value_or(""));
  }

  // Whether the branch has a row for `step`. A locking read, so that it sees the latest
  // committed rows whatever the isolation level (InnoDB's plain reads use a snapshot).
  result<bool> has(const char* step) {
    auto rows = db_.exec("SELECT origin FROM xatm_tcc_barrier WHERE " + where() + " AND step = '" + step +
                         "' FOR UPDATE");
    if (!rows) return std::move(rows).error();
    return !rows.value().rows.empty();
  }

  // A plain insert: a concurrent delivery that inserted the same row first makes it fail.
  result<void> insert(const char* step, const char* origin) {
    auto done = db_.exec("INSERT INTO xatm_tcc_barrier (gtrid, branch, step, origin) VALUES (" + gtrid_ + ", " +
                         branch_ + ", '" + step + "', '" + origin + "')");
    if (!done) return std::move(done).error();
    return {};
  }

 private:
  std::string where() const { return "gtrid = " + gtrid_ + " AND branch = " + branch_; }

  connection& db_;
  std::string gtrid_;   // the checked gtrid as an SQL literal
  std::string branch_;  // the branch number
};

// One attempt's barrier work inside the open barrier transaction (the table at the top).
// `try_row_seen`: an earlier attempt found the try row already there, so look before inserting.
// Answers nullopt when this attempt's insert met an existing try row: run again, looking.
result<std::optional<verdict>> decide(barrier_statements& barrier, tcc_step step, bool try_row_seen) {
  using answer = std::optional<verdict>;
  if (step != tcc_step::confirm && !try_row_seen) {
    auto inserted = barrier.insert("try", step == tcc_step::try_ ? "try" : "cancel");
    if (!inserted) {
      if (duplicate_key(inserted.error())) return answer();
      return std::move(inserted).error();
    }
    if (step == tcc_step::try_) return answer(verdict{barrier_outcome::ran, true});
    // Empty rollback: the try row now says cancelled, so a try still on its way is refused.
    if (auto done = barrier.insert("cancel", "cancel"); !done) return std::move(done).error();
    return answer(verdict{barrier_outcome::empty_cancel});
  }

  auto try_row = barrier.lock_try_row();
  if (!try_row) return std::move(try_row).error();
  const std::optional<std::string>& origin = try_row.value();
  if (!origin) {
    // Confirm without a try: a coordinator's mistake. Try or cancel: the row seen before was
    // rolled back meanwhile; start over by inserting.
    if (step == tcc_step::confirm) return answer(verdict{barrier_outcome::not_tried});
    return decide(barrier, step, false);
  }
  if (step == tcc_step::try_) {
    return answer(verdict{*origin == "cancel" ? barrier_outcome::refused_after_cancel : barrier_outcome::duplicate});
  }
  if (step == tcc_step::confirm && *origin == "cancel") return answer(verdict{barrier_outcome::conflict});

  const char* own = step == tcc_step::confirm ? "confirm" : "cancel";
  const char* other = step == tcc_step::confirm ? "cancel" : "confirm";
  auto done_before = barrier.has(own);
  if (!done_before) return std::move(done_before).error();
  if (done_before.value()) return answer(verdict{barrier_outcome::duplicate});
  auto other_done = barrier.has(other);
  if (!other_done) return std::move(other_done).error();
  if (other_done.value()) return answer(verdict{barrier_outcome::conflict});
  if (auto done = barrier.insert(own, own); !done) return std::move(done).error();
  return answer(verdict{barrier_outcome::ran, true});
}

}  // namespace

struct tcc_barrier::identity_cache {
  std::mutex mutex;
  std::string identity;
};

tcc_barrier::tcc_barrier(transaction_manager& tm, std::string rm_name)
    : tm_(&tm), rm_name_(std::move(rm_name)), identity_(std::make_shared<identity_cache>()) {}

std::string tcc_barrier::identity(connection& db) {
  std::lock_guard lock(identity_->mutex);
  if (identity_->identity.empty()) {
    auto found = detail::ensure_identity(resource_manager::of(db));
    if (!found) throw_failure(found.error());
    identity_->identity = found.value().id;
  }
  return identity_->identity;
}

barrier_outcome tcc_barrier::run(connection& db, tcc_step step, const tcc_request& request,
                                 const std::function<void(connection& db)>& business) {
  check_request(request);
  if (db.name() != rm_name_) {
    throw configuration_error(make_failure(
        xa_code::invalid, "the barrier of RM '" + rm_name_ + "' was given a connection to '" + db.name() + "'"));
  }
  // A coordinator that knows the branch's database must find it here, or nothing is done.
  if (!request.identity.empty() && request.identity != identity(db)) return barrier_outcome::wrong_database;
  barrier_statements barrier(db, request);
  bool try_row_seen = false;
  for (int attempt = 1;; ++attempt) {
    global_transaction local = tm_->begin();
    local.enlist(db);
    auto found = decide(barrier, step, try_row_seen);
    if (!found || !found.value()) {
      local.rollback();
      if (found && attempt < max_attempts) {
        try_row_seen = true;  // the insert met an existing try row: look at it
        continue;
      }
      if (!found && attempt < max_attempts && lost_race(found.error())) {
        pause_before_retry(attempt);
        continue;
      }
      throw_failure(found ? make_failure(xa_code::retry, "the barrier row of this branch keeps changing: try again")
                          : found.error());
    }
    const verdict& decided = *found.value();
    if (decided.run_business) {
      try {
        business(db);
      } catch (...) {
        // The barrier row goes with the business change, so the step may come again. The
        // business's exception is the one to report; a failed rollback is the server's (the
        // transaction ends with the session anyway).
        try {
          local.rollback();
        } catch (const std::exception&) {
        }
        throw;
      }
    }
    if (decided.outcome == barrier_outcome::ran || decided.outcome == barrier_outcome::empty_cancel) {
      local.commit();  // one branch: a one-phase commit; throws if it did not commit
    } else {
      local.rollback();  // nothing was written
    }
    return decided.outcome;
  }
}

}  // namespace xatm
