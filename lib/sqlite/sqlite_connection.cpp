#include "sqlite/sqlite_connection.h"

#include <sqlite3.h>

#include "core/logging.h"
#include "sqlite/sqlite_errors.h"

namespace xatm::detail {

namespace {

// Only this process uses the file (the flock), but an operator's read-only sqlite3 shell may
// briefly hold a lock; waiting a little beats failing the whole TM for it.
constexpr int busy_timeout_ms = 10'000;

}  // namespace

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

bool vfs_registered(const std::string& vfs_name) { return sqlite3_vfs_find(vfs_name.c_str()) != nullptr; }

result<sqlite_handle> open_connection(const std::string& path, const std::string& vfs_name, bool read_only) {
  sqlite3* raw = nullptr;
  const int flags = read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
  const int code = sqlite3_open_v2(path.c_str(), &raw, flags, vfs_name.empty() ? nullptr : vfs_name.c_str());
  sqlite_handle db(raw);  // sqlite3_open_v2 allocates a handle even when it fails
  if (code != SQLITE_OK) return sqlite_failure(db.get(), code, "cannot open decision log " + path);
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), busy_timeout_ms);
  return db;
}

result<void> close_connection(sqlite_handle db, bool checkpoint, const std::string& what) {
  if (!checkpoint) sqlite3_db_config(db.get(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  sqlite3* closing = db.release();
  if (const int code = sqlite3_close(closing); code != SQLITE_OK) {
    failure cause = sqlite_failure(closing, code, what);
    sqlite_handle zombie(closing);  // close_v2 finishes the job once the leaked statement goes
    return cause;
  }
  return {};
}

result<sqlite_statement> prepare(sqlite3* db, std::string_view sql, bool persistent) {
  sqlite3_stmt* raw = nullptr;
  const unsigned int flags = persistent ? SQLITE_PREPARE_PERSISTENT : 0;
  const int code = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), flags, &raw, nullptr);
  sqlite_statement statement(raw);
  if (code != SQLITE_OK) return sqlite_failure(db, code, "cannot prepare \"" + std::string(sql) + "\"");
  return statement;
}

result<void> exec(sqlite3* db, const char* sql) {
  const int code = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  if (code != SQLITE_OK) return sqlite_failure(db, code, std::string("\"") + sql + "\" failed");
  return {};
}

result<std::optional<std::string>> query_text(sqlite3* db, std::string_view sql, const char* parameter) {
  auto statement = prepare(db, sql);
  if (!statement) return std::move(statement).error();
  sqlite3_stmt* raw = statement.value().get();
  if (parameter != nullptr) sqlite3_bind_text(raw, 1, parameter, -1, SQLITE_STATIC);
  const int code = sqlite3_step(raw);
  if (code == SQLITE_DONE) return std::optional<std::string>();
  if (code != SQLITE_ROW) return sqlite_failure(db, code, "\"" + std::string(sql) + "\" failed");
  return std::optional<std::string>(column_text(raw, 0));
}

std::string_view column_text(sqlite3_stmt* statement, int column) noexcept {
  const auto* value = reinterpret_cast<const char*>(sqlite3_column_text(statement, column));
  return value != nullptr ? value : "";
}

void bind_text(sqlite3_stmt* statement, int index, std::string_view text) noexcept {
  // A null pointer would bind NULL, which the log's NOT NULL columns refuse: bind "" instead.
  const char* data = text.data() != nullptr ? text.data() : "";
  sqlite3_bind_text(statement, index, data, static_cast<int>(text.size()), SQLITE_STATIC);
}

}  // namespace xatm::detail
