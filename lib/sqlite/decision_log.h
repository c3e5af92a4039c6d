// Internal: the TM's durable decision log (DESIGN.md section 5), an SQLite file in WAL mode that
// group-commits decisions and acknowledges each only after the WAL fsync that holds it. Group
// commit is leader/follower: a record() that finds nobody writing writes the batch itself (every
// decision queued by then, its own included); those that arrive meanwhile queue up, and one of
// them leads the next batch. A lone committer thus writes its own record with no thread hand-off.
// A background thread writes completions that no batch took along, and checkpoints. Thread safety: one decision_log per file at a time, across processes too (an flock on
// "<path>.lock"); its calls may come from any number of threads at once, and it may be destroyed
// only once no thread is inside one of them.
//
// The file's custody is log_file.h's, its format log_format.h's, its writing connection
// log_writer.h's.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "core/decision_store.h"
#include "sqlite/log_file.h"
#include "sqlite/log_format.h"
#include "sqlite/log_writer.h"
#include "xatm/result.h"

namespace xatm::detail {

struct decision_log_options {
  std::string path;      // the SQLite file; "<path>.lock" holds the process lock
  std::string tm_id;     // must match the tm_id stored in an existing log
  std::string vfs_name;  // empty: SQLite's default VFS; tests pass a fault-injecting one
};

class decision_log final : public decision_store {
 public:
  // Opens the log at options.path, or creates it (files 0600) when neither it nor its -wal file
  // exists. Refuses, with a message that says what to do, a log that another process (or another
  // decision_log in this one) holds (in_use); a directory writable by group or others, a file
  // that is not an xatm decision log, an unknown schema version or a log of another tm_id
  // (misconfigured); a file that fails `PRAGMA quick_check` and a log whose -wal file vanished
  // after an unclean shutdown (unusable). Nothing refused is ever repaired or recreated: a lost
  // log would turn committed work into presumed aborts. Every successful open durably
  // increments the incarnation, then starts the background thread.
  [[nodiscard]] static open_result<std::unique_ptr<decision_log>> open(const decision_log_options& options);

  // The pid written into "<path>.lock" by the process that holds the log, or nullopt when
  // nobody holds it (or the lock file does not exist). For the recovery tool's messages.
  [[nodiscard]] static result<std::optional<int>> lock_holder(const std::string& path);

  // The tm_id stored in an existing log, read without changing its files (for the recovery tool
  // when the operator did not give --tm-id). It holds the log's lock while it reads, unless
  // another process holds it.
  [[nodiscard]] static result<std::string> stored_tm_id(const std::string& path);

  // Writes what is queued (completions included), stops the background thread, checkpoints
  // and closes.
  // Never throws; failures are logged. A failed log is closed without touching its files.
  ~decision_log() override;

  decision_log(const decision_log&) = delete;
  decision_log& operator=(const decision_log&) = delete;

  std::uint64_t incarnation() const noexcept override { return state_.incarnation; }
  const std::string& incarnation_id() const noexcept override { return state_.incarnation_id; }
  bool is_own_incarnation(std::string_view incarnation) const override;
  std::optional<pinned_identity> pinned(std::string_view rm_name) const override;
  [[nodiscard]] result<void> pin(const pinned_identity& identity) override;
  const std::string& tm_id() const noexcept override { return tm_id_; }
  const std::string& path() const noexcept { return path_; }

  // decision_store::record(), group-committed: it shares one SQLite transaction and one fsync
  // with every decision queued meanwhile. not_written: the write failed with SQLITE_FULL, or the
  // log had failed before this record's batch, which was never written.
  [[nodiscard]] write_result record(const decision_record& decision) override;

  // decision_store::mark_complete(): written with the next batch, by the background thread
  // within about 50 ms, or at close.
  void mark_complete(std::string_view gtrid) override;

  // decision_store::pending(): reads what is committed in the file.
  [[nodiscard]] result<std::vector<decision_record>> pending() const override;

  bool failed() const noexcept override { return failed_.load(std::memory_order_acquire); }
  decision_store_stats stats() const noexcept override;

 private:
  struct queued_decision;  // lives on the stack of the record() caller while it waits

  decision_log(const decision_log_options& options, log_lock lock, log_state state,
               std::unique_ptr<log_writer> writer);
  [[nodiscard]] static open_result<std::pair<log_state, sqlite_handle>> open_database(
      const decision_log_options& options);
  void write_queued(std::unique_lock<std::mutex>& lock);  // needs lock held and writing_ false
  void run_background() noexcept;
  failure fail_for_good(failure cause);  // under mutex_; returns what the failed batch is told
  failure failed_log_failure() const;    // under mutex_: the answer of every call after a failure

  const std::string path_;
  const std::string tm_id_;
  const std::string vfs_name_;
  log_lock lock_;     // held for the object's life
  log_state state_;   // written at open only (its pins moved to pins_)
  std::map<std::string, pinned_identity, std::less<>> pins_;  // guarded by mutex_

  // The writer's state: used only by the thread that holds `writing_` (a leading record(), or the
  // background thread), outside mutex_.
  std::unique_ptr<log_writer> writer_;
  std::vector<batched_decision*> batch_entries_;  // batch_, as the writer takes it
  std::vector<queued_decision*> batch_;     // the batch being written (swapped with the queue)
  std::string batch_completions_;           // its completions (swapped with the queue)

  mutable std::mutex mutex_;
  // Callers of batch n wait on batch_done_[n % 2]: when batch n is written, all of them are woken
  // (they are done) and one caller of batch n + 1 (to lead it).
  std::condition_variable batch_done_[2];
  std::condition_variable token_free_;      // nobody writes any more (for the background thread)
  std::uint64_t next_batch_ = 0;            // the batch queued records join; guarded by mutex_
  std::condition_variable cohort_arrived_;  // the leader's gathering wait is over
  std::condition_variable background_wake_;
  bool writing_ = false;                    // somebody writes a batch or checkpoints; guarded by mutex_
  std::vector<queued_decision*> queued_decisions_;  // guarded by mutex_
  std::string queued_completions_;          // gtrids joined by '\n'; guarded by mutex_
  std::size_t queued_completion_count_ = 0; // guarded by mutex_
  std::size_t gather_target_ = 1;           // see write_queued(); guarded by mutex_
  std::chrono::nanoseconds gather_limit_{0};  // guarded by mutex_
  bool gathering_ = false;                  // guarded by mutex_
  bool checkpoint_wanted_ = false;          // guarded by mutex_
  bool background_idle_ = false;            // waiting for work, to be woken; guarded by mutex_
  bool stopping_ = false;                   // guarded by mutex_
  std::optional<failure> failure_;          // the first write failure; guarded by mutex_
  std::atomic<bool> failed_{false};

  std::atomic<std::uint64_t> decisions_written_{0};
  std::atomic<std::uint64_t> batches_{0};
  std::atomic<std::uint64_t> completions_written_{0};

  std::thread background_;
};

}  // namespace xatm::detail
