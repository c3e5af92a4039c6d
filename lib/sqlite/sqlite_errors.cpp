#include "sqlite/sqlite_errors.h"

#include <sqlite3.h>

namespace xatm::detail {

namespace {

// Names for the result codes an operator is most likely to meet; "SQLite code N" for the rest.
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

}  // namespace

failure sqlite_failure(sqlite3* db, int code, const std::string& what) {
  std::string message = what + ": " + (db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(code));
  failure cause = make_failure(xa_code::rm_error, message + " (" + sqlite_code_text(code) + ")");
  cause.native_code = code;
  return cause;
}

write_result failed_write(sqlite3* db, int code, const std::string& what) {
  return {code == SQLITE_FULL ? write_outcome::not_written : write_outcome::unknown, sqlite_failure(db, code, what)};
}

bool is_damage(const failure& cause) noexcept {
  const int primary = cause.native_code & 0xff;
  return primary == SQLITE_NOTADB || primary == SQLITE_CORRUPT;
}

bool is_primary_key_clash(int code) noexcept { return code == SQLITE_CONSTRAINT_PRIMARYKEY; }

}  // namespace xatm::detail
