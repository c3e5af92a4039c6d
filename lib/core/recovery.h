// Internal: the recovery algorithm (docs/design.md section 6), shared by the TM and xatm-recover.
// Not thread-safe by itself: callers serialize runs (the TM holds its recovery mutex, the tool
// holds the log's lock).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "core/decision_store.h"
#include "core/resource_manager.h"
#include "xatm/recovery.h"
#include "xatm/tcc.h"
#include "xatm/transaction_manager.h"

namespace xatm::detail {

struct recovery_context {
  std::string tm_id;
  decision_store* log = nullptr;
  std::map<std::string, rm_connector, std::less<>> rms;
  // TCC participants by name: recovery confirms or cancels the log's TCC branches through them.
  std::map<std::string, std::shared_ptr<tcc_participant>, std::less<>> participants;
  // Bounds every call on the connections recovery opens (resource_manager::set_call_timeout).
  std::chrono::milliseconds call_timeout = tm_options{}.rm_call_timeout;
  // Skip the durability check on recovery's connections (tm_options::allow_unsafe_durability).
  // Without it an unsafe RM is reported unreachable: nothing is done there, no decision naming
  // it is forgotten.
  bool allow_unsafe_durability = false;
  // The running TM's incarnation id (empty for the offline tool: nothing of its log is live in
  // this process; a TM still running elsewhere is recognised by its lease).
  std::string live_incarnation;
  // RM names the log has no identity pinned for may be pinned on first meeting (the TM: its own
  // configuration is what it decides with). The tool pins only names no pending decision uses.
  bool pin_unpinned = true;
  // Except these (the TM: names that decisions pending when its log was opened use, unpinned: a
  // log upgraded from before identities; the operator re-pins them).
  std::set<std::string, std::less<>> never_pin;
  // A markers' row left by an abort (A) is deleted once every branch is final and it is at least
  // this old: no stalled coordinator wakes up after so long (docs/three-phase.md).
  std::chrono::seconds abort_marker_retention{std::chrono::hours(24)};
  // For the live incarnation: true when the TM handed the gtrid over to recovery (its commit()
  // returned completion pending, or its rollback failed); anything else may still be in flight.
  std::function<bool(std::string_view gtrid)> handed_over;
  bool dry_run = false;
  // Three-phase termination of OTHER TMs' branches (a TM's recovery thread always; the tool with
  // --terminate): a `.p3` branch seen prepared in two scans at least precommit_timeout apart is
  // resolved by the marker rule. first_seen remembers sightings between runs.
  bool terminate_others = false;
  std::chrono::milliseconds precommit_timeout{0};
  std::map<std::string, std::chrono::steady_clock::time_point>* first_seen = nullptr;
};

recovery_report run_recovery(const recovery_context& context);

}  // namespace xatm::detail
