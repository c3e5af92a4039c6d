#include "sqlite/decision_log.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "core/logging.h"
#include "sqlite/log_file.h"
#include "sqlite/log_format.h"
#include "sqlite/sqlite_connection.h"
#include "xatm/xid.h"

namespace xatm::detail {

namespace {

// How long a completion waits for a forced batch to ride along with before it is written alone.
constexpr auto completion_delay = std::chrono::milliseconds(50);
// The longest a batch's leader waits for the callers of the last batch to come back (see
// write_queued).
constexpr auto max_gather_wait = std::chrono::microseconds(200);

constexpr const char* restart_advice =
    "stop this TM, restart it and let recovery resolve the in-doubt transactions from what the file "
    "holds; do not roll back their branches by hand";

}  // namespace

// A record() caller's entry in the queue. It lives on the caller's stack: the caller blocks
// until its batch is written (`done`).
struct decision_log::queued_decision : batched_decision {
  bool done = false;  // guarded by mutex_
};

decision_log::decision_log(const decision_log_options& options, log_lock lock, log_state state,
                           std::unique_ptr<log_writer> writer)
    : path_(options.path),
      tm_id_(options.tm_id),
      vfs_name_(options.vfs_name),
      lock_(std::move(lock)),
      state_(std::move(state)),
      pins_(std::move(state_.pins)),
      writer_(std::move(writer)) {}

open_result<std::unique_ptr<decision_log>> decision_log::open(const decision_log_options& options) {
  auto misconfigured = [](failure cause) { return store_refusal{open_refusal::misconfigured, std::move(cause)}; };
  if (auto valid = validate_tm_id(options.tm_id); !valid) return misconfigured(std::move(valid).error());
  if (options.path.empty()) return misconfigured(make_failure(xa_code::invalid, "decision log path is empty"));
  if (!options.vfs_name.empty() && !vfs_registered(options.vfs_name)) {
    return misconfigured(
        make_failure(xa_code::invalid, "no SQLite VFS named '" + options.vfs_name + "' is registered"));
  }
  if (auto directory = check_directory(directory_of(options.path)); !directory) return std::move(directory).refused();
  auto lock = log_lock::acquire(options.path);
  if (!lock) return std::move(lock).refused();
  auto opened = open_database(options);
  if (!opened) return std::move(opened).refused();
  auto& [state, db] = opened.value();
  auto writer = log_writer::create(std::move(db), options.path);
  if (!writer) return store_refusal{open_refusal::unusable, std::move(writer).error()};
  std::unique_ptr<decision_log> log(
      new decision_log(options, std::move(lock).value(), std::move(state), std::move(writer).value()));
  log->background_ = std::thread([raw = log.get()] { raw->run_background(); });
  XATM_LOG(log, info) << "decision log " << options.path << " open: tm_id " << log->tm_id_ << ", incarnation "
                      << log->state_.incarnation;
  return log;
}

// Under the log's lock: creates the log when neither it nor its -wal exists, checks the files'
// modes, and takes a new incarnation (log_format.h). Every refusal after the connection opened
// leaves the files exactly as found: no checkpoint, and the empty -wal/-shm SQLite creates on
// the first read removed again, so that the next open sees what this one saw.
open_result<std::pair<log_state, sqlite_handle>> decision_log::open_database(const decision_log_options& options) {
  const std::string& path = options.path;
  auto unusable = [](failure cause) { return store_refusal{open_refusal::unusable, std::move(cause)}; };
  auto exists = file_exists(path);
  if (!exists) return unusable(std::move(exists).error());
  auto found = side_files::note(path);
  if (!found) return unusable(std::move(found).error());
  if (!exists.value()) {
    if (found.value().wal_existed()) {
      return unusable(make_failure(xa_code::rm_error, path + "-wal exists but " + path +
                                                          " does not: the log was moved or deleted; " +
                                                          never_recreate_advice));
    }
    auto created = create_by_rename(path, [&options](const std::string& building) {
      return write_new_log(building, options.tm_id, options.vfs_name);
    });
    if (!created) return unusable(std::move(created).error());
    XATM_LOG(log, info) << "created decision log " << path << " for tm_id " << options.tm_id;
  }
  if (auto checked = check_file_modes(path); !checked) return std::move(checked).refused();
  auto db = open_connection(path, options.vfs_name, false);
  if (!db) return unusable(std::move(db).error());

  auto refuse = [&](store_refusal refusal) -> store_refusal {
    if (auto closed = close_connection(std::move(db).value(), false, "closing refused " + path); !closed) {
      XATM_LOG(log, error) << closed.error().message;
    }
    found.value().remove_new_empty();
    XATM_LOG(log, error) << refusal.cause.message;
    return refusal;
  };
  // An empty -wal holds no decision: the unclean-shutdown check counts it as missing, or an
  // empty one SQLite made for a reader (an operator's sqlite3 shell) would hide the loss.
  auto state = take_incarnation(db.value().get(), path, options.tm_id, found.value().wal_had_content());
  if (!state) return refuse(std::move(state).refused());
  if (auto modes = verify_file_modes(path); !modes) return refuse({open_refusal::unusable, std::move(modes).error()});
  return std::pair{std::move(state).value(), std::move(db).value()};
}

result<std::optional<int>> decision_log::lock_holder(const std::string& path) { return log_lock::holder(path); }

result<std::string> decision_log::stored_tm_id(const std::string& path) {
  // Even a read-only connection makes SQLite create an empty -wal and a -shm (with the main
  // file's mode) when they are missing. Under the log's lock nobody else can be creating them,
  // so this read removes what it created and leaves the files as it found them. A log in use is
  // read without the lock: its owner has both files anyway.
  auto lock = log_lock::acquire(path);
  if (!lock && lock.refusal() != open_refusal::in_use) return failure(lock.error());
  auto found = side_files::note(path);
  auto tm_id = read_stored_tm_id(path);
  // Best effort: an empty -wal left behind holds nothing, and open() counts it as missing.
  if (lock && found) found.value().remove_new_empty();
  return tm_id;
}

decision_log::~decision_log() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  background_wake_.notify_one();
  if (background_.joinable()) background_.join();
  if (auto closed = writer_->close(!failed()); !closed) {
    XATM_LOG(log, error) << "closing decision log " << path_ << ": " << closed.error().message;
  }
}

