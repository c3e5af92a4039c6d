// The core of a transaction manager (tm_core.h): the registry and the TM's own connections, the
// hand-over to recovery, the incarnation leases, recovery runs and their background thread.
#include "core/tm_core.h"

#include <algorithm>
#include <utility>

#include "core/backend.h"
#include "core/identity.h"
#include "core/logging.h"
#include "core/password_file.h"
#include "core/recovery.h"
#include "xatm/error.h"
#include "xatm/xid.h"

namespace xatm::detail {

tm_core::tm_core(tm_options options, std::unique_ptr<decision_store> store)
    : options_(std::move(options)),
      store_(std::move(store)),
      markers_([this](std::string_view rm_name) { return connect(rm_name); },
               [this] {
                 {
                   std::lock_guard lock(stop_mutex_);
                   markers_backlog_ = true;
                 }
                 stop_requested_.notify_all();
               }) {
  auto pending = store_->pending();
  if (!pending) throw log_failure_error(pending.error());
  pending_at_open_ = pending.value().size();
  for (const auto& record : pending.value()) {
    for (const auto& name : record.branch_rms) {
      if (!store_->pinned(name)) unpinned_with_decisions_.insert(name);
    }
  }
}

std::string tm_core::next_gtrid(commit_protocol protocol) {
  gtrid_parts parts{options_.tm_id, store_->incarnation_id(), next_sequence_.fetch_add(1), protocol};
  return format_gtrid(parts).value();
}

// ---- the RM registry and connections -----------------------------------------------------------

void tm_core::register_rm(std::string name, rm_connector connector) {
  if (auto valid = validate_rm_name(name); !valid) throw configuration_error(valid.error());
  std::unique_lock lock(registry_mutex_);
  if (participants_.contains(name)) {
    throw configuration_error(
        make_failure(xa_code::invalid, "'" + name + "' is already registered as a TCC participant"));
  }
  if (!registry_.emplace(name, std::move(connector)).second) {
    throw configuration_error(make_failure(xa_code::invalid, "an RM named '" + name + "' is already registered"));
  }
}

void tm_core::register_tcc(std::string name, std::shared_ptr<tcc_participant> participant) {
  if (auto valid = validate_rm_name(name); !valid) {
    failure cause = std::move(valid).error();
    cause.message = "TCC participant: " + cause.message;
    throw configuration_error(std::move(cause));
  }
  if (!participant) {
    throw configuration_error(make_failure(xa_code::invalid, "TCC participant '" + name + "': no participant given"));
  }
  std::unique_lock lock(registry_mutex_);
  if (registry_.contains(name)) {
    throw configuration_error(make_failure(xa_code::invalid, "'" + name + "' is already registered as an RM"));
  }
  if (!participants_.emplace(name, std::move(participant)).second) {
    throw configuration_error(
        make_failure(xa_code::invalid, "a TCC participant named '" + name + "' is already registered"));
  }
}

std::shared_ptr<tcc_participant> tm_core::participant(std::string_view name) const {
  std::shared_lock lock(registry_mutex_);
  auto found = participants_.find(name);
  return found == participants_.end() ? nullptr : found->second;
}

bool tm_core::is_registered(std::string_view rm_name) const {
  std::shared_lock lock(registry_mutex_);
  return registry_.find(rm_name) != registry_.end();
}

result<std::unique_ptr<resource_manager>> tm_core::open(std::string_view rm_name) const {
  rm_connector connector;
  {
    std::shared_lock lock(registry_mutex_);
    auto found = registry_.find(rm_name);
    if (found == registry_.end()) {
      return make_failure(xa_code::invalid, "no RM named '" + std::string(rm_name) + "' is registered");
    }
    connector = found->second;
  }
  return connector();
}

std::unique_ptr<resource_manager> tm_core::connect_for_application(std::string_view rm_name) {
  auto connection = open(rm_name).value();
  application_checks_.require_first(*connection, options_);  // preflight.h
  // The first connection to each RM name checks (or, at the first meeting, pins) the database's
  // identity: a TM must not make decisions with branches on a database its log does not know.
  bool verified = false;
  {
    std::lock_guard lock(verified_mutex_);
    verified = verified_for_application_.contains(rm_name);
  }
  if (!verified) {
    if (auto checked = verify(*connection); !checked) {
      failure cause = std::move(checked).error();
      if (cause.code == xa_code::invalid) throw configuration_error(std::move(cause));
      throw rm_error(std::move(cause));
    }
    std::lock_guard lock(verified_mutex_);
    verified_for_application_.emplace(rm_name);
  }
  return connection;
}

result<std::unique_ptr<resource_manager>> tm_core::connect(std::string_view rm_name) {
  auto connection = open(rm_name);
  if (connection) connection.value()->set_call_timeout(options_.rm_call_timeout);
  connection = own_connection(std::move(connection), options_.allow_unsafe_durability);  // preflight.h
  if (!connection) return connection;
  if (auto verified = verify(*connection.value()); !verified) return std::move(verified).error();
  return connection;
}

result<void> tm_core::verify(resource_manager& connection) {
  auto rule = unpinned_with_decisions_.contains(connection.name()) ? unpinned_rule::refuse : unpinned_rule::pin;
  auto verdict = verify_identity(connection, *store_, rule);
  if (!verdict) return std::move(verdict).error();
  if (!verdict.value().verified) return make_failure(xa_code::invalid, verdict.value().problem, connection.name());
  return {};
}

// ---- work handed over to recovery ---------------------------------------------------------------

void tm_core::hand_over(const std::string& gtrid) {
  std::lock_guard lock(handed_over_mutex_);
  handed_over_.try_emplace(gtrid, std::chrono::steady_clock::now());
}

void tm_core::take_back(const std::string& gtrid) {
  std::lock_guard lock(handed_over_mutex_);
  handed_over_.erase(gtrid);
}

// ---- recovery -------------------------------------------------------------------------------------

void tm_core::hold_leases() noexcept {
  try {
    std::vector<std::string> names;
    {
      std::shared_lock lock(registry_mutex_);
      for (const auto& [name, connector] : registry_) names.push_back(name);
    }
    const std::string prefix = options_.tm_id + "." + store_->incarnation_id();
    std::lock_guard lock(lease_mutex_);
    for (const auto& name : names) {
      auto& held = leases_[name];
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

recovery_report tm_core::recover() {
  std::lock_guard lock(recovery_mutex_);
  hold_leases();
  markers_.delete_finished_markers();
  recovery_context context;
  context.tm_id = options_.tm_id;
  context.log = store_.get();
  {
    std::shared_lock registry_lock(registry_mutex_);
    context.rms = registry_;
    context.participants = participants_;
  }
  context.live_incarnation = store_->incarnation_id();
  context.never_pin = unpinned_with_decisions_;
  context.call_timeout = options_.rm_call_timeout;
  context.allow_unsafe_durability = options_.allow_unsafe_durability;
  // The copy is taken before run_recovery() reads the log (see handed_over_ in tm_core.h).
  std::map<std::string, std::chrono::steady_clock::time_point, std::less<>> handed;
  {
    std::lock_guard handed_lock(handed_over_mutex_);
    handed = handed_over_;
  }
  context.handed_over = [&handed](std::string_view gtrid) { return handed.find(gtrid) != handed.end(); };
  context.terminate_others = options_.terminate_others.value_or(options_.protocol != commit_protocol::two_phase);
  context.precommit_timeout = options_.precommit_timeout;
  context.first_seen = &marker_sightings_;
  recovery_report report;
  try {
    report = run_recovery(context);
  } catch (...) {
    metrics_.recovery_failed();
    throw;
  }
  metrics_.recovery_ran(report);
  // Handed-over work is done when this run saw every RM and left nothing of it: its decision was
  // completed, or (no decision) nothing of it was prepared anywhere, and enough time passed for a
  // prepare that was still on its way when its answer was lost to have shown up.
  if (report.unreachable_rms.empty()) {
    auto grace = 2 * options_.prepare_timeout;
    auto now = std::chrono::steady_clock::now();
    std::lock_guard handed_lock(handed_over_mutex_);
    for (const auto& [gtrid, since] : handed) {
      bool left = std::any_of(report.items.begin(), report.items.end(), [&](const recovery_item& item) {
        return item.gtrid == gtrid &&
               (item.result == recovery_result::unresolved || item.result == recovery_result::skipped_live);
      });
      bool completed = std::find(report.completed.begin(), report.completed.end(), gtrid) != report.completed.end();
      bool had_decision = std::any_of(report.items.begin(), report.items.end(), [&](const recovery_item& item) {
        return item.gtrid == gtrid && item.decision == "commit";
      });
      if (!left && (completed || (!had_decision && now - since > grace))) handed_over_.erase(gtrid);
    }
  }
  if (report.unresolved() || report.heuristic()) {
    XATM_LOG(recovery, warning) << "recovery left work unresolved: " << report.unreachable_rms.size()
                                << " RMs unreachable, " << report.items.size() << " branches listed";
  }
  return report;
}

void tm_core::recover_once_then_in_background() {
  std::call_once(initial_recovery_, [this] {
    (void)recover();  // unresolved work is logged and retried by the background thread
    if (options_.recovery_interval.count() <= 0) return;
    recovery_thread_ = std::thread([this] {
      auto next_run = std::chrono::steady_clock::now() + options_.recovery_interval;
      std::unique_lock lock(stop_mutex_);
      while (!stopping_) {
        stop_requested_.wait_until(lock, next_run, [this] { return stopping_ || markers_backlog_; });
        if (stopping_) break;
        const bool backlog = std::exchange(markers_backlog_, false);
        lock.unlock();
        try {
          if (std::chrono::steady_clock::now() >= next_run) {
            (void)recover();  // the report is logged; nobody waits for it here
            next_run = std::chrono::steady_clock::now() + options_.recovery_interval;
          } else if (backlog) {
            markers_.delete_finished_markers();  // many finished transactions' markers: now
          }
        } catch (const std::exception& e) {
          XATM_LOG(recovery, error) << "background recovery failed: " << e.what();
        }
        lock.lock();
      }
    });
  });
}

void tm_core::stop_background_recovery() noexcept {
  {
    std::lock_guard lock(stop_mutex_);
    stopping_ = true;
  }
  stop_requested_.notify_all();
  if (recovery_thread_.joinable()) recovery_thread_.join();
}

// ---- counters ---------------------------------------------------------------------------------------

tm_statistics tm_core::statistics() const noexcept {
  tm_statistics stats;
  metrics_.fill(stats);
  const auto store_stats = store_->stats();
  stats.decisions_logged = store_stats.decisions_written;
  stats.log_batches = store_stats.batches;
  // Every record deleted was pending at open or written since; the two counts are read one
  // after the other, so a record written and deleted in between could take this below zero.
  const std::uint64_t present = pending_at_open_ + store_stats.decisions_written;
  stats.pending_decisions = present > store_stats.decisions_deleted ? present - store_stats.decisions_deleted : 0;
  return stats;
}

tm_health tm_core::health() const {
  tm_health health;
  if (auto cause = store_->failure_cause()) {
    health.log_usable = false;
    health.log_failure = cause->message;
  }
  const tm_statistics stats = statistics();
  health.recovery_outstanding_items = stats.recovery.last_run_outstanding;
  health.recovery_outstanding = health.recovery_outstanding_items > 0;
  health.pending_decisions = stats.pending_decisions;
  health.last_recovery_unix_ms = stats.recovery.last_run_unix_ms;
  return health;
}

// ---- connectors ---------------------------------------------------------------------------------------

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
  auto expanded = chosen->expand(settings);
  if (!expanded) refuse(expanded.error().message);
  if (expanded.value().values().empty()) {
    refuse("the connection string is empty (give at least host or unix_socket, dbname and user)");
  }
  auto known = chosen->check_keywords(expanded.value());
  if (!known) refuse(known.error().message);
  // Read once now only to refuse a bad file early; each connect reads it again (sql_adapter).
  if (auto password = with_password_from_file(expanded.value()); !password) refuse(password.error().message);
  // Connecting is bounded like every other call the TM makes (tm_options::rm_call_timeout).
  connection_settings bounded = with_connect_timeout(std::move(expanded).value(), connect_timeout);
  return [rm_name, bounded, chosen] { return chosen->connect(rm_name, bounded); };
}

connection_settings with_connect_timeout(connection_settings settings, std::chrono::milliseconds timeout) {
  if (settings.get("connect_timeout") || timeout.count() <= 0) return settings;
  auto seconds = std::chrono::ceil<std::chrono::seconds>(timeout).count();
  settings.set("connect_timeout", std::to_string(seconds));
  return settings;
}

}  // namespace xatm::detail
