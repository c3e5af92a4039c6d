#include "sqlite/decision_log.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <random>
#include <system_error>
#include <utility>

#include "core/logging.h"
#include "xatm/xid.h"

namespace xatm::detail {

namespace {

// Version 2 added the incarnations and rm_identities tables; a version 1 log is upgraded in place
// by the first open (its incarnations 1..N are recorded as legacy_incarnations).
constexpr const char* schema_version = "2";
constexpr const char* schema_version_1 = "1";
// The tables version 2 added, created by a new log and by the upgrade of a version 1 log.
constexpr const char* version_2_tables[] = {
    "CREATE TABLE incarnations(id TEXT PRIMARY KEY, number INTEGER NOT NULL, opened_unix_ms INTEGER NOT NULL)"
    " WITHOUT ROWID",
    "CREATE TABLE rm_identities(rm_name TEXT PRIMARY KEY, identity TEXT NOT NULL, description TEXT NOT NULL,"
    " pinned_unix_ms INTEGER NOT NULL) WITHOUT ROWID",
};
// The SQLite header's application_id: xatm's formatID, "xat1". It tells an xatm log from any
// other SQLite file before a single table is read.
constexpr int application_id = xatm_format_id;
// How long a completion waits for a forced batch to ride along with before it is written alone.
constexpr auto completion_delay = std::chrono::milliseconds(50);
// The longest a batch's leader waits for the callers of the last batch to come back (see
// write_queued).
constexpr auto max_gather_wait = std::chrono::microseconds(200);
// Checkpoint once the WAL holds this many frames (SQLite's own default), after a batch's waiters
// are woken rather than inside its COMMIT, so that no acknowledgement waits for a checkpoint.
constexpr int checkpoint_frames = 1000;
// Only this process uses the file (the flock), but an operator's read-only sqlite3 shell may
// briefly hold a lock; waiting a little beats failing the whole TM for it.
constexpr int busy_timeout_ms = 10'000;

// What an operator must read when a damaged or foreign file is refused.
constexpr const char* never_recreate_advice =
    "never delete or recreate a decision log: the commit decisions in it would be presumed aborted. "
    "Restore it from a copy, or resolve this TM's prepared transactions by hand before moving it aside";
constexpr const char* restart_advice =
    "stop this TM, restart it and let recovery resolve the in-doubt transactions from what the file "
    "holds; do not roll back their branches by hand";

std::string errno_text(int error) { return std::generic_category().message(error); }

failure io_failure(xa_code code, std::string message, int native_code = 0) {
  failure cause = make_failure(code, std::move(message));
  cause.native_code = native_code;
  return cause;
}

// Names for the result codes an operator is most likely to meet; sqlite3_errstr() for the rest.
std::string sqlite_code_text(int code) {
  const char* name = nullptr;
  switch (code) {
    case SQLITE_FULL: name = "SQLITE_FULL: the disk is full"; break;
    case SQLITE_IOERR_FSYNC: name = "SQLITE_IOERR_FSYNC: fsync failed"; break;
    case SQLITE_IOERR_WRITE: name = "SQLITE_IOERR_WRITE: write failed"; break;
    case SQLITE_IOERR_READ: name = "SQLITE_IOERR_READ"; break;
    case SQLITE_IOERR_SHORT_READ: name = "SQLITE_IOERR_SHORT_READ"; break;
    case SQLITE_CORRUPT: name = "SQLITE_CORRUPT"; break;
    case SQLITE_NOTADB: name = "SQLITE_NOTADB"; break;
    case SQLITE_BUSY: name = "SQLITE_BUSY"; break;
    case SQLITE_READONLY: name = "SQLITE_READONLY"; break;
    case SQLITE_CANTOPEN: name = "SQLITE_CANTOPEN"; break;
    default: break;
  }
  return name != nullptr ? name : "SQLite code " + std::to_string(code);
}

// "<what>: <SQLite's message> (<code>)", with the extended code as the native code.
failure sqlite_failure(sqlite3* db, int code, const std::string& what) {
  std::string message = what + ": " + (db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(code));
  return io_failure(xa_code::rm_error, message + " (" + sqlite_code_text(code) + ")", code);
}

// A batch whose write failed with `code`. SQLITE_FULL: the write failed for want of space before
// the commit frame, so nothing of the batch is durable. Any other failure may have left the
// frames on disk (a failed fsync does not take them back).
write_result failed_write(sqlite3* db, int code, const std::string& what) {
  return {code == SQLITE_FULL ? write_outcome::not_written : write_outcome::unknown, sqlite_failure(db, code, what)};
}

bool is_damage(int code) {
  const int primary = code & 0xff;
  return primary == SQLITE_NOTADB || primary == SQLITE_CORRUPT;
}

std::string directory_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string mode_text(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

// true: exists; false: does not; failure: cannot tell (permissions, I/O).
result<bool> file_exists(const std::string& path) {
  struct stat status {};
  if (::lstat(path.c_str(), &status) == 0) return true;
  const int error = errno;
  if (error == ENOENT) return false;
  return io_failure(xa_code::rm_error, "cannot stat " + path + ": " + errno_text(error), error);
}

// true: exists and holds at least one byte; false: does not exist or is empty; failure: cannot tell.
result<bool> file_has_content(const std::string& path) {
  struct stat status {};
  if (::lstat(path.c_str(), &status) == 0) return status.st_size > 0;
  const int error = errno;
  if (error == ENOENT) return false;
  return io_failure(xa_code::rm_error, "cannot stat " + path + ": " + errno_text(error), error);
}

// Another user who can write the directory could delete or replace the log: refuse it. Every
// failure is xa_code::invalid: the configuration names an unsuitable directory.
result<void> check_directory(const std::string& directory) {
  struct stat status {};
  if (::stat(directory.c_str(), &status) != 0) {
    const int error = errno;
    return io_failure(xa_code::invalid,
                      "decision log directory " + directory + " is not usable: " + errno_text(error), error);
  }
  if (!S_ISDIR(status.st_mode)) {
    return make_failure(xa_code::invalid, "decision log directory " + directory + " is not a directory");
  }
  if ((status.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return make_failure(xa_code::invalid,
                        "decision log directory " + directory + " is writable by group or others (mode " +
                            mode_text(status.st_mode) +
                            "): another user could delete or replace the log; use a directory only the TM's "
                            "user can write (chmod go-w " + directory + ")");
  }
  return {};
}

// The log's files must be private to the TM's user. Writable by others: refused (they may have
// been tampered with). Readable by others: tightened to 0600, they hold no secrets anyway.
open_result<void> check_file_mode(const std::string& path) {
  struct stat status {};
  if (::lstat(path.c_str(), &status) != 0) {
    const int error = errno;
    if (error == ENOENT) return {};
    return {open_refusal::unusable,
            io_failure(xa_code::rm_error, "cannot stat " + path + ": " + errno_text(error), error)};
  }
  if (!S_ISREG(status.st_mode)) {
    return {open_refusal::misconfigured,
            make_failure(xa_code::invalid, path + " is not a regular file; " + never_recreate_advice)};
  }
  if ((status.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return {open_refusal::misconfigured,
            make_failure(xa_code::invalid, path + " is writable by group or others (mode " +
                                               mode_text(status.st_mode) +
                                               "): it may have been tampered with; check it, then chmod 0600 it")};
  }
  if ((status.st_mode & 0077) != 0) {
    if (::chmod(path.c_str(), 0600) != 0) {
      const int error = errno;
      return {open_refusal::unusable,
              io_failure(xa_code::rm_error, "cannot chmod 0600 " + path + ": " + errno_text(error), error)};
    }
    XATM_LOG(log, info) << "tightened the mode of " << path << " from " << mode_text(status.st_mode) << " to 0600";
  }
  return {};
}

result<void> fsync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    return io_failure(xa_code::rm_error, "cannot open " + path + " to fsync it: " + errno_text(error), error);
  }
  const int synced = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  if (synced != 0) return io_failure(xa_code::rm_error, "fsync of " + path + " failed: " + errno_text(error), error);
  return {};
}

// Removes a file that may or may not exist.
result<void> remove_if_present(const std::string& path) {
  if (::unlink(path.c_str()) == 0 || errno == ENOENT) return {};
  const int error = errno;
  return io_failure(xa_code::rm_error, "cannot remove " + path + ": " + errno_text(error), error);
}

std::optional<int> parse_int(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  int value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

std::optional<int> read_lock_pid(int fd) {
  char buffer[32];
  const ssize_t size = ::pread(fd, buffer, sizeof buffer, 0);
  if (size <= 0) return std::nullopt;
  return parse_int(std::string_view(buffer, static_cast<std::size_t>(size)));
}

std::string lock_path_of(const std::string& path) { return path + ".lock"; }

// flock, not fcntl locks: an flock belongs to the open file description, so a second open in the
// same process is refused too, and SQLite's own fcntl locks on the database are not disturbed.
open_result<int> acquire_lock(const std::string& path) {
  const std::string lock_path = lock_path_of(path);
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    const int error = errno;
    return {open_refusal::unusable,
            io_failure(xa_code::rm_error, "cannot open lock file " + lock_path + ": " + errno_text(error), error)};
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    const auto holder = read_lock_pid(fd);
    ::close(fd);
    if (error == EWOULDBLOCK) {
      return {open_refusal::in_use,
              make_failure(xa_code::invalid,
                           "decision log " + path + " is in use by process " +
                               (holder ? std::to_string(*holder) : std::string("(pid not yet written)")) +
                               ": only one TM or recovery tool may use a log at a time; stop that process first")};
    }
    return {open_refusal::unusable,
            io_failure(xa_code::rm_error, "cannot lock " + lock_path + ": " + errno_text(error), error)};
  }
  // The pid is a hint for other processes' messages; the lock itself is the flock.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int error = errno;
    ::close(fd);
    return {open_refusal::unusable, io_failure(xa_code::rm_error, "cannot write the pid into " + lock_path + ": " +
                                                                      errno_text(error), error)};
  }
  return fd;
}

result<sqlite_handle> open_connection(const std::string& path, const std::string& vfs_name, int flags) {
  sqlite3* raw = nullptr;
  const int code = sqlite3_open_v2(path.c_str(), &raw, flags, vfs_name.empty() ? nullptr : vfs_name.c_str());
  sqlite_handle db(raw);  // sqlite3_open_v2 allocates a handle even when it fails
  if (code != SQLITE_OK) return sqlite_failure(db.get(), code, "cannot open decision log " + path);
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), busy_timeout_ms);
  return db;
}

