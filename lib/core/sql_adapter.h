// Internal: the base of the SQL adapters (lib/postgresql, lib/mysql): what they share above their
// drivers. It keeps the connection settings as configured and as used by the last connect (a
// URI expanded, password_file read; the password only to scrub it out of driver messages) and the read-only flag learned at end, runs the connect sequence (drop the old
// session, refuse a keyword the backend does not know, open), and writes the debug records of a
// verb's outcome and of a connection that goes away under a branch. An adapter is a
// resource_manager: one thread at a time per object (xatm/resource_manager.h). This header is
// what an adapter builds on: it brings core's logging (XATM_LOG) and c_handle along.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "core/c_handle.h"
#include "core/logging.h"
#include "xatm/connection_settings.h"
#include "core/resource_manager.h"

namespace xatm::detail {

class backend;

class sql_adapter : public resource_manager {
 public:
  // connect()'s first connection; later ones come through reconnect().
  [[nodiscard]] result<void> open() { return do_connect(); }

  // The backend of this connection's dialect (core/backend.h, backend_of()): the statements core
  // runs on it for itself, and the keywords do_connect() accepts.
  [[nodiscard]] virtual const backend& sql_backend() const noexcept = 0;

 protected:
  // `channel`: the adapter's log channel (xatm.pg, xatm.mysql), for the records written here.
  sql_adapter(std::string rm_name, connection_settings settings, log_channel channel);

  // The settings of the connection being opened: keywords only (a URI expanded by the backend),
  // the password read from password_file. For the driver; describe() them for people.
  const connection_settings& settings() const noexcept { return settings_; }
  // Only to scrub it out of the driver's messages; empty when none was set (or it comes from a
  // source the driver reads itself: libpq's passfile, a MariaDB option file).
  const std::string& password() const noexcept { return password_; }

  // Learned at end: the branch wrote nothing, so prepare finishes it at once (vote::read_only).
  bool read_only() const noexcept { return read_only_; }
  void set_read_only(bool wrote_nothing) noexcept { read_only_ = wrote_nothing; }
  bool branch_wrote_nothing() const noexcept final { return read_only_; }

  // Closes the old session (close_connection("reconnecting")), has the backend expand a URI,
  // refuses a keyword the backend does not know with a message that names it (a driver says less,
  // or nothing), reads password_file, then asks open_connection() for the new one.
  result<void> do_connect() final;
  // Opens the driver's connection. `description` is "connect to <settings, password redacted>",
  // for messages.
  virtual result<void> open_connection(const std::string& description) = 0;
  // Drops the connection, if there is one (log_closing(why) first): the server rolls back an
  // unprepared branch of the session, a prepared one stays.
  virtual void close_connection(const char* why) noexcept = 0;

  // For destructors: a debug record of what becomes of the branch the connection still carries,
  // if `has_connection` and it carries one. Never throws.
  void log_branch_left(bool has_connection) const noexcept;
  // For close_connection(): a debug record "closing the connection: <why>". Never throws.
  void log_closing(const char* why) const noexcept;

  // A debug record of a verb's outcome; `what()` describes the verb, and is only called when a
  // sink wants the record (a verb that succeeds builds no text).
  template <class describe>
  void log_outcome(const describe& what, const result<vote>& answer) const {
    if (answer.ok()) {
      XATM_LOG_TO(channel_, debug) << "[" << name() << "] " << what() << ": ok"
                                   << (answer.value() == vote::read_only ? " (read-only)" : "");
    } else {
      XATM_LOG_TO(channel_, debug) << "[" << name() << "] " << what() << ": " << answer.error().describe();
    }
  }

  // A verb's answer once its session is lost and the connection closed: done for a rollback of
  // the connection's own unprepared branch (the server rolls back the open transaction of a
  // session that ends: exactly what was asked), `cause` for anything else.
  template <class describe>
  result<vote> answer_for_lost_session(bool own_unprepared_rollback, const describe& what, failure cause) const {
    if (!own_unprepared_rollback) return cause;
    XATM_LOG_TO(channel_, debug) << "[" << name() << "] " << what()
                                 << ": connection lost, the server rolls the unprepared branch back";
    return vote::commit;
  }

  // resource_manager::outcome() for a call record with an `outcome` set once the verb finished:
  // hands it out and drops the record.
  template <class call_record>
  result<vote> take_outcome(std::optional<call_record>& pending) const {
    if (!pending || !pending->outcome) return fail(xa_code::protocol, "outcome() before the call finished");
    result<vote> answer = std::move(*pending->outcome);
    pending.reset();
    return answer;
  }

 private:
  connection_settings configured_;  // as the application gave them
  connection_settings settings_;    // as the last connect used them
  std::string password_;
  log_channel channel_;
  bool read_only_ = false;
};

// An adapter's connect() (include/xatm/postgresql.h, mysql.h): checks the RM name, then opens
// the first connection.
template <class adapter>
result<std::unique_ptr<resource_manager>> open_adapter(std::string rm_name, const connection_settings& settings) {
  if (auto valid = validate_rm_name(rm_name); !valid) return std::move(valid).error();
  auto rm = std::make_unique<adapter>(std::move(rm_name), settings);
  if (auto opened = rm->open(); !opened) return std::move(opened).error();
  return std::unique_ptr<resource_manager>(std::move(rm));
}

// An adapter's handle(): its driver handle (adapter::connection()), nullptr for another kind of
// RM or when disconnected.
template <class adapter>
auto* native_connection(resource_manager& rm) noexcept {
  auto* found = dynamic_cast<adapter*>(&rm);
  return found == nullptr ? nullptr : found->connection();
}

}  // namespace xatm::detail
