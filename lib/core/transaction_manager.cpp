// The transaction manager: opening the log, the RM registry, begin(). The protocol itself lives
// in two_phase_commit.cpp. This file is also the wiring of the decision store: the one place in
// lib/core that names the SQLite store (tm_core.h).
#include "xatm/transaction_manager.h"

#include <mutex>

#include <algorithm>

#include "core/backend.h"
#include "core/identity.h"
#include "core/logging.h"
#include "core/markers.h"
#include "core/recovery.h"
#include "core/tm_access.h"
#include "core/tm_core.h"
#include "xatm/error.h"

namespace xatm {
namespace detail {

bool tm_core::is_registered(std::string_view rm_name) const {
  std::shared_lock lock(registry_mutex);
  return registry.find(rm_name) != registry.end();
}

result<std::unique_ptr<resource_manager>> tm_core::connect(std::string_view rm_name) {
  auto connection = connect_for_application(rm_name);
  if (connection) connection.value()->set_call_timeout(options.rm_call_timeout);
  connection = own_connection(std::move(connection), options.allow_unsafe_durability);  // preflight.h
  if (!connection) return connection;
  if (auto verified = verify(*connection.value()); !verified) return std::move(verified).error();
  return connection;
}

result<void> tm_core::verify(resource_manager& connection) {
  auto rule = unpinned_with_decisions.contains(connection.name()) ? unpinned_rule::refuse : unpinned_rule::pin;
  auto verdict = verify_identity(connection, *log, rule);
  if (!verdict) return std::move(verdict).error();
  if (!verdict.value().verified) return make_failure(xa_code::invalid, verdict.value().problem, connection.name());
  return {};
}

void tm_core::hold_leases() noexcept {
  try {
    std::vector<std::string> names;
    {
      std::shared_lock lock(registry_mutex);
      for (const auto& [name, connector] : registry) names.push_back(name);
    }
    const std::string prefix = options.tm_id + "." + log->incarnation_id();
    std::lock_guard lock(lease_mutex);
    for (const auto& name : names) {
      auto& held = leases[name];
      // A lease connection that stopped answering (a server restart) lost its lock with it.
      if (held && held->connected() && held->exec("SELECT 1").ok()) continue;
      held.reset();
      auto connection = connect(name);
      if (!connection) {
        XATM_LOG(recovery, warning) << "RM " << name
                                    << ": no incarnation lease (cannot connect): " << connection.error().describe();
        continue;
      }
      if (auto taken = take_lease(*connection.value(), prefix); !taken) {
        XATM_LOG(recovery, warning) << "RM " << name << ": no incarnation lease: " << taken.error().describe();
        continue;
      }
      held = std::move(connection).value();
    }
  } catch (const std::exception& e) {
    XATM_LOG(recovery, error) << "taking the incarnation leases failed: " << e.what();
  }
}

result<std::unique_ptr<resource_manager>> tm_core::connect_for_application(std::string_view rm_name) const {
  rm_connector connector;
  {
    std::shared_lock lock(registry_mutex);
    auto found = registry.find(rm_name);
    if (found == registry.end()) {
      return make_failure(xa_code::invalid, "no RM named '" + std::string(rm_name) + "' is registered");
    }
    connector = found->second;
  }
  return connector();
}

result<std::unique_ptr<resource_manager>> tm_core::lease_control(std::string_view rm_name) {
  {
    std::lock_guard lock(control_mutex);
    auto idle = idle_controls.find(rm_name);
    if (idle != idle_controls.end() && !idle->second.empty()) {
      auto control = std::move(idle->second.back());
      idle->second.pop_back();
      if (control->connected()) return control;
    }
  }
  return fresh_control(rm_name);
}

result<std::unique_ptr<resource_manager>> tm_core::fresh_control(std::string_view rm_name) {
  bool table_ready = false;
  {
    std::lock_guard lock(control_mutex);
    table_ready = marker_tables_ready.contains(rm_name);
  }
  auto control = connect(rm_name);
  if (!control) return control;
  if (auto prepared = prepare_control_connection(*control.value()); !prepared) return std::move(prepared).error();
  if (!table_ready) {
    if (auto installed = install_marker_table(*control.value()); !installed) return std::move(installed).error();
    std::lock_guard lock(control_mutex);
    marker_tables_ready.emplace(rm_name);
  }
  return control;
}

void tm_core::release_control(std::unique_ptr<resource_manager> control) {
  if (!control || !control->connected() || control->state() != branch_state::idle) return;
  std::lock_guard lock(control_mutex);
  idle_controls[control->name()].push_back(std::move(control));
}

void tm_core::delete_markers_later(std::string gtrid, std::vector<std::string> rm_names) {
  std::lock_guard lock(control_mutex);
  markers_to_delete.emplace_back(std::move(gtrid), std::move(rm_names));
}

void tm_core::delete_finished_markers() noexcept {
  std::vector<std::pair<std::string, std::vector<std::string>>> batch;
  {
    std::lock_guard lock(control_mutex);
    batch.swap(markers_to_delete);
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

void tm_core::hand_over(const std::string& gtrid) {
  std::lock_guard lock(handed_over_mutex);
  handed_over.try_emplace(gtrid, std::chrono::steady_clock::now());
}

void tm_core::take_back(const std::string& gtrid) {
  std::lock_guard lock(handed_over_mutex);
  handed_over.erase(gtrid);
}

void tm_core::register_rm(std::string name, rm_connector connector) {
  if (auto valid = validate_rm_name(name); !valid) throw configuration_error(valid.error());
  std::unique_lock lock(registry_mutex);
  if (!registry.emplace(name, std::move(connector)).second) {
    throw configuration_error(make_failure(xa_code::invalid, "an RM named '" + name + "' is already registered"));
  }
}

void tm_core::start_background_recovery() {
  if (options.recovery_interval.count() <= 0) return;
  recovery_thread = std::thread([this] {
    std::unique_lock lock(stop_mutex);
    while (!stop_requested.wait_for(lock, options.recovery_interval, [this] { return stopping; })) {
      lock.unlock();
      try {
        (void)recover();  // the report is logged; nobody waits for it here
      } catch (const std::exception& e) {
        XATM_LOG(recovery, error) << "background recovery failed: " << e.what();
      }
      lock.lock();
    }
  });
}

void tm_core::stop_background_recovery() noexcept {
  {
    std::lock_guard lock(stop_mutex);
    stopping = true;
  }
  stop_requested.notify_all();
  if (recovery_thread.joinable()) recovery_thread.join();
}

recovery_report tm_core::recover() {
  std::lock_guard lock(recovery_mutex);
  hold_leases();
  delete_finished_markers();
  recovery_context context;
  context.tm_id = options.tm_id;
  context.log = log.get();
  {
    std::shared_lock registry_lock(registry_mutex);
    context.rms = registry;
  }
  context.live_incarnation = log->incarnation_id();
  context.never_pin = unpinned_with_decisions;
  context.call_timeout = options.rm_call_timeout;
  context.allow_unsafe_durability = options.allow_unsafe_durability;
  // The copy is taken before run_recovery() reads the log (see handed_over in tm_core.h).
  std::map<std::string, std::chrono::steady_clock::time_point, std::less<>> handed;
  {
    std::lock_guard handed_lock(handed_over_mutex);
    handed = handed_over;
  }
  context.handed_over = [&handed](std::string_view gtrid) { return handed.find(gtrid) != handed.end(); };
  context.terminate_others = options.terminate_others.value_or(options.protocol == commit_protocol::three_phase);
  context.precommit_timeout = options.precommit_timeout;
  context.first_seen = &three_phase_sightings;
  auto report = run_recovery(context);
  // Handed-over work is done when this run saw every RM and left nothing of it: its decision was
  // completed, or (no decision) nothing of it was prepared anywhere, and enough time passed for a
  // prepare that was still on its way when its answer was lost to have shown up.
  if (report.unreachable_rms.empty()) {
    auto grace = 2 * options.prepare_timeout;
    auto now = std::chrono::steady_clock::now();
    std::lock_guard handed_lock(handed_over_mutex);
    for (const auto& [gtrid, since] : handed) {
      bool left = std::any_of(report.items.begin(), report.items.end(), [&](const recovery_item& item) {
        return item.gtrid == gtrid &&
               (item.result == recovery_result::unresolved || item.result == recovery_result::skipped_live);
      });
      bool completed = std::find(report.completed.begin(), report.completed.end(), gtrid) != report.completed.end();
      bool had_decision = std::any_of(report.items.begin(), report.items.end(), [&](const recovery_item& item) {
        return item.gtrid == gtrid && item.decision == "commit";
      });
      if (!left && (completed || (!had_decision && now - since > grace))) handed_over.erase(gtrid);
    }
  }
  if (report.unresolved() || report.heuristic()) {
    XATM_LOG(recovery, warning) << "recovery left work unresolved: " << report.unreachable_rms.size()
                                << " RMs unreachable, " << report.items.size() << " branches listed";
  }
  return report;
}

rm_connector make_connector(const std::string& rm_name, std::string_view dialect, const connection_settings& settings,
                            std::chrono::milliseconds connect_timeout) {
  auto refuse = [&rm_name](std::string message) {
    throw configuration_error(make_failure(xa_code::invalid, "RM '" + rm_name + "': " + std::move(message), rm_name));
  };
  const backend* chosen = find_backend(dialect);
  if (chosen == nullptr) {
    // The dialect is the application's text: say what is accepted rather than echo it.
    refuse("unknown RM dialect (" + dialect_list() + ")");
  }
  // Refused now rather than at the first connect, which may be recovery's, in the background.
  if (settings.values().empty()) {
    refuse("the connection string is empty (give at least host or unix_socket, dbname and user)");
  }
  auto known = chosen->check_keywords(settings);
  if (!known) refuse(known.error().message);
  // Connecting is bounded like every other call the TM makes (tm_options::rm_call_timeout).
  connection_settings bounded = with_connect_timeout(settings, connect_timeout);
  return [rm_name, bounded, chosen] { return chosen->connect(rm_name, bounded); };
}

connection_settings with_connect_timeout(connection_settings settings, std::chrono::milliseconds timeout) {
  if (settings.get("connect_timeout") || timeout.count() <= 0) return settings;
  auto seconds = std::chrono::ceil<std::chrono::seconds>(timeout).count();
  settings.set("connect_timeout", std::to_string(seconds));
  return settings;
}

}  // namespace detail

namespace {

[[noreturn]] void throw_configuration(std::string message) {
  throw configuration_error(make_failure(xa_code::invalid, std::move(message)));
}

}  // namespace

transaction_manager::transaction_manager(tm_options options) : transaction_manager(std::move(options), {}) {}

transaction_manager::transaction_manager(tm_options options, const detail::tm_wiring& wiring)
    : core_(std::make_shared<detail::tm_core>()) {
  if (auto valid = validate_tm_id(options.tm_id); !valid) throw configuration_error(valid.error());
  core_->log = detail::open_decision_log(options.log_path, options.tm_id, wiring.log_vfs);
  core_->options = std::move(options);
  if (auto pending = core_->log->pending(); pending) {
    for (const auto& record : pending.value()) {
      for (const auto& name : record.branch_rms) {
        if (!core_->log->pinned(name)) core_->unpinned_with_decisions.insert(name);
      }
    }
  } else {
    throw log_failure_error(pending.error());
  }
  XATM_LOG(tm, info) << "transaction manager " << core_->options.tm_id << " incarnation " << core_->log->incarnation()
                     << " opened log " << core_->options.log_path;
}

transaction_manager::~transaction_manager() { core_->stop_background_recovery(); }

recovery_report transaction_manager::recover_now() { return core_->recover(); }

void transaction_manager::register_rm(std::string name, std::string_view dialect, std::string_view conninfo) {
  // The name first: a refused name must not reach the log line below.
  if (auto valid = validate_rm_name(name); !valid) throw configuration_error(valid.error());
  auto settings = connection_settings::parse(conninfo);
  if (!settings) {
    failure cause = settings.error();
    cause.rm_name = name;
    throw configuration_error(std::move(cause));
  }
  rm_connector connector = detail::make_connector(name, dialect, settings.value(), core_->options.rm_call_timeout);
  XATM_LOG(tm, info) << "registered RM " << name << " (" << dialect << "): " << settings.value().describe();
  core_->register_rm(std::move(name), std::move(connector));
}

std::unique_ptr<connection> transaction_manager::connect(std::string_view rm_name) {
  // A name that could not have been registered is not quoted back (it may hold any bytes).
  if (auto valid = validate_rm_name(rm_name); !valid) throw configuration_error(valid.error());
  if (!core_->is_registered(rm_name)) {
    throw_configuration("no RM named '" + std::string(rm_name) + "' is registered");
  }
  auto connection = core_->connect_for_application(rm_name).value();
  core_->application_durability.require_first(*connection, core_->options);  // preflight.h
  // The first connection to each RM name checks (or, at the first meeting, pins) the database's
  // identity: a TM must not make decisions with branches on a database its log does not know.
  bool verified = false;
  {
    std::lock_guard lock(core_->verified_mutex);
    verified = core_->verified_for_application.contains(rm_name);
  }
  if (!verified) {
    if (auto checked = core_->verify(*connection); !checked) {
      failure cause = std::move(checked).error();
      if (cause.code == xa_code::invalid) throw configuration_error(std::move(cause));
      throw rm_error(std::move(cause));
    }
    std::lock_guard lock(core_->verified_mutex);
    core_->verified_for_application.emplace(rm_name);
  }
  return connection;
}

global_transaction transaction_manager::begin() { return begin(core_->options.protocol); }

global_transaction transaction_manager::begin(commit_protocol protocol) {
  // Before the first transaction: resolve what earlier incarnations left, then keep doing so in
  // the background.
  std::call_once(core_->initial_recovery, [this] {
    (void)core_->recover();  // unresolved work is logged and retried by the background thread
    core_->start_background_recovery();
  });
  bool three_phase = protocol == commit_protocol::three_phase;
  gtrid_parts parts{core_->options.tm_id, core_->log->incarnation_id(), core_->next_sequence.fetch_add(1), three_phase};
  return global_transaction(core_, format_gtrid(parts).value(), protocol);
}

const std::string& transaction_manager::tm_id() const noexcept { return core_->options.tm_id; }

std::uint64_t transaction_manager::incarnation() const noexcept { return core_->log->incarnation(); }

const std::string& transaction_manager::incarnation_id() const noexcept { return core_->log->incarnation_id(); }

tm_statistics transaction_manager::statistics() const noexcept {
  tm_statistics stats;
  stats.committed = core_->committed.load();
  stats.one_phase = core_->one_phase.load();
  stats.rolled_back = core_->rolled_back.load();
  stats.completion_pending = core_->completion_pending.load();
  auto log_stats = core_->log->stats();
  stats.decisions_logged = log_stats.decisions_written;
  stats.log_batches = log_stats.batches;
  return stats;
}

namespace detail {

std::unique_ptr<transaction_manager> tm_access::open(tm_options options, const tm_wiring& wiring) {
  return std::unique_ptr<transaction_manager>(new transaction_manager(std::move(options), wiring));
}

void tm_access::register_rm(transaction_manager& tm, std::string name, rm_connector connector) {
  tm.core_->register_rm(std::move(name), std::move(connector));
}

tm_core& tm_access::core(transaction_manager& tm) noexcept { return *tm.core_; }

}  // namespace detail

}  // namespace xatm
