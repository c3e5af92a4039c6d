#include "core/tcc_branches.h"

#include <algorithm>
#include <exception>
#include <thread>
#include <utility>

#include "core/crash_point.h"
#include "core/logging.h"

namespace xatm::detail {

using clock = std::chrono::steady_clock;

tcc_reply call_participant(tcc_participant& participant, tcc_step step, const tcc_request& request,
                           std::chrono::milliseconds timeout) noexcept {
  try {
    return participant.call(step, request, timeout);
  } catch (const std::exception& e) {
    return {tcc_answer::failed, std::string("the participant's call threw: ") + e.what(), {}};
  } catch (...) {
    return {tcc_answer::failed, "the participant's call threw", {}};
  }
}

std::string describe(const tcc_request& request) {
  return "TCC branch " + std::to_string(request.branch) + " (" + request.participant + ") of " + request.gtrid;
}

std::optional<failure> drive_to_end(std::vector<tcc_branch>& branches, tcc_step step, clock::time_point window_end,
                                    std::chrono::milliseconds call_timeout) {
  std::optional<failure> refused;
  auto backoff = std::chrono::milliseconds(10);
  bool first_round = true;
  while (true) {
    for (tcc_branch& branch : branches) {
      if (branch.final) continue;
      if (!first_round && clock::now() >= window_end) break;
      tcc_reply reply = call_participant(*branch.participant, step, branch.request, call_timeout);
      if (reply.answer == tcc_answer::done) {
        branch.final = true;
        XATM_LOG(tm, debug) << describe(branch.request) << ": " << tcc_step_name(step) << " done";
        if (step == tcc_step::confirm) {
          XATM_CRASH_POINT("tcc_after_a_confirm");
        } else {
          XATM_CRASH_POINT("tcc_after_a_cancel");
        }
        continue;
      }
      if (reply.answer == tcc_answer::refused) {
        // The barrier refuses a confirm after a cancel and the other way round: nothing more
        // can change this branch, and it did the opposite of what was decided.
        branch.final = true;
        failure cause = make_failure(xa_code::heuristic_mixed,
                                     describe(branch.request) + ": " + tcc_step_name(step) +
                                         " refused by the participant: " + reply.detail,
                                     branch.request.participant);
        XATM_LOG(tm, error) << cause.describe();
        if (!refused) refused = std::move(cause);
        continue;
      }
      XATM_LOG(tm, warning) << describe(branch.request) << ": " << tcc_step_name(step)
                            << " failed, retrying: " << reply.detail;
    }
    first_round = false;
    if (all_final(branches) || clock::now() >= window_end) return refused;
    std::this_thread::sleep_for(std::min<clock::duration>(backoff, window_end - clock::now()));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(500));
  }
}

bool all_final(const std::vector<tcc_branch>& branches) noexcept {
  return std::all_of(branches.begin(), branches.end(), [](const tcc_branch& branch) { return branch.final; });
}

}  // namespace xatm::detail
