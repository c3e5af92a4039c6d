#include "sqlite/group_commit.h"

#include <algorithm>
#include <utility>

#include "core/logging.h"

namespace xatm::detail {

namespace {

// How long a completion waits for a forced batch to ride along with before it is written alone.
constexpr auto completion_delay = std::chrono::milliseconds(50);
// The most decisions one batch takes (leveldb bounds its groups too). Every decision of a batch
// waits for all of it; in practice the queue never holds more than the TM's committing threads.
constexpr std::size_t max_batch_decisions = 512;
// The longest a leader waits for the writers of the last batch to come back (see lead()).
constexpr auto max_gather_wait = std::chrono::microseconds(200);

constexpr const char* restart_advice =
    "stop this TM, restart it and let recovery resolve the in-doubt transactions from what the file "
    "holds; do not roll back their branches by hand";

}  // namespace

// A thread waiting in the queue. It lives on that thread's stack: the thread does not return
// before its writer is done, or has led and left the front.
struct group_commit::writer {
  enum class job : std::uint8_t {
    decision,    // a record(): batched with the decisions around it
    background,  // the background thread: writes queued completions (and leads the decisions behind it)
    exclusive,   // exclusive(): runs alone
  };
  job kind = job::decision;
  batched_decision decision;     // job::decision; its outcome is set by the leader before `done`
  bool done = false;             // guarded by mutex_: answered by another writer's batch
  std::condition_variable wake;  // waited on under mutex_: done, or now at the front
};

group_commit::group_commit(sink& target, std::string log_name)
    : sink_(target), log_name_(std::move(log_name)), background_([this] { run_background(); }) {}

void group_commit::stop() noexcept {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  background_wake_.notify_one();
  if (background_.joinable()) background_.join();
}

group_commit::~group_commit() { stop(); }

std::optional<failure> group_commit::refusal() const {
  if (failure_) return failed_log_failure();
  if (stopping_) return make_failure(xa_code::rm_error, "decision log " + log_name_ + " is closing");
  return std::nullopt;
}

write_result group_commit::record(const decision_record& decision, std::int64_t created_unix_ms) {
  writer self;
  self.decision.record = &decision;
  self.decision.created_unix_ms = created_unix_ms;
  std::unique_lock lock(mutex_);
  // Nothing of it can reach the file: the log failed before, or is closing.
  if (auto refused = refusal()) return {write_outcome::not_written, std::move(*refused)};
  writers_.push_back(&self);
  ++queued_decisions_;
  if (gathering_ && queued_decisions_ >= gather_target_) writers_.front()->wake.notify_one();
  wait_for_front(lock, self);
  if (!self.done) lead(lock, self);
  return std::move(self.decision.outcome);
}

void group_commit::mark_complete(std::string_view gtrid) {
  std::lock_guard lock(mutex_);
  if (failure_ || stopping_) return;  // a failed log writes nothing; recovery finds it pending
  queued_completions_.append(gtrid).push_back('\n');
  ++queued_completion_count_;
  if (background_idle_) background_wake_.notify_one();
}

result<void> group_commit::exclusive(const std::function<result<void>()>& work, bool fatal) {
  std::unique_lock lock(mutex_);
  if (auto refused = refusal()) return std::move(*refused);
  return run_exclusive(lock, work, fatal);
}

result<void> group_commit::run_exclusive(std::unique_lock<std::mutex>& lock,
                                         const std::function<result<void>()>& work, bool fatal) {
  writer self;
  self.kind = writer::job::exclusive;
  writers_.push_back(&self);
  wait_for_front(lock, self);  // no batch takes an exclusive writer along: it always reaches the front
  result<void> outcome;
  if (failure_) {
    outcome = failed_log_failure();  // it failed while this one waited: the sink's file is off limits
  } else {
    lock.unlock();
    try {
      outcome = work();
    } catch (...) {
      outcome = make_failure(xa_code::rm_error, "unexpected exception while writing to decision log " + log_name_);
    }
    lock.lock();
    if (!outcome && fatal) outcome = fail_for_good(std::move(outcome).error());
  }
  writers_.pop_front();
  if (!writers_.empty()) writers_.front()->wake.notify_one();
  return outcome;
}

void group_commit::wait_for_front(std::unique_lock<std::mutex>& lock, writer& self) {
  self.wake.wait(lock, [&] { return self.done || writers_.front() == &self; });
}

// The leader's turn: the group is the leader and the decisions queued right behind it, up to
// max_batch_decisions (a writer with another job ends it: it leads next). One transaction, one
// fsync, outside the mutex; then every writer of the group is answered and woken, and so is the
// new front. Signalled under the mutex, as leveldb does: a woken writer may return and take its
// condition variable with it as soon as the mutex is free.
void group_commit::lead(std::unique_lock<std::mutex>& lock, writer& leader) {
  // Committers run in two cohorts: while one batch is fsynced the writers of the previous one
  // come back and queue up for the next. Left alone, each batch holds half of them. Waiting
  // briefly (at most half a batch's write time) for the cohort just answered merges the two:
  // half the fsyncs (xatm-decision-log-bench, 16 and 64 committers). A lone committer never
  // waits: its target is itself.
  if (queued_decisions_ > 0 && queued_decisions_ < gather_target_ && !stopping_) {
    gathering_ = true;
    leader.wake.wait_for(lock, gather_limit_, [this] { return stopping_ || queued_decisions_ >= gather_target_; });
    gathering_ = false;
  }
  batch_.clear();
  batch_writers_.clear();
  for (writer* queued : writers_) {
    if (queued != &leader && (queued->kind != writer::job::decision || batch_.size() >= max_batch_decisions)) break;
    batch_writers_.push_back(queued);
    if (queued->kind == writer::job::decision) batch_.push_back(&queued->decision);
  }
  batch_completions_.swap(queued_completions_);
  const std::size_t completion_count = std::exchange(queued_completion_count_, 0);
  const bool failed_before = failure_.has_value();
  queued_decisions_ -= batch_.size();
  lock.unlock();

  // Nothing below may leave the group waiting: an exception (from a log sink, an allocation)
  // counts as a failure of the log like any other.
  std::optional<write_result> batch_failure;
  bool durable_batch = false;
  bool unexpected = false;
  bool checkpoint_due = false;
  std::chrono::nanoseconds write_time{0};
  if (!failed_before && (!batch_.empty() || completion_count > 0)) {
    try {
      const auto write_start = std::chrono::steady_clock::now();
      write_result written = sink_.write_batch(batch_, batch_completions_);
      write_time = std::chrono::steady_clock::now() - write_start;
      if (written) {
        durable_batch = true;
        std::uint64_t durable = 0;
        for (const batched_decision* entry : batch_) durable += entry->outcome ? 1 : 0;
        decisions_written_.fetch_add(durable, std::memory_order_relaxed);
        completions_written_.fetch_add(completion_count, std::memory_order_relaxed);
        const std::uint64_t batch = batches_.fetch_add(1, std::memory_order_relaxed);
        checkpoint_due = sink_.checkpoint_due();
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
      // Never written: the log had failed before (a decision queued behind a failed batch).
      const write_result answer(write_outcome::not_written, failed_log_failure());
      for (batched_decision* entry : batch_) entry->outcome = answer;
    } else if (batch_failure || unexpected) {
      write_result written =
          batch_failure ? std::move(*batch_failure)
                        : write_result(write_outcome::unknown, make_failure(xa_code::rm_error,
                                                                            "unexpected exception while writing "
                                                                            "to decision log " +
                                                                                log_name_));
      const write_result answer(written.outcome(), fail_for_good(std::move(written).error()));
      for (batched_decision* entry : batch_) entry->outcome = answer;
    }
  } catch (...) {
    // Out of memory while describing the failure: the group still gets one, without words.
    failure bare;
    bare.code = xa_code::rm_error;
    if (!failure_) {
      failure_ = bare;
      failed_.store(true, std::memory_order_release);
    }
    for (batched_decision* entry : batch_) {
      if (entry->outcome) entry->outcome = write_result(write_outcome::unknown, bare);
    }
  }
  batch_completions_.clear();
  if (!batch_.empty()) {
    gather_target_ = queued_decisions_ + batch_.size();
    gather_limit_ = std::min<std::chrono::nanoseconds>(max_gather_wait, write_time / 2);
  }
  if (checkpoint_due && !failure_) {
    checkpoint_wanted_ = true;
    background_wake_.notify_one();
  }
  writers_.erase(writers_.begin(), writers_.begin() + static_cast<std::ptrdiff_t>(batch_writers_.size()));
  for (writer* answered : batch_writers_) {
    if (answered == &leader) continue;
    answered->done = true;
    answered->wake.notify_one();
  }
  if (!writers_.empty()) writers_.front()->wake.notify_one();
}

// Completions no batch took along within completion_delay, checkpoints, and the last
// completions at close. It queues like any writer, so it never writes beside a leader.
void group_commit::run_background() noexcept {
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
    if (queued_completion_count_ > 0 && !failure_) {
      writer self;
      self.kind = writer::job::background;
      writers_.push_back(&self);
      wait_for_front(lock, self);  // no batch takes it along either
      lead(lock, self);            // ends with mutex_ held
    }
    if (checkpoint_wanted_ && !failure_) {
      checkpoint_wanted_ = false;
      auto checkpointed = run_exclusive(lock, [this] { return sink_.checkpoint(); }, /*fatal=*/false);
      if (!checkpointed && !failure_) (void)fail_for_good(std::move(checkpointed).error());  // nobody waits for it
    }
    checkpoint_wanted_ = checkpoint_wanted_ && !failure_;
    if (stopping_ && (queued_completion_count_ == 0 || failure_)) return;
  }
}

failure group_commit::fail_for_good(failure cause) {
  cause.message +=
      ". The decision log is failed for good and accepts no more decisions; decisions not "
      "acknowledged as durable may or may not be: ";
  cause.message += restart_advice;
  XATM_LOG(log, error) << cause.message;
  failure_ = cause;
  failed_.store(true, std::memory_order_release);
  queued_completions_.clear();  // a failed log writes nothing more; recovery finds them pending
  queued_completion_count_ = 0;
  return cause;
}

failure group_commit::failed_log_failure() const {
  failure cause = *failure_;
  cause.message =
      "decision log " + log_name_ + " failed earlier and accepts no more decisions (" + failure_->message + ")";
  return cause;
}

std::optional<failure> group_commit::failed_earlier() const {
  std::lock_guard lock(mutex_);
  if (!failure_) return std::nullopt;
  return failed_log_failure();
}

decision_store_stats group_commit::stats() const noexcept {
  decision_store_stats result;
  result.decisions_written = decisions_written_.load(std::memory_order_relaxed);
  result.batches = batches_.load(std::memory_order_relaxed);
  result.completions_written = completions_written_.load(std::memory_order_relaxed);
  return result;
}

}  // namespace xatm::detail
