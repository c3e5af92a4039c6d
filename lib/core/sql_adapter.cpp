// The SQL adapters' shared base (sql_adapter.h).
#include "core/sql_adapter.h"

#include "core/backend.h"
#include "core/password_file.h"

namespace xatm::detail {

sql_adapter::sql_adapter(std::string rm_name, connection_settings settings, log_channel channel)
    : resource_manager(std::move(rm_name)),
      configured_(std::move(settings)),
      settings_(configured_),
      password_(settings_.get("password").value_or("")),
      channel_(channel) {}

result<void> sql_adapter::do_connect() {
  close_connection("reconnecting");
  std::string description = "connect to " + configured_.describe();
  auto expanded = sql_backend().expand(configured_);
  if (!expanded) return fail(expanded.error().code, description + ": " + expanded.error().message);
  if (auto known = sql_backend().check_keywords(expanded.value()); !known) {
    return fail(known.error().code, description + ": " + known.error().message);
  }
  // Read at every connect: a password changed in the file is used from the next connection on.
  auto resolved = with_password_from_file(expanded.value());
  if (!resolved) return fail(resolved.error().code, description + ": " + resolved.error().message);
  settings_ = std::move(resolved).value();
  password_ = settings_.get("password").value_or("");
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
