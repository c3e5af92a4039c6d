// Internal: the decision log's writer queue (docs/design.md sections 5 and 8), in the shape of
// leveldb's DBImpl::Write. Every record() joins a queue of writers, each waiting on its own
// condition variable; the writer at the front is the leader: it takes the decisions queued
// behind it (a bounded batch) and every queued completion, writes them through the sink in one
// durable transaction outside the mutex, answers the batch, wakes its writers and then the new
// front. A lone committer so writes its own record with no thread hand-off; concurrent
// committers' cohorts are merged by a short wait of the leader (see lead()). A background thread
// joins the queue to write completions no batch took along (within completion_delay) and to
// checkpoint. The first failed write fails the queue for good. Thread safety: any number of
// threads may call record(), mark_complete() and exclusive() at once; the object may be
// destroyed only once none is inside one of them.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/decision_store.h"
#include "xatm/result.h"

namespace xatm::detail {

// One decision of a batch, as the sink sees it. It lives with the record() caller, who waits
// until its batch is answered, so the sink may use the caller's strings without copying.
struct batched_decision {
  const decision_record* record = nullptr;
  std::int64_t created_unix_ms = 0;  // the record's own stamp, or when it was queued
  write_result outcome;              // durable unless the sink says otherwise for this one decision
};

class group_commit {
 public:
  // Where batches go (the log's writing connection). Called by one thread at a time: the writer
  // at the front of the queue, outside the queue's mutex.
  class sink {
   public:
    virtual ~sink() = default;
    // Writes the deletes of `completions` (gtrids, each followed by '\n') and the inserts of
    // `decisions` in one transaction, durable when it returns durable. A decision the sink
    // refuses alone (a gtrid already there) gets its own outcome while the batch goes on. A
    // failed batch answers not_written (nothing of it can be durable) or unknown (it may be).
    [[nodiscard]] virtual write_result write_batch(std::span<batched_decision* const> decisions,
                                                   std::string_view completions) = 0;
    [[nodiscard]] virtual bool checkpoint_due() const noexcept = 0;
    [[nodiscard]] virtual result<void> checkpoint() = 0;
  };

  // `log_name` names the log in messages. Starts the background thread.
  group_commit(sink& target, std::string log_name);
  // Writes the completions still queued, then stops the background thread; from then on every
  // call is refused as closing. Idempotent; the destructor calls it.
  void stop() noexcept;
  ~group_commit();
  group_commit(const group_commit&) = delete;
  group_commit& operator=(const group_commit&) = delete;

  // Queues a decision (already validated) and returns once its batch is answered: durable, or
  // what decision_store::record() says of a failure (core/decision_store.h). After the first
  // failed write every call answers not_written: "failed earlier".
  [[nodiscard]] write_result record(const decision_record& decision, std::int64_t created_unix_ms);

  // Queues a completion (gtrid); it rides along with the next batch, or the background thread
  // writes it within completion_delay, or at close. Ignored once failed or closing.
  void mark_complete(std::string_view gtrid);

  // Runs `work` as a writer of its own: at the front of the queue, with no batch, outside the
  // mutex (a pin uses the sink's connection). Refused once failed ("failed earlier") or closing.
  // Its failure fails the queue for good when `fatal` (a write on the commit path, as a batch's
  // is: a TCC branch record), and not otherwise (a pin).
  [[nodiscard]] result<void> exclusive(const std::function<result<void>()>& work, bool fatal = false);

  // What every call answers after the first failed write; nullopt while none failed.
  [[nodiscard]] std::optional<failure> failed_earlier() const;
  bool failed() const noexcept { return failed_.load(std::memory_order_acquire); }
  decision_store_stats stats() const noexcept;

 private:
  struct writer;

  // Each needs mutex_ held through `lock` (and returns with it held).
  void wait_for_front(std::unique_lock<std::mutex>& lock, writer& self);  // until done or at the front
  void lead(std::unique_lock<std::mutex>& lock, writer& leader);          // leader at the front
  [[nodiscard]] result<void> run_exclusive(std::unique_lock<std::mutex>& lock,
                                           const std::function<result<void>()>& work, bool fatal);
  void run_background() noexcept;
  failure fail_for_good(failure cause);                  // under mutex_; what the failed batch is told
  failure failed_log_failure() const;                    // under mutex_: the answer after a failure
  [[nodiscard]] std::optional<failure> refusal() const;  // under mutex_: why no writer may join now

  sink& sink_;
  const std::string log_name_;

  mutable std::mutex mutex_;
  std::deque<writer*> writers_;               // the queue; its front is the leader; guarded by mutex_
  std::size_t queued_decisions_ = 0;          // decision writers in writers_; guarded by mutex_
  std::size_t gather_target_ = 1;             // see lead(); guarded by mutex_
  std::chrono::nanoseconds gather_limit_{0};  // see lead(); guarded by mutex_
  bool gathering_ = false;                    // the front waits for gather_target_; guarded by mutex_
  std::string queued_completions_;            // gtrids joined by '\n'; guarded by mutex_
  std::size_t queued_completion_count_ = 0;   // guarded by mutex_
  bool checkpoint_wanted_ = false;            // guarded by mutex_
  bool background_idle_ = false;              // waiting for work, to be woken; guarded by mutex_
  bool stopping_ = false;                     // guarded by mutex_
  std::optional<failure> failure_;            // the first write failure; guarded by mutex_
  std::condition_variable background_wake_;   // waited on under mutex_ by the background thread
  std::atomic<bool> failed_{false};           // failure_.has_value(), readable without mutex_

  // The leader's: used only by the writer at the front of writers_, outside mutex_ while it
  // writes (the queue hands them from leader to leader under mutex_).
  std::vector<batched_decision*> batch_;
  std::vector<writer*> batch_writers_;
  std::string batch_completions_;

  std::atomic<std::uint64_t> decisions_written_{0};
  std::atomic<std::uint64_t> batches_{0};
  std::atomic<std::uint64_t> completions_written_{0};

  std::thread background_;  // last: started once everything above is constructed
};

}  // namespace xatm::detail
