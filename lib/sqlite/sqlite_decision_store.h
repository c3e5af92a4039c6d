// Internal: the TM's durable decision log (docs/design.md section 5), the SQLite implementation
// of decision_store: a file in WAL mode that acknowledges each decision only after the WAL fsync
// that holds it. It composes the file's custody (log_file.h), its format (log_format.h), the
// connection that writes it (log_writer.h) and the writer queue that group-commits decisions
// (group_commit.h). Thread safety: one sqlite_decision_store per file at a time, across
// processes too (an flock on "<path>.lock"); its calls may come from any number of threads at
// once, and it may be destroyed only once no thread is inside one of them.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/decision_store.h"
#include "sqlite/group_commit.h"
#include "sqlite/log_file.h"
#include "sqlite/log_format.h"
#include "sqlite/log_writer.h"
#include "xatm/result.h"

namespace xatm::detail {

struct sqlite_store_options {
  std::string path;      // the SQLite file; "<path>.lock" holds the process lock
  std::string tm_id;     // must match the tm_id stored in an existing log
  std::string vfs_name;  // empty: SQLite's default VFS; tests pass a fault-injecting one
};

class sqlite_decision_store final : public decision_store {
 public:
  // Opens the log at options.path, or creates it (files 0600) when neither it nor its -wal file
  // exists. Refuses, with a message that says what to do, a log that another process (or another
  // store in this one) holds (in_use); a directory writable by group or others, a file that is
  // not an xatm decision log, an unknown schema version or a log of another tm_id
  // (misconfigured); a file that fails `PRAGMA quick_check` and a log whose -wal file vanished
  // after an unclean shutdown (unusable). Nothing refused is ever repaired or recreated: a lost
  // log would turn committed work into presumed aborts. Every successful open durably
  // increments the incarnation, then starts the writer queue's background thread.
  [[nodiscard]] static open_result<std::unique_ptr<sqlite_decision_store>> open(const sqlite_store_options& options);

  // The pid written into "<path>.lock" by the process that holds the log, or nullopt when
  // nobody holds it (or the lock file does not exist). For the recovery tool's messages.
  [[nodiscard]] static result<std::optional<int>> lock_holder(const std::string& path);

  // The tm_id stored in an existing log, read without changing its files (for the recovery tool
  // when the operator did not give --tm-id). It holds the log's lock while it reads, unless
  // another process holds it.
  [[nodiscard]] static result<std::string> stored_tm_id(const std::string& path);

  // Writes what is queued (completions included), stops the background thread, marks the log
  // clean, checkpoints and closes. Never throws; failures are logged. A failed log is closed
  // without touching its files.
  ~sqlite_decision_store() override;

  sqlite_decision_store(const sqlite_decision_store&) = delete;
  sqlite_decision_store& operator=(const sqlite_decision_store&) = delete;

  std::uint64_t incarnation() const noexcept override { return state_.incarnation; }
  const std::string& incarnation_id() const noexcept override { return state_.incarnation_id; }
  bool is_own_incarnation(std::string_view incarnation) const override;
  std::optional<pinned_identity> pinned(std::string_view rm_name) const override;
  // decision_store::pin(): written by the writer queue as a writer of its own.
  [[nodiscard]] result<void> pin(const pinned_identity& identity) override;
  [[nodiscard]] result<pinned_identity> pin_if_absent(const pinned_identity& identity) override;
  const std::string& tm_id() const noexcept override { return tm_id_; }

  // decision_store::record(), group-committed: it shares one SQLite transaction and one fsync
  // with the decisions queued with it. not_written: the write failed with SQLITE_FULL, or the
  // log had failed before this record's batch, which was never written.
  [[nodiscard]] write_result record(const decision_record& decision) override;

  // decision_store::mark_complete(): written with the next batch, by the background thread
  // within about 50 ms, or at close.
  void mark_complete(std::string_view gtrid) override;

  // decision_store::record_tcc_branch(): written by the writer queue as a writer of its own (one
  // fsync per TCC branch, not shared with a batch).
  [[nodiscard]] write_result record_tcc_branch(const tcc_branch_record& branch) override;
  [[nodiscard]] result<std::vector<tcc_branch_record>> tcc_branches() const override;
  // decision_store::pending(): reads what is committed in the file.
  [[nodiscard]] result<std::vector<decision_record>> pending() const override;

  bool failed() const noexcept override { return queue_->failed(); }
  std::optional<failure> failure_cause() const override { return queue_->failed_earlier(); }
  // The queue's counts, and the decision records the writer's completions deleted.
  decision_store_stats stats() const noexcept override {
    decision_store_stats counts = queue_->stats();
    counts.decisions_deleted = writer_->decisions_deleted();
    return counts;
  }

 private:
  sqlite_decision_store(const sqlite_store_options& options, log_lock lock, log_state state,
                        std::unique_ptr<log_writer> writer);
  [[nodiscard]] static open_result<std::pair<log_state, sqlite_handle>> open_database(
      const sqlite_store_options& options);

  const std::string path_;
  const std::string tm_id_;
  const std::string vfs_name_;
  log_lock lock_;    // held for the object's life
  log_state state_;  // written at open only (its pins moved to pins_)

  mutable std::mutex pins_mutex_;
  std::map<std::string, pinned_identity, std::less<>> pins_;  // guarded by pins_mutex_

  // Used by the writer at the front of queue_'s queue only (and by the destructor once queue_
  // has stopped).
  std::unique_ptr<log_writer> writer_;
  // Declared after writer_: it stops (writing what is queued) before the writer closes.
  std::unique_ptr<group_commit> queue_;
};

}  // namespace xatm::detail