result<sqlite_statement> prepare(sqlite3* db, std::string_view sql) {
  sqlite3_stmt* raw = nullptr;
  const int code = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                                      &raw, nullptr);
  sqlite_statement statement(raw);
  if (code != SQLITE_OK) return sqlite_failure(db, code, "cannot prepare \"" + std::string(sql) + "\"");
  return statement;
}

result<void> exec(sqlite3* db, const char* sql) {
  const int code = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  if (code != SQLITE_OK) return sqlite_failure(db, code, std::string("\"") + sql + "\" failed");
  return {};
}

// The first column of the first row, as text; nullopt when there is no row.
result<std::optional<std::string>> query_text(sqlite3* db, std::string_view sql, const char* parameter = nullptr) {
  auto statement = prepare(db, sql);
  if (!statement) return std::move(statement).error();
  sqlite3_stmt* raw = statement.value().get();
  if (parameter != nullptr) sqlite3_bind_text(raw, 1, parameter, -1, SQLITE_STATIC);
  const int code = sqlite3_step(raw);
  if (code == SQLITE_DONE) return std::optional<std::string>();
  if (code != SQLITE_ROW) return sqlite_failure(db, code, "\"" + std::string(sql) + "\" failed");
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(raw, 0));
  return std::optional<std::string>(text != nullptr ? text : "");
}

result<std::string> read_meta(sqlite3* db, const std::string& path, const char* key) {
  auto value = query_text(db, "SELECT value FROM meta WHERE key = ?1", key);
  if (!value) return std::move(value).error();
  if (!value.value()) {
    return make_failure(xa_code::rm_error,
                        "decision log " + path + " has no '" + key + "' in its meta table: it is damaged; " +
                            never_recreate_advice);
  }
  return std::move(*value.value());
}

// `PRAGMA quick_check` answers one row "ok", or rows describing the damage.
result<void> quick_check(sqlite3* db, const std::string& path) {
  auto statement = prepare(db, "PRAGMA quick_check(5)");
  if (!statement) return std::move(statement).error();
  std::string problems;
  int code = SQLITE_OK;
  while ((code = sqlite3_step(statement.value().get())) == SQLITE_ROW) {
    const auto* row = reinterpret_cast<const char*>(sqlite3_column_text(statement.value().get(), 0));
    const std::string_view text = row != nullptr ? row : "";
    if (text == "ok") continue;
    problems += problems.empty() ? "" : "; ";
    for (const char c : text) problems.push_back(c == '\n' ? ' ' : c);  // one line per message
  }
  if (code != SQLITE_DONE) return sqlite_failure(db, code, "PRAGMA quick_check of " + path + " failed");
  if (!problems.empty()) {
    return make_failure(xa_code::rm_error, "decision log " + path + " is damaged: it fails PRAGMA quick_check (" +
                                               problems + "): refusing to use it; " + never_recreate_advice);
  }
  return {};
}

