#include "bench/tcc_participant.h"

#include <exception>
#include <sstream>

namespace xatm::bench {

// "<token> <account_a> <account_b> <amount> <seen>": tokens hold no spaces.
std::string tcc_participant_in_process::payload_of(const transaction_input& in) {
  return in.token + " " + std::to_string(in.account_a) + " " + std::to_string(in.account_b) + " " +
         std::to_string(in.amount) + " " + std::to_string(in.seen);
}

tcc_reply tcc_participant_in_process::call(tcc_step step, const tcc_request& request,
                                           std::chrono::milliseconds /*timeout*/) {
  transaction_input in;
  std::istringstream fields(request.payload);
  if (!(fields >> in.token >> in.account_a >> in.account_b >> in.amount >> in.seen)) {
    return {tcc_answer::failed, "malformed payload", {}};  // never refused: that would read as "the other step ran"
  }
  in.mode_label = mode_name(mode::tcc);
  const std::string rm = work_->rm_b();
  try {
    auto db = take(rm);
    tcc_barrier barrier(tm_, rm);
    auto outcome = barrier.run(*db, step, request, [&](connection& c) {
      if (step == tcc_step::confirm) work_->run_b(c, in);
    });
    give_back(rm, std::move(db));
    return {answer_for(outcome), barrier_outcome_name(outcome), {}};
  } catch (const std::exception& e) {
    return {tcc_answer::failed, e.what(), {}};
  }
}

std::unique_ptr<connection> tcc_participant_in_process::take(const std::string& rm) {
  {
    std::lock_guard lock(mutex_);
    auto& idle = idle_[rm];
    if (!idle.empty()) {
      auto c = std::move(idle.back());
      idle.pop_back();
      return c;
    }
  }
  return tm_.connect(rm);
}

void tcc_participant_in_process::give_back(const std::string& rm, std::unique_ptr<connection> c) {
  std::lock_guard lock(mutex_);
  idle_[rm].push_back(std::move(c));
}

}  // namespace xatm::bench
