#include "testing/fake_rm.h"

#include <poll.h>
#include <sys/timerfd.h>
#include <unistd.h>

namespace xatm::testing {

fake_rm::fake_rm(std::string name, std::shared_ptr<fake_server> server,
                 std::shared_ptr<std::vector<std::string>> journal)
    : resource_manager(std::move(name)),
      server_(std::move(server)),
      journal_(journal ? std::move(journal) : std::make_shared<std::vector<std::string>>()) {}

fake_rm::~fake_rm() {
  if (timer_fd_ >= 0) ::close(timer_fd_);
}

void fake_rm::script(xa_verb verb, result<vote> answer) { scripts_[verb].push_back(std::move(answer)); }

// What a real RM would do with the verb, given the script's answer.
result<vote> fake_rm::simulate(xa_verb verb, const xid& branch) {
  result<vote> answer = verb == xa_verb::prepare && read_only_ ? vote::read_only : vote::commit;
  if (auto& queue = scripts_[verb]; !queue.empty()) {
    answer = std::move(queue.front());
    queue.pop_front();
    if (!answer.ok() && answer.error().rm_name.empty()) {
      failure tagged = answer.error();
      tagged.rm_name = name();  // as a real adapter tags every failure
      answer = std::move(tagged);
    }
  }
  bool own = current_branch() && *current_branch() == branch;
  // Commit or rollback of a prepared branch: this connection's own, or any the server holds.
  auto resolve_into = [&](std::set<xid>& outcome) -> result<vote> {
    if (!own && !server_->prepared.contains(branch)) return fail(xa_code::not_found, "no such prepared branch");
    server_->prepared.erase(branch);
    outcome.insert(branch);
    return answer;
  };
  switch (verb) {
    case xa_verb::prepare:
      if (answer.ok() && answer.value() == vote::commit) server_->prepared.insert(branch);
      if (!answer.ok() && is_rollback_code(answer.error().code)) server_->rolled_back.insert(branch);
      break;
    case xa_verb::commit_one_phase:
      if (answer.ok()) server_->committed.insert(branch);
      break;
    case xa_verb::commit:
      if (answer.ok()) return resolve_into(server_->committed);
      break;
    case xa_verb::rollback:
      if (answer.ok()) return resolve_into(server_->rolled_back);
      break;
    default: break;
  }
  if (!answer.ok() && answer.error().code == xa_code::rm_failure) connected_ = false;
  return answer;
}

result<void> fake_rm::send(xa_verb verb, const xid& branch) {
  journal_->push_back(name() + " " + xa_verb_name(verb) + " " + branch.gtrid());
  if (on_send_) on_send_(verb, branch);
  answer_ = simulate(verb, branch);
  if (latency_.count() > 0) {
    if (timer_fd_ < 0) timer_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    itimerspec when{};
    when.it_value.tv_sec = latency_.count() / 1000;
    when.it_value.tv_nsec = (latency_.count() % 1000) * 1000000;
    ::timerfd_settime(timer_fd_, 0, &when, nullptr);
  }
  return {};
}

io_wait fake_rm::waiting_for() const noexcept {
  if (latency_.count() > 0 && timer_fd_ >= 0) return {timer_fd_, POLLIN};
  return {};
}

bool fake_rm::advance() {
  if (latency_.count() == 0) return true;
  std::uint64_t expirations = 0;
  return ::read(timer_fd_, &expirations, sizeof expirations) == sizeof expirations;
}

result<vote> fake_rm::outcome() {
  result<vote> answer = std::move(*answer_);
  answer_.reset();
  return answer;
}

void fake_rm::cancel() noexcept {
  connected_ = false;
  answer_.reset();
}

result<recovered_branches> fake_rm::do_recover() {
  recovered_branches found;
  found.ours.assign(server_->prepared.begin(), server_->prepared.end());
  found.foreign = server_->foreign;
  return found;
}

result<query_result> fake_rm::do_exec(std::string_view sql) {
  journal_->push_back(name() + " exec " + std::string(sql));
  return query_result{};
}

result<void> fake_rm::do_connect() {
  connected_ = true;
  return {};
}

}  // namespace xatm::testing
