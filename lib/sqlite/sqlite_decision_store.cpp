#include "sqlite/sqlite_decision_store.h"

#include <utility>

#include "core/logging.h"
#include "sqlite/log_file.h"
#include "sqlite/log_format.h"
#include "sqlite/sqlite_connection.h"
#include "xatm/xid.h"

namespace xatm::detail {

sqlite_decision_store::sqlite_decision_store(const sqlite_store_options& options, log_lock lock, log_state state,
                                             std::unique_ptr<log_writer> writer)
    : path_(options.path),
      tm_id_(options.tm_id),
      vfs_name_(options.vfs_name),
      lock_(std::move(lock)),
      state_(std::move(state)),
      pins_(std::move(state_.pins)),
      writer_(std::move(writer)),
      queue_(std::make_unique<group_commit>(*writer_, path_)) {}

open_result<std::unique_ptr<sqlite_decision_store>> sqlite_decision_store::open(const sqlite_store_options& options) {
  auto misconfigured = [](failure cause) { return store_refusal{open_refusal::misconfigured, std::move(cause)}; };
  if (auto valid = validate_tm_id(options.tm_id); !valid) return misconfigured(std::move(valid).error());
  if (options.path.empty()) return misconfigured(make_failure(xa_code::invalid, "decision log path is empty"));
  if (!options.vfs_name.empty() && !vfs_registered(options.vfs_name)) {
    return misconfigured(
        make_failure(xa_code::invalid, "no SQLite VFS named '" + options.vfs_name + "' is registered"));
  }
  if (auto refused = check_directory(directory_of(options.path))) return std::move(*refused);
  auto lock = log_lock::acquire(options.path);
  if (!lock) return std::move(lock).refused();
  auto opened = open_database(options);
  if (!opened) return std::move(opened).refused();
  auto& [state, db] = opened.value();
  auto writer = log_writer::create(std::move(db), options.path);
  if (!writer) return store_refusal{open_refusal::unusable, std::move(writer).error()};
  std::unique_ptr<sqlite_decision_store> store(
      new sqlite_decision_store(options, std::move(lock).value(), std::move(state), std::move(writer).value()));
  XATM_LOG(log, info) << "decision log " << options.path << " open: tm_id " << store->tm_id_ << ", incarnation "
                      << store->state_.incarnation;
  return store;
}

// Under the log's lock: creates the log when neither it nor its -wal exists, checks the files'
// modes, and takes a new incarnation (log_format.h). Every refusal after the connection opened
// leaves the files exactly as found: no checkpoint, and the empty -wal/-shm SQLite creates on
// the first read removed again, so that the next open sees what this one saw.
open_result<std::pair<log_state, sqlite_handle>> sqlite_decision_store::open_database(
    const sqlite_store_options& options) {
  const std::string& path = options.path;
  auto unusable = [](failure cause) { return store_refusal{open_refusal::unusable, std::move(cause)}; };
  auto exists = file_exists(path);
  if (!exists) return unusable(std::move(exists).error());
  auto found = side_files::note(path);
  if (!found) return unusable(std::move(found).error());
  if (!exists.value()) {
    if (found.value().wal_existed()) {
      return unusable(make_failure(
          xa_code::rm_error,
          path + "-wal exists but " + path + " does not: the log was moved or deleted; " + never_recreate_advice));
    }
    auto created = create_by_rename(path, [&options](const std::string& building) {
      return write_new_log(building, options.tm_id, options.vfs_name);
    });
    if (!created) return unusable(std::move(created).error());
    XATM_LOG(log, info) << "created decision log " << path << " for tm_id " << options.tm_id;
  }
  if (auto refused = check_file_modes(path)) return std::move(*refused);
  auto db = open_connection(path, options.vfs_name, false);
  if (!db) return unusable(std::move(db).error());

  auto refuse = [&](store_refusal refusal) -> store_refusal {
    if (auto closed = close_connection(std::move(db).value(), false, "closing refused " + path); !closed) {
      XATM_LOG(log, error) << closed.error().message;
    }
    found.value().remove_new_empty();
    XATM_LOG(log, error) << refusal.cause.message;
    return refusal;
  };
  // An empty -wal holds no decision: the unclean-shutdown check counts it as missing, or an
  // empty one SQLite made for a reader (an operator's sqlite3 shell) would hide the loss.
  auto state = take_incarnation(db.value().get(), path, options.tm_id, found.value().wal_had_content());
  if (!state) return refuse(std::move(state).refused());
  if (auto modes = verify_file_modes(path); !modes) return refuse({open_refusal::unusable, std::move(modes).error()});
  return std::pair{std::move(state).value(), std::move(db).value()};
}

result<std::optional<int>> sqlite_decision_store::lock_holder(const std::string& path) {
  return log_lock::holder(path);
}

result<std::string> sqlite_decision_store::stored_tm_id(const std::string& path) {
  // Even a read-only connection makes SQLite create an empty -wal and a -shm (with the main
  // file's mode) when they are missing. Under the log's lock nobody else can be creating them,
  // so this read removes what it created and leaves the files as it found them. A log in use is
  // read without the lock: its owner has both files anyway.
  auto lock = log_lock::acquire(path);
  if (!lock && lock.refusal() != open_refusal::in_use) return failure(lock.error());
  auto found = side_files::note(path);
  auto tm_id = read_stored_tm_id(path);
  // Best effort: an empty -wal left behind holds nothing, and open() counts it as missing.
  if (lock && found) found.value().remove_new_empty();
  return tm_id;
}

sqlite_decision_store::~sqlite_decision_store() {
  queue_->stop();  // writes the completions still queued, which may yet fail the log
  if (auto closed = writer_->close(!queue_->failed()); !closed) {
    XATM_LOG(log, error) << "closing decision log " << path_ << ": " << closed.error().message;
  }
}

write_result sqlite_decision_store::record(const decision_record& decision) {
  // A malformed record is a programming error; nothing of it is written.
  if (!is_gtrid_of(decision.gtrid, tm_id_)) {
    return {write_outcome::not_written,
            make_failure(xa_code::invalid, "decision log: '" + decision.gtrid + "' is not a gtrid of tm_id " + tm_id_)};
  }
  // No XA branch at all is a transaction of TCC branches only: its decision is still needed.
  for (const std::string& rm_name : decision.branch_rms) {
    if (auto valid = validate_rm_name(rm_name); !valid) {
      failure cause = std::move(valid).error();
      cause.message = "decision for " + decision.gtrid + ": " + cause.message;
      return {write_outcome::not_written, std::move(cause)};
    }
  }
  return queue_->record(decision, decision.created_unix_ms != 0 ? decision.created_unix_ms : now_unix_ms());
}

void sqlite_decision_store::mark_complete(std::string_view gtrid) {
  if (!is_gtrid_of(gtrid, tm_id_)) {
    // Nothing to undo: a gtrid of another shape cannot be in this log.
    XATM_LOG(log, error) << "mark_complete: '" << gtrid << "' is not a gtrid of tm_id " << tm_id_ << "; ignored";
    return;
  }
  queue_->mark_complete(gtrid);
}

result<std::vector<decision_record>> sqlite_decision_store::pending() const {
  if (auto failed = queue_->failed_earlier()) return std::move(*failed);
  return read_decisions(path_, vfs_name_);
}

write_result sqlite_decision_store::record_tcc_branch(const tcc_branch_record& branch) {
  auto malformed = [&](const std::string& why) {
    return write_result(write_outcome::not_written,
                        make_failure(xa_code::invalid, "TCC branch record for " + branch.gtrid + ": " + why));
  };
  if (!is_gtrid_of(branch.gtrid, tm_id_)) return malformed("not a gtrid of tm_id " + tm_id_);
  if (branch.branch == 0) return malformed("branch number 0");
  if (branch.payload.size() > max_tcc_payload) return malformed("payload over 64 KiB");
  if (auto valid = validate_rm_name(branch.participant); !valid) return malformed(valid.error().message);
  // On the commit path, as a decision: a failed write fails the log for good (restart, then
  // recovery reads what reached the file). This record itself may or may not have.
  const bool failed_before = queue_->failed();
  auto written = queue_->exclusive([&] { return writer_->write_tcc_branch(branch); }, /*fatal=*/true);
  if (written) return {};
  return {failed_before ? write_outcome::not_written : write_outcome::unknown, std::move(written).error()};
}

result<std::vector<tcc_branch_record>> sqlite_decision_store::tcc_branches() const {
  if (auto failed = queue_->failed_earlier()) return std::move(*failed);
  return read_tcc_branches(path_, vfs_name_);
}

bool sqlite_decision_store::is_own_incarnation(std::string_view incarnation) const {
  return state_.is_own_incarnation(incarnation);
}

std::optional<pinned_identity> sqlite_decision_store::pinned(std::string_view rm_name) const {
  std::lock_guard lock(pins_mutex_);
  auto found = pins_.find(rm_name);
  if (found == pins_.end()) return std::nullopt;
  return found->second;
}

result<void> sqlite_decision_store::pin(const pinned_identity& identity) {
  if (auto valid = validate_rm_name(identity.rm_name); !valid) return std::move(valid).error();
  // Pins are rare (once per RM name for the log's life, and an operator's re-pin): a writer of
  // their own in the queue, so that the file and pins_ change together, one pin at a time.
  return queue_->exclusive([&]() -> result<void> {
    auto written = writer_->write_pin(identity);
    if (!written) return std::move(written).error();
    std::lock_guard lock(pins_mutex_);
    pins_.insert_or_assign(identity.rm_name, std::move(written).value());
    return {};
  });
}

result<pinned_identity> sqlite_decision_store::pin_if_absent(const pinned_identity& identity) {
  if (auto valid = validate_rm_name(identity.rm_name); !valid) return std::move(valid).error();
  // Looked up inside the exclusive writer: pins are written one at a time, so the check and the
  // write cannot be split by another pin.
  pinned_identity in_force;
  auto done = queue_->exclusive([&]() -> result<void> {
    {
      std::lock_guard lock(pins_mutex_);
      if (auto found = pins_.find(identity.rm_name); found != pins_.end()) {
        in_force = found->second;
        return {};
      }
    }
    auto written = writer_->write_pin(identity);
    if (!written) return std::move(written).error();
    in_force = written.value();
    std::lock_guard lock(pins_mutex_);
    pins_.insert_or_assign(identity.rm_name, std::move(written).value());
    return {};
  });
  if (!done) return std::move(done).error();
  return in_force;
}

}  // namespace xatm::detail
