// Three-phase mode's pre-commit step and its control connections (marker_unit.h).
#include "core/marker_unit.h"

#include "core/crash_point.h"
#include "core/logging.h"
#include "core/markers.h"

namespace xatm::detail {

precommit_result marker_unit::decide(const std::string& gtrid, const std::string& rm_name, marker_state proposal,
                                     const std::string& marker_rms) {
  precommit_result outcome;
  outcome.cause = make_failure(xa_code::rm_failure, "no attempt", rm_name);
  for (int attempt = 0; attempt < 2; ++attempt) {
    // The second attempt must not take another pooled connection that may be just as stale.
    auto control = attempt == 0 ? lease_control(rm_name) : fresh_control(rm_name);
    auto inserted =
        control ? insert_marker(*control.value(), gtrid, proposal, marker_rms) : result<marker_state>(control.error());
    if (inserted) {
      outcome.verdict =
          inserted.value() == marker_state::aborted ? precommit_verdict::aborted : precommit_verdict::committed;
      release_control(std::move(control).value());
      return outcome;
    }
    outcome.cause = inserted.error();
  }
  return outcome;  // in_doubt
}

result<decision_tables> marker_unit::tables_at(const std::string& rm_name) {
  {
    std::lock_guard lock(mutex_);
    auto known = decision_tables_.find(rm_name);
    if (known != decision_tables_.end()) return known->second;
  }
  auto control = lease_control(rm_name);  // its first connection installs the marker table
  if (!control) return std::move(control).error();
  auto found = find_decision_tables(*control.value());
  release_control(std::move(control).value());
  if (!found) return found;
  std::lock_guard lock(mutex_);
  decision_tables_.emplace(rm_name, found.value());
  return found;
}

precommit_result marker_unit::precommit(const std::string& gtrid, const std::string& arbiter,
                                        const std::vector<std::string>& rm_names, const std::string& marker_rms) {
  precommit_result outcome = decide(gtrid, arbiter, marker_state::precommitted, marker_rms);
  if (outcome.verdict != precommit_verdict::committed) return outcome;

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

void marker_unit::delete_markers_later(std::string gtrid, std::vector<std::string> rm_names) {
  bool backlog = false;
  {
    std::lock_guard lock(mutex_);
    markers_to_delete_.emplace_back(std::move(gtrid), std::move(rm_names));
    backlog = markers_to_delete_.size() == deletion_backlog;
  }
  if (backlog && on_backlog_) on_backlog_();
}

std::size_t marker_unit::markers_waiting() const {
  std::lock_guard lock(mutex_);
  return markers_to_delete_.size();
}

void marker_unit::delete_finished_markers() noexcept {
  std::vector<std::pair<std::string, std::vector<std::string>>> batch;
  {
    std::lock_guard lock(mutex_);
    batch.swap(markers_to_delete_);
  }
  // Per RM, the gtrids whose rows go there, deleted up to `per_statement` at a time.
  constexpr std::size_t per_statement = 200;
  std::map<std::string, std::vector<std::string>, std::less<>> by_rm;
  for (const auto& [gtrid, rm_names] : batch) {
    for (const auto& rm_name : rm_names) by_rm[rm_name].push_back(gtrid);
  }
  std::set<std::string, std::less<>> failed;  // gtrids with a row not deleted somewhere
  for (const auto& [rm_name, gtrids] : by_rm) {
    auto control = lease_control(rm_name);
    for (std::size_t start = 0; start < gtrids.size(); start += per_statement) {
      std::vector<std::string> chunk(gtrids.begin() + std::ptrdiff_t(start),
                                     gtrids.begin() + std::ptrdiff_t(std::min(gtrids.size(), start + per_statement)));
      if (!control || !delete_markers(*control.value(), chunk)) failed.insert(chunk.begin(), chunk.end());
    }
    if (control) release_control(std::move(control).value());
  }
  std::erase_if(batch, [&](const auto& entry) { return !failed.contains(entry.first); });
  std::lock_guard lock(mutex_);  // the rest: again on the next run (no backlog call: no busy loop)
  for (auto& entry : batch) markers_to_delete_.push_back(std::move(entry));
}

result<std::unique_ptr<resource_manager>> marker_unit::lease_control(std::string_view rm_name) {
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

result<std::unique_ptr<resource_manager>> marker_unit::fresh_control(std::string_view rm_name) {
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

void marker_unit::release_control(std::unique_ptr<resource_manager> control) {
  if (!control || !control->connected() || control->state() != branch_state::idle) return;
  std::lock_guard lock(mutex_);
  idle_controls_[control->name()].push_back(std::move(control));
}

}  // namespace xatm::detail
