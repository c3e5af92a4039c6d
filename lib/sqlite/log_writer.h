// Internal: the decision log's writing connection (docs/design.md section 5). It writes a batch
// of decisions and completions as one SQLite transaction whose COMMIT returns after the WAL's
// fsync, pins RM identities, checkpoints between batches, and marks the log clean at close. Not
// thread-safe: one thread at a time uses it, the writer at the front of the group commit queue
// (group_commit.h), or the store while it opens and closes.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "core/decision_store.h"
#include "sqlite/group_commit.h"
#include "sqlite/sqlite_connection.h"
#include "xatm/result.h"

namespace xatm::detail {

class log_writer final : public group_commit::sink {
 public:
  // Takes over the connection of an open that took its incarnation (log_format.h) and prepares
  // the statements of a batch. A failure closes the connection, marking the log clean.
  [[nodiscard]] static result<std::unique_ptr<log_writer>> create(sqlite_handle db, std::string path);

  // Closes the connection without a checkpoint unless close() did already.
  ~log_writer() override = default;
  log_writer(const log_writer&) = delete;
  log_writer& operator=(const log_writer&) = delete;

  // group_commit::sink: the deletes of `completions` (decision and TCC branch records), then the inserts of `decisions`, in one
  // transaction whose COMMIT returns after the WAL's fsync (synchronous=FULL). A decision whose
  // gtrid the log already holds gets its own outcome (unknown, xa_code::duplicate_id) while the
  // batch goes on. A failed batch answers not_written (SQLITE_FULL: nothing of it reached the
  // file) or unknown (it may have).
  [[nodiscard]] write_result write_batch(std::span<batched_decision* const> decisions,
                                         std::string_view completions) override;

  // Whether the WAL has grown enough that a checkpoint is due (after a batch's callers are
  // woken rather than inside its COMMIT, so that no acknowledgement waits for a checkpoint).
  [[nodiscard]] bool checkpoint_due() const noexcept override;
  // A passive checkpoint: a pending() reader in the way only lets the WAL grow until a later one.
  [[nodiscard]] result<void> checkpoint() override;

  // Pins an RM name's identity in autocommit mode: durable (WAL fsync) when it returns. Answers
  // the pin as stored, its time stamped.
  [[nodiscard]] result<pinned_identity> write_pin(const pinned_identity& identity);

  // Inserts a TCC branch record in autocommit mode: durable (WAL fsync) when it returns.
  [[nodiscard]] result<void> write_tcc_branch(const tcc_branch_record& branch);

  // `clean`: marks the log clean in the WAL and closes; closing the last connection then
  // checkpoints the WAL into the main file and deletes it (a crash in between leaves the WAL,
  // which is all a later open needs). Not clean (a failed log): closed without touching its files.
  [[nodiscard]] result<void> close(bool clean) noexcept;

  // Decision records deleted by completions in committed batches (readable from any thread).
  std::uint64_t decisions_deleted() const noexcept { return decisions_deleted_.load(std::memory_order_relaxed); }

 private:
  log_writer(sqlite_handle db, std::string path) : path_(std::move(path)), db_(std::move(db)) {}
  [[nodiscard]] result<void> prepare_statements();

  const std::string path_;
  sqlite_handle db_;
  sqlite_statement begin_;  // the statements after the connection: finalized before it closes
  sqlite_statement commit_;
  sqlite_statement insert_;
  sqlite_statement delete_;
  sqlite_statement delete_tcc_;
  std::string branches_buffer_;  // reused so that a record costs no allocation
  int wal_frames_ = 0;           // frames in the WAL after the last commit (the WAL hook's count)
  std::atomic<std::uint64_t> decisions_deleted_{0};
};

}  // namespace xatm::detail
