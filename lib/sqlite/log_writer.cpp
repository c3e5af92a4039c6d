#include "sqlite/log_writer.h"

#include <sqlite3.h>

#include <utility>

#include "core/logging.h"
#include "sqlite/log_format.h"
#include "sqlite/sqlite_errors.h"

namespace xatm::detail {

namespace {

// Checkpoint once the WAL holds this many frames (SQLite's own default for its automatic one).
constexpr int checkpoint_frames = 1000;

// Steps a prepared statement once and resets it for the next use.
int step_and_reset(sqlite3_stmt* statement) {
  const int code = sqlite3_step(statement);
  (void)sqlite3_reset(statement);  // repeats the step's error, if any, which `code` already has
  return code;
}

}  // namespace

result<std::unique_ptr<log_writer>> log_writer::create(sqlite_handle db, std::string path) {
  std::unique_ptr<log_writer> writer(new log_writer(std::move(db), std::move(path)));
  if (auto prepared = writer->prepare_statements(); !prepared) {
    if (auto closed = writer->close(true); !closed) {
      XATM_LOG(log, error) << "closing decision log " << writer->path_ << ": " << closed.error().message;
    }
    return std::move(prepared).error();
  }
  return writer;
}

result<void> log_writer::prepare_statements() {
  // Replaces SQLite's automatic checkpoint, which would run inside a batch's COMMIT: the store
  // checkpoints between batches, so that no acknowledgement waits for it.
  sqlite3_wal_hook(
      db_.get(),
      [](void* frames, sqlite3*, const char*, int wal_frames) {
        *static_cast<int*>(frames) = wal_frames;
        return SQLITE_OK;
      },
      &wal_frames_);
  struct {
    sqlite_statement* target;
    const char* sql;
  } const statements[] = {
      {&begin_, log_sql::begin},
      {&commit_, log_sql::commit},
      {&insert_, log_sql::insert_decision},
      {&delete_, log_sql::delete_decision},
      {&delete_tcc_, log_sql::delete_tcc_branches},
  };
  for (const auto& [target, sql] : statements) {
    auto statement = prepare(db_.get(), sql, /*persistent=*/true);
    if (!statement) return std::move(statement).error();
    *target = std::move(statement.value());
  }
  return {};
}

write_result log_writer::write_batch(std::span<batched_decision* const> decisions, std::string_view completions) {
  sqlite3* db = db_.get();
  if (const int code = step_and_reset(begin_.get()); code != SQLITE_DONE) {
    return failed_write(db, code, "BEGIN on decision log " + path_ + " failed");
  }
  // Completions before records: a (mistaken) completion queued before its own record can then
  // only leave the decision pending, never delete it.
  std::uint64_t deleted = 0;  // decision rows, counted once the batch commits (the pending gauge)
  for (std::size_t start = 0; start < completions.size();) {
    const std::size_t end = completions.find('\n', start);
    const std::string_view gtrid = completions.substr(start, end - start);
    start = end + 1;
    // The decision and its TCC branch records go in the same transaction (decision_store.h).
    for (sqlite3_stmt* statement : {delete_.get(), delete_tcc_.get()}) {
      bind_text(statement, 1, gtrid);
      if (const int code = step_and_reset(statement); code != SQLITE_DONE) {
        return failed_write(db, code, "writing completions to decision log " + path_ + " failed");
      }
      if (statement == delete_.get()) deleted += static_cast<std::uint64_t>(sqlite3_changes(db));
    }
  }
  for (batched_decision* entry : decisions) {
    const decision_record& decision = *entry->record;
    branches_buffer_.clear();
    for (const std::string& rm_name : decision.branch_rms) {
      if (!branches_buffer_.empty()) branches_buffer_.push_back(',');
      branches_buffer_.append(rm_name);
    }
    // Bound without copying: the caller's strings outlive the step, it waits for this batch.
    bind_text(insert_.get(), 1, decision.gtrid);
    bind_text(insert_.get(), 2, decision_state_name(decision.state));
    bind_text(insert_.get(), 3, branches_buffer_);
    sqlite3_bind_int64(insert_.get(), 4, entry->created_unix_ms);
    const int code = step_and_reset(insert_.get());
    if (code == SQLITE_DONE) continue;
    if (is_primary_key_clash(code)) {
      // A statement-level error: the transaction and the rest of the batch go on. Not written,
      // but the decision already there is the one recovery acts on: unknown.
      entry->outcome =
          write_result(write_outcome::unknown,
                       make_failure(xa_code::duplicate_id,
                                    "decision log " + path_ + " already holds a decision for " + decision.gtrid));
      continue;
    }
    return failed_write(db, code, "writing decisions to decision log " + path_ + " failed");
  }
  // The commit point of every decision in the batch: with synchronous=FULL it returns after the
  // WAL's fsync. If it fails, nothing here knows whether the frames reached the disk.
  if (const int code = step_and_reset(commit_.get()); code != SQLITE_DONE) {
    return failed_write(db, code, "committing decisions to decision log " + path_ + " failed");
  }
  decisions_deleted_.fetch_add(deleted, std::memory_order_relaxed);
  return {};
}

bool log_writer::checkpoint_due() const noexcept { return wal_frames_ >= checkpoint_frames; }

result<void> log_writer::checkpoint() {
  int wal_frames = 0;
  int copied = 0;
  const int code = sqlite3_wal_checkpoint_v2(db_.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &wal_frames, &copied);
  wal_frames_ = 0;  // the hook counts again from the next commit
  // BUSY: a pending() reader is in the way; the WAL merely grows until a later batch's attempt.
  if (code == SQLITE_OK || code == SQLITE_BUSY) return {};
  return sqlite_failure(db_.get(), code, "checkpoint of decision log " + path_ + " failed");
}

result<pinned_identity> log_writer::write_pin(const pinned_identity& identity) {
  pinned_identity stored = identity;
  if (stored.pinned_unix_ms == 0) stored.pinned_unix_ms = now_unix_ms();
  auto insert = prepare(db_.get(), log_sql::pin_identity);
  if (!insert) return std::move(insert).error();
  sqlite3_stmt* statement = insert.value().get();
  bind_text(statement, 1, stored.rm_name);
  bind_text(statement, 2, stored.identity);
  bind_text(statement, 3, stored.description);
  sqlite3_bind_int64(statement, 4, stored.pinned_unix_ms);
  // One statement in autocommit mode: with synchronous=FULL it returns after the WAL's fsync.
  if (const int code = sqlite3_step(statement); code != SQLITE_DONE) {
    return sqlite_failure(db_.get(), code, "pinning the identity of RM " + stored.rm_name + " in " + path_);
  }
  return stored;
}

result<void> log_writer::write_tcc_branch(const tcc_branch_record& branch) {
  auto insert = prepare(db_.get(), log_sql::insert_tcc_branch);
  if (!insert) return std::move(insert).error();
  sqlite3_stmt* statement = insert.value().get();
  bind_text(statement, 1, branch.gtrid);
  sqlite3_bind_int64(statement, 2, branch.branch);
  bind_text(statement, 3, branch.participant);
  sqlite3_bind_blob(statement, 4, branch.payload.data(), static_cast<int>(branch.payload.size()), SQLITE_STATIC);
  sqlite3_bind_int64(statement, 5, branch.created_unix_ms != 0 ? branch.created_unix_ms : now_unix_ms());
  // One statement in autocommit mode: with synchronous=FULL it returns after the WAL's fsync.
  if (const int code = sqlite3_step(statement); code != SQLITE_DONE) {
    return sqlite_failure(db_.get(), code,
                          "recording TCC branch " + std::to_string(branch.branch) + " of " + branch.gtrid + " in " + path_);
  }
  return {};
}

result<void> log_writer::close(bool clean) noexcept {
  if (!db_) return {};
  for (sqlite_statement* statement : {&begin_, &commit_, &insert_, &delete_, &delete_tcc_}) statement->reset();
  result<void> marked;
  if (clean) marked = exec(db_.get(), log_sql::mark_clean);
  // A failed log, or one that could not be marked clean, is left exactly as it is.
  auto closed = close_connection(std::move(db_), clean && marked.ok(), "closing " + path_ + " failed");
  if (!closed) return closed;
  if (clean) XATM_LOG(log, info) << "decision log " << path_ << " closed";
  return marked;
}

}  // namespace xatm::detail
