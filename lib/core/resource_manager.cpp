// The per-branch XA state machine, shared by every adapter. Adapters only send statements and
// read answers; which verb is legal when, and what state a verb's answer leads to, lives here.
#include "core/resource_manager.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <vector>

#include "core/logging.h"

namespace xatm {

const char* branch_state_name(branch_state state) noexcept {
  switch (state) {
    case branch_state::idle: return "idle";
    case branch_state::active: return "active";
    case branch_state::ended: return "ended";
    case branch_state::rollback_only: return "rollback-only";
    case branch_state::prepared: return "prepared";
  }
  return "unknown";
}

const char* xa_verb_name(xa_verb verb) noexcept {
  switch (verb) {
    case xa_verb::start: return "start";
    case xa_verb::end: return "end";
    case xa_verb::end_failed: return "end(fail)";
    case xa_verb::prepare: return "prepare";
    case xa_verb::commit: return "commit";
    case xa_verb::commit_one_phase: return "commit(one phase)";
    case xa_verb::rollback: return "rollback";
  }
  return "unknown";
}

resource_manager::resource_manager(std::string name) : name_(std::move(name)) {}

resource_manager::~resource_manager() = default;

failure resource_manager::fail(xa_code code, std::string message, int native_code, std::string sqlstate) const {
  failure cause = make_failure(code, std::move(message), name_);
  cause.native_code = native_code;
  cause.sqlstate = std::move(sqlstate);
  return cause;
}

// The XA state table, per connection. "resolving" is the recovery case: commit or roll back a
// prepared XID that this connection does not carry, which is legal only while it carries nothing.
result<void> resource_manager::check_legal(xa_verb verb, const xid& branch, bool& resolving) const {
  resolving = false;
  auto illegal = [&](const char* why) {
    return fail(xa_code::protocol, std::string(xa_verb_name(verb)) + " of " + branch.to_string() + " is illegal: " +
                                       why + " (connection state: " + branch_state_name(state_) + ")");
  };
  if (in_flight_) return illegal("another call is in flight on this connection");
  bool carries_it = current_ && *current_ == branch;
  switch (verb) {
    case xa_verb::start:
      if (state_ != branch_state::idle) return illegal("the connection already carries a branch");
      return {};
    case xa_verb::end:
    case xa_verb::end_failed:
      if (!carries_it || state_ != branch_state::active) return illegal("the branch is not active here");
      return {};
    case xa_verb::prepare:
      if (!carries_it || state_ != branch_state::ended) return illegal("only an ended branch can be prepared");
      return {};
    case xa_verb::commit_one_phase:
      if (!carries_it || state_ != branch_state::ended) return illegal("one-phase commit needs an ended branch");
      return {};
    case xa_verb::commit:
      if (carries_it) {
        if (state_ != branch_state::prepared) return illegal("the branch is not prepared");
        return {};
      }
      if (state_ != branch_state::idle) return illegal("the connection carries another branch");
      resolving = true;
      return {};
    case xa_verb::rollback:
      if (carries_it) return {};
      if (state_ != branch_state::idle) return illegal("the connection carries another branch");
      resolving = true;
      return {};
  }
  return illegal("unknown verb");
}

void resource_manager::apply_outcome(const call& finished, const result<vote>& answer) {
  if (finished.resolving) return;  // the connection's own state is untouched by resolving others
  auto finish_branch = [this] {
    state_ = branch_state::idle;
    current_.reset();
  };
  // A lost connection takes an unprepared branch with it (the RM rolls it back); a prepared one
  // stays on the RM, where recovery or a commit from a new connection finds it.
  if (!answer.ok() && answer.error().code == xa_code::rm_failure) {
    finish_branch();
    return;
  }
  bool rolled_back = !answer.ok() && is_rollback_code(answer.error().code);
  switch (finished.verb) {
    case xa_verb::start:
      if (answer.ok()) {
        state_ = branch_state::active;
        current_ = finished.branch;
      }
      return;
    case xa_verb::end: state_ = answer.ok() ? branch_state::ended : branch_state::rollback_only; return;
    case xa_verb::end_failed: state_ = branch_state::rollback_only; return;
    case xa_verb::prepare:
      if (answer.ok() && answer.value() == vote::commit) {
        state_ = branch_state::prepared;
      } else if (answer.ok() || rolled_back) {
        finish_branch();  // read-only: finished; XA_RB*: the RM rolled it back
      } else {
        state_ = branch_state::rollback_only;
      }
      return;
    case xa_verb::commit_one_phase:
      finish_branch();  // committed, rolled back, or in doubt: in no case is it ours to touch again
      return;
    case xa_verb::commit:
    case xa_verb::rollback:
      if (answer.ok() || rolled_back || answer.error().code == xa_code::not_found) finish_branch();
      return;
  }
}

void resource_manager::detach_call(std::function<void(const result<vote>&)> on_done) {
  if (in_flight_) detached_done_ = std::move(on_done);
}

// Waits for a detached call, if any, before this connection is used again.
void resource_manager::finish_detached() {
  if (!detached_done_) return;
  auto on_done = std::move(detached_done_);
  detached_done_ = nullptr;
  resource_manager* self = this;
  result<vote> answer = drive_calls(std::span(&self, 1), std::nullopt).empty()
                            ? finish_call()
                            : result<vote>(fail(xa_code::rm_failure, "waiting for a background commit failed"));
  if (in_flight_) abandon_call();
  try {
    on_done(answer);
  } catch (const std::exception& e) {
    // The TM's bookkeeping failed (out of memory, a log sink): recovery still finishes the work.
    XATM_LOG(tm, error) << "[" << name_ << "] background commit bookkeeping failed: " << e.what();
  }
}

void* resource_manager::native_handle() {
  finish_detached();
  return do_native_handle();
}

result<void> resource_manager::begin_call(xa_verb verb, const xid& branch) {
  finish_detached();
  bool resolving = false;
  if (auto legal = check_legal(verb, branch, resolving); !legal) return legal;
  if (!is_connected()) {
    // The loss may have been noticed outside xatm (on the native handle): the unprepared branch
    // went with the connection, exactly as if this call had lost it.
    failure lost = fail(xa_code::rm_failure, "not connected (call reconnect())");
    apply_outcome(call{verb, branch, resolving}, result<vote>(lost));
    return lost;
  }
  in_flight_ = call{verb, branch, resolving};
  if (auto sent = send(verb, branch); !sent) {
    call failed = *in_flight_;
    in_flight_.reset();
    result<vote> answer = sent.error();
    apply_outcome(failed, answer);
    return sent;
  }
  return {};
}

io_wait resource_manager::call_wait() const noexcept {
  if (!in_flight_) return {};
  return waiting_for();
}

bool resource_manager::resume_call() {
  if (!in_flight_) return true;
  return advance();
}

result<vote> resource_manager::finish_call() {
  if (!in_flight_) return fail(xa_code::protocol, "finish_call() without a call in flight");
  call finished = *in_flight_;
  result<vote> answer = outcome();
  in_flight_.reset();
  apply_outcome(finished, answer);
  return answer;
}

void resource_manager::abandon_call() noexcept {
  if (!in_flight_) return;
  XATM_LOG(tm, warning) << "[" << name_ << "] abandoning " << xa_verb_name(in_flight_->verb) << " of "
                        << in_flight_->branch.to_string() << ": closing the connection";
  cancel();
  in_flight_.reset();
  state_ = branch_state::idle;
  current_.reset();
}

std::optional<std::chrono::steady_clock::time_point> resource_manager::call_deadline() const noexcept {
  if (!call_timeout_) return std::nullopt;
  return std::chrono::steady_clock::now() + *call_timeout_;
}

result<vote> resource_manager::run_blocking(xa_verb verb, const xid& branch) {
  if (auto started = begin_call(verb, branch); !started) return std::move(started).error();
  resource_manager* self = this;
  // Without a call timeout, only the driver's own timeouts bound a blocking call.
  if (!drive_calls(std::span(&self, 1), call_deadline()).empty()) {
    abandon_call();  // the RM stayed silent past the call timeout, or poll() itself failed
    std::string why = call_timeout_ ? "no answer within the call timeout (" + std::to_string(call_timeout_->count()) +
                                          " ms); the connection was closed"
                                    : std::string("waiting for the server failed");
    return fail(xa_code::rm_failure, std::string(xa_verb_name(verb)) + " of " + branch.to_string() + ": " + why);
  }
  return finish_call();
}

result<void> resource_manager::start(const xid& branch) {
  auto answer = run_blocking(xa_verb::start, branch);
  if (!answer) return std::move(answer).error();
  return {};
}

result<void> resource_manager::end(const xid& branch, bool success) {
  auto answer = run_blocking(success ? xa_verb::end : xa_verb::end_failed, branch);
  if (!answer) return std::move(answer).error();
  return {};
}

result<vote> resource_manager::prepare(const xid& branch) { return run_blocking(xa_verb::prepare, branch); }

result<void> resource_manager::commit(const xid& branch, bool one_phase) {
  auto answer = run_blocking(one_phase ? xa_verb::commit_one_phase : xa_verb::commit, branch);
  if (!answer) return std::move(answer).error();
  return {};
}

result<void> resource_manager::rollback(const xid& branch) {
  auto answer = run_blocking(xa_verb::rollback, branch);
  if (!answer) return std::move(answer).error();
  return {};
}

result<void> resource_manager::forget(const xid& branch) {
  if (current_ && *current_ == branch) {
    return fail(xa_code::protocol, "forget of " + branch.to_string() + ": the branch is still " +
                                       branch_state_name(state_) + " on this connection");
  }
  // Neither PostgreSQL nor MariaDB completes a branch heuristically, so nothing is remembered.
  return {};
}

result<recovered_branches> resource_manager::recover() {
  finish_detached();
  if (in_flight_ || state_ == branch_state::active || state_ == branch_state::ended ||
      state_ == branch_state::rollback_only) {
    return fail(xa_code::protocol, std::string("recover is illegal while the connection carries an unfinished "
                                               "branch (state: ") +
                                       branch_state_name(state_) + ")");
  }
  if (!is_connected()) return fail(xa_code::rm_failure, "not connected (call reconnect())");
  return do_recover();
}

result<query_result> resource_manager::exec(std::string_view sql) {
  finish_detached();
  if (in_flight_ || (state_ != branch_state::idle && state_ != branch_state::active)) {
    return fail(xa_code::protocol, std::string("exec is illegal now: the branch is ") + branch_state_name(state_) +
                                       ", SQL would run outside it");
  }
  if (!is_connected()) return fail(xa_code::rm_failure, "not connected (call reconnect())");
  auto answer = do_exec(sql);
  if (!answer && answer.error().code == xa_code::rm_failure) {
    state_ = branch_state::idle;  // the unprepared branch died with the connection
    current_.reset();
  }
  return answer;
}

result<void> resource_manager::reconnect() {
  finish_detached();
  if (in_flight_) abandon_call();
  cancel();
  state_ = branch_state::idle;
  current_.reset();
  return do_connect();
}

std::vector<resource_manager*> drive_calls(std::span<resource_manager* const> rms,
                                           std::optional<std::chrono::steady_clock::time_point> deadline,
                                           const std::function<void(resource_manager&)>& on_answer) {
  auto answered = [&](resource_manager* rm) {
    if (on_answer) on_answer(*rm);
    return true;
  };
  std::vector<resource_manager*> pending;
  pending.reserve(rms.size());
  for (auto* rm : rms) {
    if (rm->call_in_flight()) pending.push_back(rm);
  }
  std::vector<pollfd> fds;
  std::vector<resource_manager*> waiting;
  // Past the deadline, a few more looks without waiting: an answer already in its socket (one
  // that arrived while another RM's answer was being handled) still counts.
  int looks_past_deadline = 0;
  constexpr int max_looks_past_deadline = 8;
  while (!pending.empty()) {
    // Calls with no I/O to wait for make progress right away; the rest wait in one poll().
    fds.clear();
    waiting.clear();
    for (auto it = pending.begin(); it != pending.end();) {
      io_wait wants = (*it)->call_wait();
      if (wants.socket < 0) {
        if ((*it)->resume_call() && answered(*it)) {
          it = pending.erase(it);
          continue;
        }
      } else {
        fds.push_back(pollfd{wants.socket, wants.events, 0});
        waiting.push_back(*it);
      }
      ++it;
    }
    if (waiting.empty()) continue;
    int timeout_ms = -1;
    bool past_deadline = false;
    if (deadline) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - std::chrono::steady_clock::now());
      past_deadline = left.count() <= 0;
      if (past_deadline && ++looks_past_deadline > max_looks_past_deadline) return pending;
      timeout_ms =
          past_deadline ? 0 : static_cast<int>(std::min<std::chrono::milliseconds::rep>(left.count(), 1 << 30));
    }
    int ready = ::poll(fds.data(), fds.size(), timeout_ms);
    if (ready < 0 && errno != EINTR) {
      XATM_LOG(tm, error) << "poll() failed: errno " << errno;
      return pending;
    }
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      if (waiting[i]->resume_call() && answered(waiting[i])) std::erase(pending, waiting[i]);
    }
    if (past_deadline && ready == 0) return pending;  // nothing more has arrived
  }
  return pending;
}

}  // namespace xatm
