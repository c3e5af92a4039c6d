// The SQL adapters' shared base (sql_adapter.h).
#include "core/sql_adapter.h"

#include "core/backend.h"

namespace xatm::detail {

sql_adapter::sql_adapter(std::string rm_name, connection_settings settings, log_channel channel)
    : resource_manager(std::move(rm_name)),
      settings_(std::move(settings)),
      password_(settings_.get("password").value_or("")),
      channel_(channel) {}

result<void> sql_adapter::do_connect() {
  close_connection("reconnecting");
  std::string description = "connect to " + settings_.describe();
  if (auto known = sql_backend().check_keywords(settings_); !known) {
    return fail(known.error().code, description + ": " + known.error().message);
  }
  return open_connection(description);
}

void sql_adapter::log_branch_left(bool has_connection) const noexcept {
  try {
    if (has_connection && state() != branch_state::idle) {
      XATM_LOG_TO(channel_, debug) << "[" << name() << "] closing the connection with branch "
                                   << (current_branch() ? current_branch()->to_string() : std::string("?")) << " "
                                   << branch_state_name(state())
                                   << (state() == branch_state::prepared ? ": it stays prepared on the server"
                                                                         : ": the server rolls it back");
    }
  } catch (...) {  // NOLINT(bugprone-empty-catch): a failing log sink must not end the process
  }
}

void sql_adapter::log_closing(const char* why) const noexcept {
  try {
    XATM_LOG_TO(channel_, debug) << "[" << name() << "] closing the connection: " << why;
  } catch (...) {  // NOLINT(bugprone-empty-catch): a failing log sink must not stop the close
  }
}

}  // namespace xatm::detail