// The tm_id in a log's meta table, through a read-only connection of its own.
result<std::string> read_stored_tm_id(const std::string& path) {
  auto db = open_connection(path, {}, SQLITE_OPEN_READONLY);
  if (!db) return std::move(db).error();
  auto tm_id = read_meta(db.value().get(), path, "tm_id");
  if (!tm_id && is_damage(tm_id.error().native_code)) {
    return make_failure(xa_code::rm_error, "decision log " + path + " is damaged or not an SQLite database (" +
                                               tm_id.error().message + "): refusing to use it; " +
                                               never_recreate_advice);
  }
  return tm_id;
}

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool all_digits(std::string_view text) {
  if (text.empty()) return false;
  for (const char c : text) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// `<tm_id>.<incarnation>.<seq>[.p3]` with this TM's tm_id (a legacy or a random incarnation), checked without allocating: record()
// runs it for every decision. It also keeps '\n' and ',' (the log's separators) out of the file.
bool is_gtrid_of(std::string_view gtrid, std::string_view tm_id) {
  if (gtrid.size() > max_gtrid_size || gtrid.size() <= tm_id.size() + 1) return false;
  if (gtrid.substr(0, tm_id.size()) != tm_id || gtrid[tm_id.size()] != '.') return false;
  std::string_view rest = gtrid.substr(tm_id.size() + 1);
  if (rest.ends_with(".p3")) rest.remove_suffix(3);
  const auto dot = rest.find('.');
  if (dot == std::string_view::npos) return false;
  const std::string_view incarnation = rest.substr(0, dot);
  return (all_digits(incarnation) || is_incarnation_id(incarnation)) && all_digits(rest.substr(dot + 1));
}

// 12 characters: a letter, then 11 of base32's [a-z2-7], from the kernel's random source.
std::string random_incarnation_id() {
  constexpr std::string_view letters = "abcdefghijklmnopqrstuvwxyz";
  constexpr std::string_view base32 = "abcdefghijklmnopqrstuvwxyz234567";
  std::random_device source;  // getrandom(2) on Linux
  const std::uint64_t bits = std::uint64_t(source()) << 32 | source();
  std::string id(1, letters[bits % 26]);
  std::uint64_t rest = bits / 26;
  while (id.size() < incarnation_id_size) {
    id += base32[rest & 31];
    rest >>= 5;
  }
  return id;
}

result<decision_state> parse_state(std::string_view text) {
  if (text == "commit") return decision_state::commit;
  if (text == "precommit") return decision_state::precommit;
  return make_failure(xa_code::rm_error, "unknown decision state '" + std::string(text) + "'");
}

// A new log is built under "<path>.new" and renamed into place only once complete, so a file at
// `path` is always a whole log: an empty or half-built one can only mean damage, and is refused.
result<void> create_log(const std::string& path, const std::string& tm_id, const std::string& vfs_name) {
  const std::string building = path + ".new";
  // Leftovers of a creation that crashed; they never held a decision (only `path` ever does).
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    if (auto removed = remove_if_present(building + suffix); !removed) return removed;
  }
  // Created here, not by SQLite, so the mode is 0600 whatever the umask; SQLite gives the -wal and
  // -shm files the mode of the database file.
  const int fd = ::open(building.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    const int error = errno;
    return io_failure(xa_code::rm_error, "cannot create " + building + ": " + errno_text(error), error);
  }
  const int chmodded = ::fchmod(fd, 0600);
  const int error = errno;
  ::close(fd);
  if (chmodded != 0) return io_failure(xa_code::rm_error, "cannot chmod " + building + ": " + errno_text(error), error);

  {
    auto db = open_connection(building, vfs_name, SQLITE_OPEN_READWRITE);
    if (!db) return std::move(db).error();
    sqlite3* raw = db.value().get();
    // Small pages, set before the first write: a decision's commit then writes about 1 KiB of WAL
    // frames instead of 4 KiB and more, and its fsync costs less (measured with
    // xatm-decision-log-bench on one committer: 4096-byte pages F + 28 us, 1024 F + 18 us, where
    // F is one fsync of a 4 KiB block). A log keeps the page size it was created with.
    if (auto sized = exec(raw, "PRAGMA page_size=1024"); !sized) return sized;
    auto mode = query_text(raw, "PRAGMA journal_mode=WAL");
    if (!mode) return std::move(mode).error();
    if (mode.value().value_or("") != "wal") {
      return make_failure(xa_code::rm_error, "SQLite refused WAL mode for " + building);
    }
    const std::string set_application_id = "PRAGMA application_id=" + std::to_string(application_id);
    for (const char* sql : {"PRAGMA synchronous=FULL", set_application_id.c_str(), "BEGIN IMMEDIATE",
                            "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
                            // WITHOUT ROWID: one b-tree keyed by gtrid, so an insert touches one tree, not two.
                            "CREATE TABLE decisions(gtrid TEXT PRIMARY KEY,"
                            " state TEXT NOT NULL CHECK(state IN ('commit','precommit')),"
                            " branches TEXT NOT NULL, created_unix_ms INTEGER NOT NULL) WITHOUT ROWID",
                            version_2_tables[0], version_2_tables[1]}) {
      if (auto done = exec(raw, sql); !done) return done;
    }
    auto insert = prepare(raw, "INSERT INTO meta(key, value) VALUES (?1, ?2)");
    if (!insert) return std::move(insert).error();
    // incarnation 0: the open that follows makes it 1. clean_shutdown 1: closed, nothing in a WAL.
    const std::pair<const char*, const char*> rows[] = {
        {"schema_version", schema_version}, {"tm_id", tm_id.c_str()}, {"incarnation", "0"}, {"clean_shutdown", "1"},
        {"legacy_incarnations", "0"}};
    for (const auto& [key, value] : rows) {
      sqlite3_stmt* statement = insert.value().get();
      sqlite3_bind_text(statement, 1, key, -1, SQLITE_STATIC);
      sqlite3_bind_text(statement, 2, value, -1, SQLITE_STATIC);
      const int code = sqlite3_step(statement);
      sqlite3_reset(statement);
      if (code != SQLITE_DONE) return sqlite_failure(raw, code, "cannot initialise " + building);
    }
    insert = sqlite_statement();
    if (auto done = exec(raw, "COMMIT"); !done) return done;
    // Closing the only connection checkpoints the WAL into the file and deletes the WAL.
    sqlite3* closing = db.value().release();
    if (const int code = sqlite3_close(closing); code != SQLITE_OK) {
      sqlite_handle still_open(closing);
      return sqlite_failure(closing, code, "cannot close " + building);
    }
  }
  auto wal_left = file_exists(building + "-wal");
  if (!wal_left) return std::move(wal_left).error();
  if (wal_left.value()) {
    return make_failure(xa_code::rm_error, "SQLite left " + building + "-wal behind after closing; not using it");
  }
  if (auto synced = fsync_path(building, O_RDONLY); !synced) return synced;
  // RENAME_NOREPLACE: never clobber a log that appeared meanwhile (nothing else should create one).
  if (::renameat2(AT_FDCWD, building.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) != 0) {
    const int rename_error = errno;
    return io_failure(xa_code::rm_error, "cannot rename " + building + " to " + path + ": " + errno_text(rename_error),
                      rename_error);
  }
  // The rename is durable only once the directory is.
  if (auto synced = fsync_path(directory_of(path), O_RDONLY | O_DIRECTORY); !synced) return synced;
  XATM_LOG(log, info) << "created decision log " << path << " for tm_id " << tm_id;
  return {};
}

}  // namespace

const char* decision_state_name(decision_state state) noexcept {
  return state == decision_state::precommit ? "precommit" : "commit";
}

void sqlite_closer::operator()(sqlite3* db) const noexcept {
  // close_v2 never leaves the handle half-open; a failure here means a statement leaked.
  if (const int code = sqlite3_close_v2(db); code != SQLITE_OK) {
    XATM_LOG(log, error) << "closing an SQLite connection failed: " << sqlite3_errstr(code);
  }
}

void sqlite_statement_finalizer::operator()(sqlite3_stmt* statement) const noexcept {
  // sqlite3_finalize repeats the statement's last error, which was handled where it happened.
  (void)sqlite3_finalize(statement);
}

// A record() caller's entry in the queue. It lives on the caller's stack: the caller blocks
// until its batch is written (`done`), so the batch's writer may bind the caller's strings
// without copying.
struct decision_log::queued_decision {
  const decision_record* record = nullptr;
  std::int64_t created_unix_ms = 0;
  bool done = false;     // guarded by mutex_
  write_result outcome;  // set by the batch's writer before `done`; default: durable
};