write_result decision_log::record(const decision_record& decision) {
  // A malformed record is a programming error; nothing of it is written.
  if (!is_gtrid_of(decision.gtrid, tm_id_)) {
    return {write_outcome::not_written, make_failure(xa_code::invalid, "decision log: '" + decision.gtrid +
                                                                           "' is not a gtrid of tm_id " + tm_id_)};
  }
  if (decision.branch_rms.empty()) {
    return {write_outcome::not_written,
            make_failure(xa_code::invalid, "decision for " + decision.gtrid + " names no branch")};
  }
  for (const std::string& rm_name : decision.branch_rms) {
    if (auto valid = validate_rm_name(rm_name); !valid) {
      failure cause = std::move(valid).error();
      cause.message = "decision for " + decision.gtrid + ": " + cause.message;
      return {write_outcome::not_written, std::move(cause)};
    }
  }
  queued_decision entry;
  entry.record = &decision;
  entry.created_unix_ms = decision.created_unix_ms != 0 ? decision.created_unix_ms : now_unix_ms();

  std::unique_lock lock(mutex_);
  if (failure_) return {write_outcome::not_written, failed_log_failure()};
  if (stopping_) {
    return {write_outcome::not_written, make_failure(xa_code::rm_error, "decision log " + path_ + " is closing")};
  }
  queued_decisions_.push_back(&entry);
  const std::uint64_t batch = next_batch_;  // the next batch takes everything queued
  if (gathering_ && queued_decisions_.size() >= gather_target_) cohort_arrived_.notify_one();
  // Follow the batch being written, or lead the next one: whoever finds nobody writing writes
  // everything queued, this entry included.
  while (!entry.done) {
    if (writing_) {
      batch_done_[batch % 2].wait(lock);
    } else {
      write_queued(lock);
    }
  }
  return std::move(entry.outcome);
}

void decision_log::mark_complete(std::string_view gtrid) {
  if (!is_gtrid_of(gtrid, tm_id_)) {
    // Nothing to undo: a gtrid of another shape cannot be in this log.
    XATM_LOG(log, error) << "mark_complete: '" << gtrid << "' is not a gtrid of tm_id " << tm_id_ << "; ignored";
    return;
  }
  std::lock_guard lock(mutex_);
  if (failure_ || stopping_) return;  // a failed log writes nothing; recovery finds it pending
  queued_completions_.append(gtrid).push_back('\n');
  ++queued_completion_count_;
  if (background_idle_) background_wake_.notify_one();
}

