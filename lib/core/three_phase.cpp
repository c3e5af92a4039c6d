// Three-phase mode's pre-commit step and its control connections (three_phase.h).
#include "core/three_phase.h"

#include "core/crash_point.h"
#include "core/logging.h"
#include "core/markers.h"

namespace xatm::detail {

precommit_result three_phase_unit::precommit(const std::string& gtrid, const std::string& arbiter,
                                             const std::vector<std::string>& rm_names, const std::string& marker_rms) {
  precommit_result outcome;
  outcome.cause = make_failure(xa_code::rm_failure, "no attempt", arbiter);
  bool decided = false;
  for (int attempt = 0; attempt < 2 && !decided; ++attempt) {
    // The second attempt must not take another pooled connection that may be just as stale.
    auto control = attempt == 0 ? lease_control(arbiter) : fresh_control(arbiter);
    auto inserted = control ? insert_marker(*control.value(), gtrid, marker_state::precommitted, marker_rms)
                            : result<marker_state>(control.error());
    if (inserted) {
      decided = true;
      outcome.verdict =
          inserted.value() == marker_state::aborted ? precommit_verdict::aborted : precommit_verdict::committed;
      release_control(std::move(control).value());
    } else {
      outcome.cause = inserted.error();
    }
  }
  if (!decided || outcome.verdict == precommit_verdict::aborted) return outcome;

  XATM_LOG(tm, debug) << gtrid << ": pre-committed at the arbiter " << arbiter;
  XATM_CRASH_POINT("after_arbiter_precommit");
  for (const auto& rm_name : rm_names) {
    if (rm_name == arbiter) continue;
    auto control = lease_control(rm_name);
    if (!control) continue;
    (void)insert_marker(*control.value(), gtrid, marker_state::precommitted, marker_rms);  // a hint
    release_control(std::move(control).value());
  }
  return outcome;
}

void three_phase_unit::delete_markers_later(std::string gtrid, std::vector<std::string> rm_names) {
  std::lock_guard lock(mutex_);
  markers_to_delete_.emplace_back(std::move(gtrid), std::move(rm_names));
}

void three_phase_unit::delete_finished_markers() noexcept {
  std::vector<std::pair<std::string, std::vector<std::string>>> batch;
  {
    std::lock_guard lock(mutex_);
    batch.swap(markers_to_delete_);
  }
  for (auto& [gtrid, rm_names] : batch) {
    bool all_deleted = true;
    for (const auto& rm_name : rm_names) {
      auto control = lease_control(rm_name);
      bool deleted = control && delete_marker(*control.value(), gtrid).ok();
      all_deleted = all_deleted && deleted;
      if (control) release_control(std::move(control).value());
    }
    if (!all_deleted) delete_markers_later(gtrid, rm_names);  // try again next run
  }
}

result<std::unique_ptr<resource_manager>> three_phase_unit::lease_control(std::string_view rm_name) {
  {
    std::lock_guard lock(mutex_);
    auto idle = idle_controls_.find(rm_name);
    if (idle != idle_controls_.end() && !idle->second.empty()) {
      auto control = std::move(idle->second.back());
      idle->second.pop_back();
      if (control->connected()) return control;
    }
  }
  return fresh_control(rm_name);
}

result<std::unique_ptr<resource_manager>> three_phase_unit::fresh_control(std::string_view rm_name) {
  bool table_ready = false;
  {
    std::lock_guard lock(mutex_);
    table_ready = marker_tables_ready_.contains(rm_name);
  }
  auto control = connect_(rm_name);
  if (!control) return control;
  if (auto prepared = prepare_control_connection(*control.value()); !prepared) return std::move(prepared).error();
  if (!table_ready) {
    if (auto installed = install_marker_table(*control.value()); !installed) return std::move(installed).error();
    std::lock_guard lock(mutex_);
    marker_tables_ready_.emplace(rm_name);
  }
  return control;
}

void three_phase_unit::release_control(std::unique_ptr<resource_manager> control) {
  if (!control || !control->connected() || control->state() != branch_state::idle) return;
  std::lock_guard lock(mutex_);
  idle_controls_[control->name()].push_back(std::move(control));
}

}  // namespace xatm::detail