decision_log::decision_log(const decision_log_options& options, int lock_fd)
    : path_(options.path), tm_id_(options.tm_id), vfs_name_(options.vfs_name), lock_fd_(lock_fd) {}

open_result<std::unique_ptr<decision_log>> decision_log::open(const decision_log_options& options) {
  auto misconfigured = [](failure cause) { return store_refusal{open_refusal::misconfigured, std::move(cause)}; };
  if (auto valid = validate_tm_id(options.tm_id); !valid) return misconfigured(std::move(valid).error());
  if (options.path.empty()) return misconfigured(make_failure(xa_code::invalid, "decision log path is empty"));
  if (!options.vfs_name.empty() && sqlite3_vfs_find(options.vfs_name.c_str()) == nullptr) {
    return misconfigured(
        make_failure(xa_code::invalid, "no SQLite VFS named '" + options.vfs_name + "' is registered"));
  }
  if (auto directory = check_directory(directory_of(options.path)); !directory) {
    return misconfigured(std::move(directory).error());
  }
  auto lock_fd = acquire_lock(options.path);
  if (!lock_fd) return std::move(lock_fd).refused();
  // From here the object owns the lock: any early return releases it in the destructor.
  std::unique_ptr<decision_log> opened(new decision_log(options, lock_fd.value()));
  if (auto database = opened->open_database(); !database) return std::move(database).refused();
  if (auto prepared = opened->prepare_writer(); !prepared) {
    return store_refusal{open_refusal::unusable, std::move(prepared).error()};
  }
  opened->background_ = std::thread([raw = opened.get()] { raw->run_background(); });
  XATM_LOG(log, info) << "decision log " << options.path << " open: tm_id " << opened->tm_id_ << ", incarnation "
                      << opened->incarnation_;
  return opened;
}

result<std::optional<int>> decision_log::lock_holder(const std::string& path) {
  const std::string lock_path = lock_path_of(path);
  const int fd = ::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    const int error = errno;
    if (error == ENOENT) return std::optional<int>();
    return io_failure(xa_code::rm_error, "cannot open lock file " + lock_path + ": " + errno_text(error), error);
  }
  // Taking a shared lock for an instant is the only way flock() answers "is it held?".
  std::optional<int> holder;
  std::optional<failure> problem;
  // (An open() racing with that instant may be refused as "in use"; it names this pid then.)
  if (::flock(fd, LOCK_SH | LOCK_NB) == 0) {
    (void)::flock(fd, LOCK_UN);  // close() below releases it anyway
  } else if (errno == EWOULDBLOCK) {
    holder = read_lock_pid(fd);
    if (!holder) {
      problem = make_failure(xa_code::rm_error, lock_path + " is locked by a process that has not written its pid yet");
    }
  } else {
    const int error = errno;
    problem = io_failure(xa_code::rm_error, "cannot test the lock on " + lock_path + ": " + errno_text(error), error);
  }
  ::close(fd);
  if (problem) return std::move(*problem);
  return holder;
}


result<std::string> decision_log::stored_tm_id(const std::string& path) {
  // Even a read-only connection makes SQLite create an empty -wal and a -shm (with the main
  // file's mode) when they are missing. Under the log's lock nobody else can be creating them,
  // so this read removes what it created and leaves the files as it found them. A log in use is
  // read without the lock: its owner has both files anyway.
  auto lock_fd = acquire_lock(path);
  if (!lock_fd && lock_fd.refusal() != open_refusal::in_use) return failure(lock_fd.error());
  const std::string wal_path = path + "-wal";
  const std::string shm_path = path + "-shm";
  auto wal_existed = file_exists(wal_path);
  auto shm_existed = file_exists(shm_path);
  auto tm_id = read_stored_tm_id(path);
  if (lock_fd) {
    // Best effort: an empty -wal left behind holds nothing, and open() counts it as missing.
    auto wal_has_content = file_has_content(wal_path);
    if (wal_existed && !wal_existed.value() && wal_has_content && !wal_has_content.value()) {
      (void)remove_if_present(wal_path);
      if (shm_existed && !shm_existed.value()) (void)remove_if_present(shm_path);
    }
    ::close(lock_fd.value());  // releases the flock
  }
  return tm_id;
}

