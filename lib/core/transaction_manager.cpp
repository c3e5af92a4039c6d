// The transaction manager: a thin handle on its core (tm_core.h). Opening the log, registering
// RMs, handing out connections and global transactions; the protocol lives in
// two_phase_commit.cpp and marker_unit.cpp, recovery in recovery.cpp.
#include "xatm/transaction_manager.h"

#include <utility>

#include "core/logging.h"
#include "core/tm_access.h"
#include "core/tm_core.h"
#include "xatm/error.h"

namespace xatm {

namespace {

std::shared_ptr<detail::tm_core> open_core(tm_options options, const detail::tm_wiring& wiring) {
  if (auto valid = validate_tm_id(options.tm_id); !valid) throw configuration_error(valid.error());
  auto store = detail::open_decision_log(options.log_path, options.tm_id, wiring.log_vfs);
  return std::make_shared<detail::tm_core>(std::move(options), std::move(store));
}

}  // namespace

transaction_manager::transaction_manager(const tm_options& options) : transaction_manager(options, {}) {}

transaction_manager::transaction_manager(tm_options options, const detail::tm_wiring& wiring)
    : core_(open_core(std::move(options), wiring)) {
  XATM_LOG(tm, info) << "transaction manager " << core_->options().tm_id << " incarnation "
                     << core_->store().incarnation() << " opened log " << core_->options().log_path;
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
  rm_connector connector = detail::make_connector(name, dialect, settings.value(), core_->options().rm_call_timeout);
  XATM_LOG(tm, info) << "registered RM " << name << " (" << dialect << "): " << settings.value().describe();
  core_->register_rm(std::move(name), std::move(connector));
}

void transaction_manager::register_tcc(std::string name, std::shared_ptr<tcc_participant> participant) {
  core_->register_tcc(name, std::move(participant));
  XATM_LOG(tm, info) << "registered TCC participant " << name;
}

std::unique_ptr<connection> transaction_manager::connect(std::string_view rm_name) {
  // A name that could not have been registered is not quoted back (it may hold any bytes).
  if (auto valid = validate_rm_name(rm_name); !valid) throw configuration_error(valid.error());
  if (!core_->is_registered(rm_name)) {
    throw configuration_error(
        make_failure(xa_code::invalid, "no RM named '" + std::string(rm_name) + "' is registered"));
  }
  return core_->connect_for_application(rm_name);
}

global_transaction transaction_manager::begin() { return begin(core_->options().protocol); }

global_transaction transaction_manager::begin(commit_protocol protocol) {
  // Before the first transaction: resolve what earlier incarnations left, then keep doing so in
  // the background.
  core_->recover_once_then_in_background();
  return global_transaction(core_, core_->next_gtrid(protocol), protocol);
}

const std::string& transaction_manager::tm_id() const noexcept { return core_->options().tm_id; }

std::uint64_t transaction_manager::incarnation() const noexcept { return core_->store().incarnation(); }

const std::string& transaction_manager::incarnation_id() const noexcept { return core_->store().incarnation_id(); }

tm_statistics transaction_manager::statistics() const noexcept { return core_->statistics(); }

tm_health transaction_manager::health() const { return core_->health(); }

namespace detail {

std::unique_ptr<transaction_manager> tm_access::open(tm_options options, const tm_wiring& wiring) {
  return std::unique_ptr<transaction_manager>(new transaction_manager(std::move(options), wiring));
}

void tm_access::register_rm(transaction_manager& tm, std::string name, rm_connector connector) {
  tm.core_->register_rm(std::move(name), std::move(connector));
}

}  // namespace detail

}  // namespace xatm
