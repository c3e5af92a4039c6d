// Internal: the coordinator's side of TCC branches (xatm/tcc.h, docs/tcc.md): calling a
// participant safely and driving confirms or cancels to their end. Used by the engine
// (two_phase_commit.cpp), global_transaction's rollback and recovery. Thread-safe: the functions
// hold no state; a tcc_participant is callable from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "xatm/result.h"
#include "xatm/tcc.h"

namespace xatm::detail {

// One TCC branch of a global transaction, as its coordinator holds it.
struct tcc_branch {
  tcc_request request;
  std::shared_ptr<tcc_participant> participant;
  bool final = false;  // its confirm or cancel answered done
};

// participant.call(), with whatever it throws turned into `failed`.
tcc_reply call_participant(tcc_participant& participant, tcc_step step, const tcc_request& request,
                           std::chrono::milliseconds timeout) noexcept;

// A branch's name in messages and reports: "TCC branch 2 (wallet) of <gtrid>".
std::string describe(const tcc_request& request);

// Sends `step` (confirm or cancel) to every branch not yet final, then again with backoff to
// those that answered failed, until each is final or `window_end` passes; each call is bounded
// by `call_timeout`. A refusal (the participant's barrier says the other step already ran) is
// final too, and the first one is returned: a heuristic outcome the caller reports. Marks the
// branches that answered done `final`.
std::optional<failure> drive_to_end(std::vector<tcc_branch>& branches, tcc_step step,
                                    std::chrono::steady_clock::time_point window_end,
                                    std::chrono::milliseconds call_timeout);

// Whether every branch is final.
bool all_final(const std::vector<tcc_branch>& branches) noexcept;

}  // namespace xatm::detail