open_result<void> decision_log::open_database() {
  auto unusable = [](failure cause) { return store_refusal{open_refusal::unusable, std::move(cause)}; };
  const std::string wal_path = path_ + "-wal";
  auto db_exists = file_exists(path_);
  if (!db_exists) return unusable(std::move(db_exists).error());
  auto wal_existed = file_exists(wal_path);
  if (!wal_existed) return unusable(std::move(wal_existed).error());
  // An empty -wal holds no decision. SQLite creates one for any reader of a log whose -wal is
  // missing (an operator's sqlite3 shell, stored_tm_id()): the unclean-shutdown check below must
  // count it as missing, or it would hide the loss.
  auto wal_had_content = file_has_content(wal_path);
  if (!wal_had_content) return unusable(std::move(wal_had_content).error());
  if (!db_exists.value()) {
    if (wal_existed.value()) {
      return unusable(make_failure(xa_code::rm_error, wal_path + " exists but " + path_ +
                                                          " does not: the log was moved or deleted; " +
                                                          never_recreate_advice));
    }
    if (auto created = create_log(path_, tm_id_, vfs_name_); !created) return unusable(std::move(created).error());
  }
  for (const char* suffix : {"", "-wal", "-shm"}) {
    if (auto checked = check_file_mode(path_ + suffix); !checked) return checked;
  }

  auto db = open_connection(path_, vfs_name_, SQLITE_OPEN_READWRITE);
  if (!db) return unusable(std::move(db).error());
  db_ = std::move(db.value());

  // Every refusal below leaves the files exactly as found (apart from an empty -wal/-shm SQLite
  // creates on the first read, removed again so the next open sees what this one saw).
  auto refuse = [&](failure cause, open_refusal reason = open_refusal::unusable) -> open_result<void> {
    sqlite3_db_config(db_.get(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
    db_.reset();
    struct stat status {};
    if (!wal_existed.value() && ::stat(wal_path.c_str(), &status) == 0 && status.st_size == 0) {
      if (::unlink(wal_path.c_str()) == 0) (void)remove_if_present(path_ + "-shm");  // best effort: both are empty
    }
    XATM_LOG(log, error) << cause.message;
    return {reason, std::move(cause)};
  };

  // The first read tells a database from garbage (SQLITE_NOTADB) and checks the header.
  auto app_id = query_text(db_.get(), "PRAGMA application_id");
  if (!app_id) {
    if (is_damage(app_id.error().native_code)) {
      return refuse(make_failure(xa_code::rm_error, "decision log " + path_ + " is damaged or not an SQLite database (" +
                                                        app_id.error().message + "): refusing to use it; " +
                                                        never_recreate_advice));
    }
    return refuse(std::move(app_id).error());
  }
  if (auto checked = quick_check(db_.get(), path_); !checked) {
    failure cause = std::move(checked).error();
    if (is_damage(cause.native_code)) {
      cause.message = "decision log " + path_ + " is damaged (" + cause.message + "): refusing to use it; " +
                      never_recreate_advice;
    }
    return refuse(std::move(cause));
  }
  if (app_id.value().value_or("") != std::to_string(application_id)) {
    return refuse(make_failure(xa_code::invalid, path_ + " is an SQLite database but not an xatm decision log "
                                                 "(application_id " + app_id.value().value_or("?") +
                                                 "); point the TM at its own log file"),
                  open_refusal::misconfigured);
  }

  auto version = read_meta(db_.get(), path_, "schema_version");
  if (!version) return refuse(std::move(version).error());
  const bool upgrade = version.value() == schema_version_1;
  if (version.value() != schema_version && !upgrade) {
    return refuse(make_failure(xa_code::invalid, "decision log " + path_ + " has schema version " + version.value() +
                                                     ", this xatm reads version " + schema_version +
                                                     ": open it with the xatm version that wrote it"),
                  open_refusal::misconfigured);
  }
  auto stored_tm_id = read_meta(db_.get(), path_, "tm_id");
  if (!stored_tm_id) return refuse(std::move(stored_tm_id).error());
  if (stored_tm_id.value() != tm_id_) {
    return refuse(make_failure(xa_code::invalid, "decision log " + path_ + " belongs to tm_id '" +
                                                     stored_tm_id.value() + "', not to the configured tm_id '" +
                                                     tm_id_ + "': each TM instance needs its own log; configure "
                                                     "tm_id '" + stored_tm_id.value() + "' or use another path"),
                  open_refusal::misconfigured);
  }
  auto stored_incarnation = read_meta(db_.get(), path_, "incarnation");
  if (!stored_incarnation) return refuse(std::move(stored_incarnation).error());
  std::uint64_t incarnation = 0;
  {
    const std::string& text = stored_incarnation.value();
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), incarnation);
    if (error != std::errc() || end != text.data() + text.size() || text.empty() || incarnation == UINT64_MAX) {
      return refuse(make_failure(xa_code::rm_error, "decision log " + path_ + " holds a malformed incarnation '" +
                                                        text + "'; " + never_recreate_advice));
    }
  }
  // The log marks itself unclean at open (checkpointed into the main file) and clean at close. An
  // unclean log without its -wal lost the decisions written since the last checkpoint: SQLite
  // would silently start an empty WAL, and recovery would presume those commits aborted.
  auto clean = read_meta(db_.get(), path_, "clean_shutdown");
  if (!clean) return refuse(std::move(clean).error());
  if (clean.value() != "1" && !wal_had_content.value()) {
    return refuse(make_failure(xa_code::rm_error,
                               "decision log " + path_ + " was not closed cleanly and its write-ahead log " + wal_path +
                                   " is missing (or empty): the decisions written since its last checkpoint are lost. "
                                   "Restore the -wal file (it must never be deleted); if it is gone, " +
                                   never_recreate_advice));
  }

  auto mode = query_text(db_.get(), "PRAGMA journal_mode=WAL");
  if (!mode) return refuse(std::move(mode).error());
  if (mode.value().value_or("") != "wal") {
    return refuse(make_failure(xa_code::rm_error, "SQLite refused WAL mode for " + path_));
  }
  // FULL: in WAL mode every COMMIT fsyncs the WAL; NORMAL would acknowledge before the fsync.
  if (auto done = exec(db_.get(), "PRAGMA synchronous=FULL"); !done) return refuse(std::move(done).error());

  // A new incarnation, durably, before anything else is written: gtrids of this incarnation
  // must never have been used by an earlier one.
  incarnation_ = incarnation + 1;
  const std::string next = std::to_string(incarnation_);
  for (const char* sql : {"BEGIN IMMEDIATE", "UPDATE meta SET value = '0' WHERE key = 'clean_shutdown'"}) {
    if (auto done = exec(db_.get(), sql); !done) return refuse(std::move(done).error());
  }
  if (upgrade) {
    // Version 1 -> 2 in the same transaction: the gtrids of incarnations 1..N carry their number
    // and stay this log's own; from now on every open draws an incarnation id.
    for (const char* sql : version_2_tables) {
      if (auto done = exec(db_.get(), sql); !done) return refuse(std::move(done).error());
    }
    auto legacy = prepare(db_.get(),
                          "INSERT INTO meta(key, value) VALUES ('legacy_incarnations', ?1)");
    if (!legacy) return refuse(std::move(legacy).error());
    const std::string last = std::to_string(incarnation);
    sqlite3_bind_text(legacy.value().get(), 1, last.c_str(), -1, SQLITE_STATIC);
    if (const int code = sqlite3_step(legacy.value().get()); code != SQLITE_DONE) {
      return refuse(sqlite_failure(db_.get(), code, "cannot upgrade " + path_));
    }
    if (auto done = exec(db_.get(), "UPDATE meta SET value = '2' WHERE key = 'schema_version'"); !done) {
      return refuse(std::move(done).error());
    }
    XATM_LOG(log, info) << "decision log " << path_ << " upgraded to schema version 2";
  }
  {
    auto update = prepare(db_.get(), "UPDATE meta SET value = ?1 WHERE key = 'incarnation'");
    if (!update) return refuse(std::move(update).error());
    sqlite3_bind_text(update.value().get(), 1, next.c_str(), -1, SQLITE_STATIC);
    if (const int code = sqlite3_step(update.value().get()); code != SQLITE_DONE) {
      return refuse(sqlite_failure(db_.get(), code, "cannot write the incarnation into " + path_));
    }
  }
  // The incarnation id: drawn at random, so that no other log (a lost one, a restored copy, a
  // second host with this tm_id) can ever have drawn it; recorded so that recovery knows it.
  incarnation_id_ = random_incarnation_id();
  {
    auto insert = prepare(db_.get(), "INSERT INTO incarnations(id, number, opened_unix_ms) VALUES (?1, ?2, ?3)");
    if (!insert) return refuse(std::move(insert).error());
    sqlite3_bind_text(insert.value().get(), 1, incarnation_id_.c_str(), -1, SQLITE_STATIC);
    sqlite3_bind_int64(insert.value().get(), 2, static_cast<sqlite3_int64>(incarnation_));
    sqlite3_bind_int64(insert.value().get(), 3, now_unix_ms());
    if (const int code = sqlite3_step(insert.value().get()); code != SQLITE_DONE) {
      return refuse(sqlite_failure(db_.get(), code, "cannot record the incarnation in " + path_));
    }
  }
  if (auto done = exec(db_.get(), "COMMIT"); !done) return refuse(std::move(done).error());
  if (auto loaded = load_incarnations_and_pins(); !loaded) return refuse(std::move(loaded).error());
  // Into the main file with it, so that "unclean" and the new incarnation survive even the loss
  // of the -wal file (see the clean_shutdown check above).
  int wal_frames = 0;
  int checkpointed = 0;
  if (const int code =
          sqlite3_wal_checkpoint_v2(db_.get(), nullptr, SQLITE_CHECKPOINT_FULL, &wal_frames, &checkpointed);
      code != SQLITE_OK || wal_frames != checkpointed) {
    return refuse(sqlite_failure(db_.get(), code, "cannot checkpoint " + path_));
  }
  // Verify rather than trust that SQLite gave its -wal and -shm files the database's mode.
  for (const char* suffix : {"", "-wal", "-shm"}) {
    struct stat status {};
    const std::string file = path_ + suffix;
    if (::stat(file.c_str(), &status) == 0 && (status.st_mode & 0077) != 0) {
      return refuse(make_failure(xa_code::rm_error, file + " has mode " + mode_text(status.st_mode) +
                                                        " instead of 0600; chmod 0600 it"));
    }
  }
  usable_ = true;
  return {};
}