// Writes every queued decision and completion in one SQLite transaction (one fsync), then wakes
// the callers. Called with mutex_ held and nobody writing; returns with mutex_ held again.
void decision_log::write_queued(std::unique_lock<std::mutex>& lock) {
  writing_ = true;
  // Committers run in two cohorts: while one batch is fsynced the callers of the previous one
  // queue up for the next. Left alone, each batch holds half of them. Waiting briefly (at most
  // half a batch's write time) for the cohort just released merges the two: half the fsyncs. A
  // lone committer never waits: its target is itself.
  if (!queued_decisions_.empty() && queued_decisions_.size() < gather_target_ && !stopping_) {
    gathering_ = true;
    cohort_arrived_.wait_for(lock, gather_limit_,
                             [this] { return stopping_ || queued_decisions_.size() >= gather_target_; });
    gathering_ = false;
  }
  const std::uint64_t batch = next_batch_++;  // records queued from now on join the next one
  batch_.swap(queued_decisions_);
  batch_completions_.swap(queued_completions_);
  const std::size_t completion_count = std::exchange(queued_completion_count_, 0);
  const bool failed_before = failure_.has_value();
  lock.unlock();

  // Nothing below may leave the batch's callers waiting: an exception (from a log sink, an
  // allocation) counts as a failure of the log like any other.
  std::optional<write_result> batch_failure;
  bool durable_batch = false;
  bool unexpected = false;
  bool checkpoint_due = false;
  std::chrono::nanoseconds write_time{0};
  if (!failed_before) {
    try {
      const auto write_start = std::chrono::steady_clock::now();
      batch_entries_.assign(batch_.begin(), batch_.end());
      write_result written = writer_->write_batch(batch_entries_, batch_completions_);
      write_time = std::chrono::steady_clock::now() - write_start;
      if (written) {
        durable_batch = true;
        std::uint64_t durable = 0;
        for (const queued_decision* entry : batch_) durable += entry->outcome ? 1 : 0;
        decisions_written_.fetch_add(durable, std::memory_order_relaxed);
        completions_written_.fetch_add(completion_count, std::memory_order_relaxed);
        batches_.fetch_add(1, std::memory_order_relaxed);
        checkpoint_due = writer_->checkpoint_due();
        if (durable > 0 || completion_count > 0) {
          XATM_LOG(log, debug) << "batch " << batch << ": " << durable << " decisions, " << completion_count
                               << " completions durable";
        }
      } else {
        batch_failure = std::move(written);
      }
    } catch (...) {
      unexpected = !durable_batch && !batch_failure;  // a durable batch stays durable if its log line threw
    }
  }

  lock.lock();
  try {
    if (failed_before) {
      // Never written: the log had failed before.
      const write_result answer(write_outcome::not_written, failed_log_failure());
      for (queued_decision* entry : batch_) entry->outcome = answer;
    } else if (batch_failure || unexpected) {
      write_result written =
          batch_failure ? std::move(*batch_failure)
                        : write_result(write_outcome::unknown, make_failure(xa_code::rm_error,
                                                                            "unexpected exception while writing "
                                                                            "to decision log " + path_));
      const write_result answer(written.outcome(), fail_for_good(std::move(written).error()));
      for (queued_decision* entry : batch_) entry->outcome = answer;
    }
  } catch (...) {
    // Out of memory while describing the failure: the callers still get one, without words.
    failure bare;
    bare.code = xa_code::rm_error;
    if (!failure_) {
      failure_ = bare;
      failed_.store(true, std::memory_order_release);
    }
    for (queued_decision* entry : batch_) {
      if (entry->outcome) entry->outcome = write_result(write_outcome::unknown, bare);
    }
  }
  for (queued_decision* entry : batch_) entry->done = true;
  if (!batch_.empty()) {
    gather_target_ = queued_decisions_.size() + batch_.size();
    gather_limit_ = std::min<std::chrono::nanoseconds>(max_gather_wait, write_time / 2);
  }
  batch_.clear();
  batch_completions_.clear();
  writing_ = false;
  if (checkpoint_due) {
    checkpoint_wanted_ = true;
    background_wake_.notify_one();
  }
  // Wakes this batch's callers, and one caller of the next batch to lead it. After unlocking, so
  // that the woken do not queue up on a mutex still held.
  lock.unlock();
  batch_done_[batch % 2].notify_all();
  batch_done_[(batch + 1) % 2].notify_one();
  token_free_.notify_one();
  lock.lock();
}

// Completions no batch took along within completion_delay, checkpoints, and the last
// completions at close.
void decision_log::run_background() noexcept {
  std::unique_lock lock(mutex_);
  for (;;) {
    background_idle_ = true;
    background_wake_.wait(lock, [this] { return stopping_ || checkpoint_wanted_ || queued_completion_count_ > 0; });
    background_idle_ = false;
    if (!stopping_ && !checkpoint_wanted_) {
      // Only completions: they are not forced, so let them ride with the decisions' batches.
      // Only when no batch was written for completion_delay are they written alone.
      const std::uint64_t batches_before = batches_.load(std::memory_order_relaxed);
      background_wake_.wait_for(lock, completion_delay, [this] { return stopping_ || checkpoint_wanted_; });
      if (!stopping_ && !checkpoint_wanted_ && batches_.load(std::memory_order_relaxed) != batches_before) continue;
    }
    token_free_.wait(lock, [this] { return !writing_; });
    if (queued_completion_count_ > 0 && !failure_) write_queued(lock);  // ends with mutex_ held
    if (checkpoint_wanted_ && !writing_ && !failure_) {
      checkpoint_wanted_ = false;
      writing_ = true;
      lock.unlock();
      auto checkpointed = writer_->checkpoint();
      lock.lock();
      writing_ = false;
      if (!checkpointed && !failure_) (void)fail_for_good(std::move(checkpointed).error());  // nobody waits for it
      batch_done_[next_batch_ % 2].notify_one();  // a caller queued meanwhile leads the next batch
    }
    checkpoint_wanted_ = checkpoint_wanted_ && !failure_;
    if (stopping_ && !writing_ && (queued_completion_count_ == 0 || failure_)) return;
  }
}
failure decision_log::fail_for_good(failure cause) {
  cause.message += ". The decision log is failed for good and accepts no more decisions; decisions not "
                   "acknowledged as durable may or may not be: ";
  cause.message += restart_advice;
  XATM_LOG(log, error) << cause.message;
  failure_ = cause;
  failed_.store(true, std::memory_order_release);
  queued_completions_.clear();  // a failed log writes nothing more; recovery finds them pending
  queued_completion_count_ = 0;
  return cause;
}

failure decision_log::failed_log_failure() const {
  failure cause = *failure_;
  cause.message = "decision log " + path_ + " failed earlier and accepts no more decisions (" + failure_->message +
                  ")";
  return cause;
}

result<std::vector<decision_record>> decision_log::pending() const {
  {
    std::lock_guard lock(mutex_);
    if (failure_) return failed_log_failure();
  }
  return read_decisions(path_, vfs_name_);
}

bool decision_log::is_own_incarnation(std::string_view incarnation) const {
  return state_.is_own_incarnation(incarnation);
}

std::optional<pinned_identity> decision_log::pinned(std::string_view rm_name) const {
  std::lock_guard lock(mutex_);
  auto found = pins_.find(rm_name);
  if (found == pins_.end()) return std::nullopt;
  return found->second;
}

result<void> decision_log::pin(const pinned_identity& identity) {
  if (auto valid = validate_rm_name(identity.rm_name); !valid) return std::move(valid).error();
  std::unique_lock lock(mutex_);
  if (failure_) return failed_log_failure();
  if (stopping_) return make_failure(xa_code::rm_error, "decision log " + path_ + " is closing");
  // The writer's connection is used by whoever holds `writing_`: wait for it, as a checkpoint
  // does. Pins are rare (once per RM name for the log's life, and an operator's re-pin).
  token_free_.wait(lock, [this] { return !writing_; });
  writing_ = true;
  lock.unlock();
  auto written = writer_->write_pin(identity);
  lock.lock();
  writing_ = false;
  if (written) pins_.insert_or_assign(identity.rm_name, written.value());
  lock.unlock();
  batch_done_[next_batch_ % 2].notify_one();  // a caller queued meanwhile leads the next batch
  token_free_.notify_one();
  if (!written) return std::move(written).error();
  return {};
}

decision_store_stats decision_log::stats() const noexcept {
  decision_store_stats result;
  result.decisions_written = decisions_written_.load(std::memory_order_relaxed);
  result.batches = batches_.load(std::memory_order_relaxed);
  result.completions_written = completions_written_.load(std::memory_order_relaxed);
  return result;
}

}  // namespace xatm::detail