result<void> decision_log::prepare_writer() {
  // Replaces SQLite's automatic checkpoint, which would run inside a batch's COMMIT: the
  // background thread checkpoints between batches, so that no acknowledgement waits for it.
  sqlite3_wal_hook(
      db_.get(),
      [](void* frames, sqlite3*, const char*, int wal_frames) {
        *static_cast<int*>(frames) = wal_frames;
        return SQLITE_OK;
      },
      &wal_frames_);
  struct {
    sqlite_statement* target;
    const char* sql;
  } const statements[] = {
      {&begin_, "BEGIN IMMEDIATE"},
      {&commit_, "COMMIT"},
      {&insert_, "INSERT INTO decisions(gtrid, state, branches, created_unix_ms) VALUES (?1, ?2, ?3, ?4)"},
      {&delete_, "DELETE FROM decisions WHERE gtrid = ?1"},
  };
  for (const auto& [target, sql] : statements) {
    auto statement = prepare(db_.get(), sql);
    if (!statement) return std::move(statement).error();
    *target = std::move(statement.value());
  }
  return {};
}

decision_log::~decision_log() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  background_wake_.notify_one();
  if (background_.joinable()) background_.join();
  if (auto closed = close_database(); !closed) {
    XATM_LOG(log, error) << "closing decision log " << path_ << ": " << closed.error().message;
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

result<void> decision_log::close_database() noexcept {
  if (!db_) return {};
  for (sqlite_statement* statement : {&begin_, &commit_, &insert_, &delete_}) statement->reset();
  result<void> marked;
  if (usable_ && !failed()) {
    // Marked clean in the WAL; closing the last connection then checkpoints it into the main file
    // and deletes the WAL. A crash in between leaves the WAL, which is all a later open needs.
    marked = exec(db_.get(), "UPDATE meta SET value = '1' WHERE key = 'clean_shutdown'");
  }
  if (!usable_ || failed() || !marked) {
    // A failed or refused log is left exactly as it is: no checkpoint copies anything anywhere.
    sqlite3_db_config(db_.get(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  }
  sqlite3* closing = db_.release();
  if (const int code = sqlite3_close(closing); code != SQLITE_OK) {
    failure cause = sqlite_failure(closing, code, "closing " + path_ + " failed");
    sqlite_handle zombie(closing);  // close_v2 finishes the job once the leaked statement goes
    return cause;
  }
  if (usable_ && !failed()) XATM_LOG(log, info) << "decision log " << path_ << " closed";
  return marked;
}

write_result decision_log::record(const decision_record& decision) {
  // A malformed record is a programming error; nothing of it is written.
  if (!is_gtrid_of(decision.gtrid, tm_id_)) {
    return {write_outcome::not_written, make_failure(xa_code::invalid, "decision log: '" + decision.gtrid +
                                                                           "' is not a gtrid of tm_id " + tm_id_)};
  }
  if (decision.branch_rms.empty()) {
    return {write_outcome::not_written,
            make_failure(xa_code::invalid, "decision for " + decision.gtrid + " names no branch")};
  }
  for (const std::string& rm_name : decision.branch_rms) {
    if (auto valid = validate_rm_name(rm_name); !valid) {
      failure cause = std::move(valid).error();
      cause.message = "decision for " + decision.gtrid + ": " + cause.message;
      return {write_outcome::not_written, std::move(cause)};
    }
  }
  queued_decision entry;
  entry.record = &decision;
  entry.created_unix_ms = decision.created_unix_ms != 0 ? decision.created_unix_ms : now_unix_ms();

  std::unique_lock lock(mutex_);
  if (failure_) return {write_outcome::not_written, failed_log_failure()};
  if (stopping_) {
    return {write_outcome::not_written, make_failure(xa_code::rm_error, "decision log " + path_ + " is closing")};
  }
  queued_decisions_.push_back(&entry);
  const std::uint64_t batch = next_batch_;  // the next batch takes everything queued
  if (gathering_ && queued_decisions_.size() >= gather_target_) cohort_arrived_.notify_one();
  // Follow the batch being written, or lead the next one: whoever finds nobody writing writes
  // everything queued, this entry included.
  while (!entry.done) {
    if (writing_) {
      batch_done_[batch % 2].wait(lock);
    } else {
      write_queued(lock);
    }
  }
  return std::move(entry.outcome);
}

void decision_log::mark_complete(std::string_view gtrid) {
  if (!is_gtrid_of(gtrid, tm_id_)) {
    // Nothing to undo: a gtrid of another shape cannot be in this log.
    XATM_LOG(log, error) << "mark_complete: '" << gtrid << "' is not a gtrid of tm_id " << tm_id_ << "; ignored";
    return;
  }
  std::lock_guard lock(mutex_);
  if (failure_ || stopping_) return;  // a failed log writes nothing; recovery finds it pending
  queued_completions_.append(gtrid).push_back('\n');
  ++queued_completion_count_;
  if (background_idle_) background_wake_.notify_one();
}

// Writes every queued decision and completion in one SQLite transaction (one fsync), then wakes
// the callers. Called with mutex_ held and nobody writing; returns with mutex_ held again.
void decision_log::write_queued(std::unique_lock<std::mutex>& lock) {
  writing_ = true;
  // Committers run in two cohorts: while one batch is fsynced the callers of the previous one
  // queue up for the next. Left alone, each batch holds half of them. Waiting briefly (at most
  // half a batch's write time) for the cohort just released merges the two: half the fsyncs. A
  // lone committer never waits: its target is itself.
  if (!queued_decisions_.empty() && queued_decisions_.size() < gather_target_ && !stopping_) {
    gathering_ = true;
    cohort_arrived_.wait_for(lock, gather_limit_,
                             [this] { return stopping_ || queued_decisions_.size() >= gather_target_; });
    gathering_ = false;
  }
  const std::uint64_t batch = next_batch_++;  // records queued from now on join the next one
  batch_.swap(queued_decisions_);
  batch_completions_.swap(queued_completions_);
  const std::size_t completion_count = std::exchange(queued_completion_count_, 0);
  const bool failed_before = failure_.has_value();
  lock.unlock();

  // Nothing below may leave the batch's callers waiting: an exception (from a log sink, an
  // allocation) counts as a failure of the log like any other.
  std::optional<write_result> batch_failure;
  bool durable_batch = false;
  bool unexpected = false;
  bool checkpoint_due = false;
  std::chrono::nanoseconds write_time{0};
  if (!failed_before) {
    try {
      const auto write_start = std::chrono::steady_clock::now();
      write_result written = write_batch(batch_, batch_completions_);
      write_time = std::chrono::steady_clock::now() - write_start;
      if (written) {
        durable_batch = true;
        std::uint64_t durable = 0;
        for (const queued_decision* entry : batch_) durable += entry->outcome ? 1 : 0;
        decisions_written_.fetch_add(durable, std::memory_order_relaxed);
        completions_written_.fetch_add(completion_count, std::memory_order_relaxed);
        batches_.fetch_add(1, std::memory_order_relaxed);
        checkpoint_due = wal_frames_ >= checkpoint_frames;
        if (durable > 0 || completion_count > 0) {
          XATM_LOG(log, debug) << "batch " << batch << ": " << durable << " decisions, " << completion_count
                               << " completions durable";
        }
      } else {
        batch_failure = std::move(written);
      }
    } catch (...) {
      unexpected = !durable_batch && !batch_failure;  // a durable batch stays durable if its log line threw
    }
  }

  lock.lock();
  try {
    if (failed_before) {
      // Never written: the log had failed before.
      const write_result answer(write_outcome::not_written, failed_log_failure());
      for (queued_decision* entry : batch_) entry->outcome = answer;
    } else if (batch_failure || unexpected) {
      write_result written =
          batch_failure ? std::move(*batch_failure)
                        : write_result(write_outcome::unknown, make_failure(xa_code::rm_error,
                                                                            "unexpected exception while writing "
                                                                            "to decision log " + path_));
      const write_result answer(written.outcome(), fail_for_good(std::move(written).error()));
      for (queued_decision* entry : batch_) entry->outcome = answer;
    }
  } catch (...) {
    // Out of memory while describing the failure: the callers still get one, without words.
    failure bare;
    bare.code = xa_code::rm_error;
    if (!failure_) {
      failure_ = bare;
      failed_.store(true, std::memory_order_release);
    }
    for (queued_decision* entry : batch_) {
      if (entry->outcome) entry->outcome = write_result(write_outcome::unknown, bare);
    }
  }
  for (queued_decision* entry : batch_) entry->done = true;
  if (!batch_.empty()) {
    gather_target_ = queued_decisions_.size() + batch_.size();
    gather_limit_ = std::min<std::chrono::nanoseconds>(max_gather_wait, write_time / 2);
  }
  batch_.clear();
  batch_completions_.clear();
  writing_ = false;
  if (checkpoint_due) {
    checkpoint_wanted_ = true;
    background_wake_.notify_one();
  }
  // Wakes this batch's callers, and one caller of the next batch to lead it. After unlocking, so
  // that the woken do not queue up on a mutex still held.
  lock.unlock();
  batch_done_[batch % 2].notify_all();
  batch_done_[(batch + 1) % 2].notify_one();
  token_free_.notify_one();
  lock.lock();
}

// Completions no batch took along within completion_delay, checkpoints, and the last
// completions at close.
void decision_log::run_background() noexcept {
  std::unique_lock lock(mutex_);
  for (;;) {
    background_idle_ = true;
    background_wake_.wait(lock, [this] { return stopping_ || checkpoint_wanted_ || queued_completion_count_ > 0; });
    background_idle_ = false;
    if (!stopping_ && !checkpoint_wanted_) {
      // Only completions: they are not forced, so let them ride with the decisions' batches.
      // Only when no batch was written for completion_delay are they written alone.
      const std::uint64_t batches_before = batches_.load(std::memory_order_relaxed);
      background_wake_.wait_for(lock, completion_delay, [this] { return stopping_ || checkpoint_wanted_; });
      if (!stopping_ && !checkpoint_wanted_ && batches_.load(std::memory_order_relaxed) != batches_before) continue;
    }
    token_free_.wait(lock, [this] { return !writing_; });
    if (queued_completion_count_ > 0 && !failure_) write_queued(lock);  // ends with mutex_ held
    if (checkpoint_wanted_ && !writing_ && !failure_) {
      checkpoint_wanted_ = false;
      writing_ = true;
      lock.unlock();
      auto checkpointed = checkpoint();
      lock.lock();
      writing_ = false;
      if (!checkpointed && !failure_) (void)fail_for_good(std::move(checkpointed).error());  // nobody waits for it
      batch_done_[next_batch_ % 2].notify_one();  // a caller queued meanwhile leads the next batch
    }
    checkpoint_wanted_ = checkpoint_wanted_ && !failure_;
    if (stopping_ && !writing_ && (queued_completion_count_ == 0 || failure_)) return;
  }
}

result<void> decision_log::checkpoint() {
  int wal_frames = 0;
  int copied = 0;
  const int code = sqlite3_wal_checkpoint_v2(db_.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &wal_frames, &copied);
  wal_frames_ = 0;  // the hook counts again from the next commit
  // BUSY: a pending() reader is in the way; the WAL merely grows until a later batch's attempt.
  if (code == SQLITE_OK || code == SQLITE_BUSY) return {};
  return sqlite_failure(db_.get(), code, "checkpoint of decision log " + path_ + " failed");
}

write_result decision_log::write_batch(const std::vector<queued_decision*>& decisions,
                                       std::string_view completions) {
  sqlite3* db = db_.get();
  auto step = [](sqlite3_stmt* statement) {
    const int code = sqlite3_step(statement);
    (void)sqlite3_reset(statement);  // repeats the step's error, if any, which `code` already has
    return code;
  };
  if (const int code = step(begin_.get()); code != SQLITE_DONE) {
    return failed_write(db, code, "BEGIN on decision log " + path_ + " failed");
  }
  // Completions before records: a (mistaken) completion queued before its own record can then
  // only leave the decision pending, never delete it.
  for (std::size_t start = 0; start < completions.size();) {
    const std::size_t end = completions.find('\n', start);
    const std::string_view gtrid = completions.substr(start, end - start);
    start = end + 1;
    sqlite3_bind_text(delete_.get(), 1, gtrid.data(), static_cast<int>(gtrid.size()), SQLITE_STATIC);
    if (const int code = step(delete_.get()); code != SQLITE_DONE) {
      return failed_write(db, code, "writing completions to decision log " + path_ + " failed");
    }
  }
  for (queued_decision* entry : decisions) {
    const decision_record& decision = *entry->record;
    branches_buffer_.clear();
    for (const std::string& rm_name : decision.branch_rms) {
      if (!branches_buffer_.empty()) branches_buffer_.push_back(',');
      branches_buffer_.append(rm_name);
    }
    // SQLITE_STATIC: the caller's strings outlive the step, it waits for this batch.
    sqlite3_bind_text(insert_.get(), 1, decision.gtrid.data(), static_cast<int>(decision.gtrid.size()),
                      SQLITE_STATIC);
    sqlite3_bind_text(insert_.get(), 2, decision_state_name(decision.state), -1, SQLITE_STATIC);
    sqlite3_bind_text(insert_.get(), 3, branches_buffer_.data(), static_cast<int>(branches_buffer_.size()),
                      SQLITE_STATIC);
    sqlite3_bind_int64(insert_.get(), 4, entry->created_unix_ms);
    const int code = step(insert_.get());
    if (code == SQLITE_DONE) continue;
    if (code == SQLITE_CONSTRAINT_PRIMARYKEY) {
      // A statement-level error: the transaction and the rest of the batch go on.
      // Not written, but the decision already there is the one recovery acts on: unknown.
      entry->outcome = write_result(write_outcome::unknown,
                                    make_failure(xa_code::duplicate_id, "decision log " + path_ +
                                                                            " already holds a decision for " +
                                                                            decision.gtrid));
      continue;
    }
    return failed_write(db, code, "writing decisions to decision log " + path_ + " failed");
  }
  // The commit point of every decision in the batch: with synchronous=FULL it returns after the
  // WAL's fsync. If it fails, nothing here knows whether the frames reached the disk.
  if (const int code = step(commit_.get()); code != SQLITE_DONE) {
    return failed_write(db, code, "committing decisions to decision log " + path_ + " failed");
  }
  return {};
}

failure decision_log::fail_for_good(failure cause) {
  cause.message += ". The decision log is failed for good and accepts no more decisions; decisions not "
                   "acknowledged as durable may or may not be: ";
  cause.message += restart_advice;
  XATM_LOG(log, error) << cause.message;
  failure_ = cause;
  failed_.store(true, std::memory_order_release);
  queued_completions_.clear();  // a failed log writes nothing more; recovery finds them pending
  queued_completion_count_ = 0;
  return cause;
}

failure decision_log::failed_log_failure() const {
  failure cause = *failure_;
  cause.message = "decision log " + path_ + " failed earlier and accepts no more decisions (" + failure_->message +
                  ")";
  return cause;
}

result<std::vector<decision_record>> decision_log::pending() const {
  {
    std::lock_guard lock(mutex_);
    if (failure_) return failed_log_failure();
  }
  // A connection of its own: WAL readers never block the writer, and no lock is shared with it.
  auto db = open_connection(path_, vfs_name_, SQLITE_OPEN_READONLY);
  if (!db) return std::move(db).error();
  auto select = prepare(db.value().get(),
                        "SELECT gtrid, state, branches, created_unix_ms FROM decisions"
                        " ORDER BY created_unix_ms, gtrid");
  if (!select) return std::move(select).error();
  sqlite3_stmt* statement = select.value().get();
  std::vector<decision_record> decisions;
  int code = SQLITE_OK;
  while ((code = sqlite3_step(statement)) == SQLITE_ROW) {
    auto text = [statement](int column) {
      const auto* value = reinterpret_cast<const char*>(sqlite3_column_text(statement, column));
      return std::string_view(value != nullptr ? value : "");
    };
    decision_record decision;
    decision.gtrid = text(0);
    auto state = parse_state(text(1));
    if (!state) {
      failure cause = std::move(state).error();
      cause.message = "decision log " + path_ + ", gtrid " + decision.gtrid + ": " + cause.message;
      return cause;
    }
    decision.state = state.value();
    const std::string_view branches = text(2);
    for (std::size_t start = 0; start <= branches.size();) {
      const std::size_t end = std::min(branches.find(',', start), branches.size());
      decision.branch_rms.emplace_back(branches.substr(start, end - start));
      start = end + 1;
    }
    decision.created_unix_ms = sqlite3_column_int64(statement, 3);
    decisions.push_back(std::move(decision));
  }
  if (code != SQLITE_DONE) return sqlite_failure(db.value().get(), code, "reading decision log " + path_ + " failed");
  return decisions;
}

result<void> decision_log::load_incarnations_and_pins() {
  auto legacy = read_meta(db_.get(), path_, "legacy_incarnations");
  if (!legacy) return std::move(legacy).error();
  {
    const std::string& text = legacy.value();
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), legacy_incarnations_);
    if (error != std::errc() || end != text.data() + text.size() || text.empty()) {
      return make_failure(xa_code::rm_error, "decision log " + path_ + " holds a malformed legacy_incarnations '" +
                                                 text + "'; " + never_recreate_advice);
    }
  }
  auto ids = prepare(db_.get(), "SELECT id FROM incarnations");
  if (!ids) return std::move(ids).error();
  int code = SQLITE_OK;
  while ((code = sqlite3_step(ids.value().get())) == SQLITE_ROW) {
    const auto* id = reinterpret_cast<const char*>(sqlite3_column_text(ids.value().get(), 0));
    own_incarnations_.emplace(id != nullptr ? id : "");
  }
  if (code != SQLITE_DONE) return sqlite_failure(db_.get(), code, "reading the incarnations of " + path_);
  auto pins = prepare(db_.get(), "SELECT rm_name, identity, description, pinned_unix_ms FROM rm_identities");
  if (!pins) return std::move(pins).error();
  sqlite3_stmt* statement = pins.value().get();
  while ((code = sqlite3_step(statement)) == SQLITE_ROW) {
    auto text = [statement](int column) {
      const auto* value = reinterpret_cast<const char*>(sqlite3_column_text(statement, column));
      return std::string(value != nullptr ? value : "");
    };
    pinned_identity pin{text(0), text(1), text(2), sqlite3_column_int64(statement, 3)};
    pins_.insert_or_assign(pin.rm_name, pin);
  }
  if (code != SQLITE_DONE) return sqlite_failure(db_.get(), code, "reading the RM identities of " + path_);
  return {};
}

bool decision_log::is_own_incarnation(std::string_view incarnation) const {
  if (is_legacy_incarnation(incarnation)) {
    std::uint64_t number = 0;
    std::from_chars(incarnation.data(), incarnation.data() + incarnation.size(), number);
    return number >= 1 && number <= legacy_incarnations_;
  }
  return own_incarnations_.find(incarnation) != own_incarnations_.end();
}

std::optional<pinned_identity> decision_log::pinned(std::string_view rm_name) const {
  std::lock_guard lock(mutex_);
  auto found = pins_.find(rm_name);
  if (found == pins_.end()) return std::nullopt;
  return found->second;
}

result<void> decision_log::pin(const pinned_identity& identity) {
  if (auto valid = validate_rm_name(identity.rm_name); !valid) return std::move(valid).error();
  std::unique_lock lock(mutex_);
  if (failure_) return failed_log_failure();
  if (stopping_) return make_failure(xa_code::rm_error, "decision log " + path_ + " is closing");
  // The writer's connection is used by whoever holds `writing_`: wait for it, as a checkpoint
  // does. Pins are rare (once per RM name for the log's life, and an operator's re-pin).
  token_free_.wait(lock, [this] { return !writing_; });
  writing_ = true;
  lock.unlock();
  result<void> written = [&]() -> result<void> {
    auto insert = prepare(db_.get(),
                          "INSERT OR REPLACE INTO rm_identities(rm_name, identity, description, pinned_unix_ms)"
                          " VALUES (?1, ?2, ?3, ?4)");
    if (!insert) return std::move(insert).error();
    sqlite3_stmt* statement = insert.value().get();
    sqlite3_bind_text(statement, 1, identity.rm_name.c_str(), -1, SQLITE_STATIC);
    sqlite3_bind_text(statement, 2, identity.identity.c_str(), -1, SQLITE_STATIC);
    sqlite3_bind_text(statement, 3, identity.description.c_str(), -1, SQLITE_STATIC);
    sqlite3_bind_int64(statement, 4, identity.pinned_unix_ms != 0 ? identity.pinned_unix_ms : now_unix_ms());
    // One statement in autocommit mode: with synchronous=FULL it returns after the WAL's fsync.
    if (const int code = sqlite3_step(statement); code != SQLITE_DONE) {
      return sqlite_failure(db_.get(), code, "pinning the identity of RM " + identity.rm_name + " in " + path_);
    }
    return {};
  }();
  lock.lock();
  writing_ = false;
  if (written) {
    pinned_identity stored = identity;
    if (stored.pinned_unix_ms == 0) stored.pinned_unix_ms = now_unix_ms();
    pins_.insert_or_assign(stored.rm_name, std::move(stored));
  }
  lock.unlock();
  batch_done_[next_batch_ % 2].notify_one();  // a caller queued meanwhile leads the next batch
  token_free_.notify_one();
  return written;
}

decision_store_stats decision_log::stats() const noexcept {
  decision_store_stats result;
  result.decisions_written = decisions_written_.load(std::memory_order_relaxed);
  result.batches = batches_.load(std::memory_order_relaxed);
  result.completions_written = completions_written_.load(std::memory_order_relaxed);
  return result;
}

}  // namespace xatm::detail
