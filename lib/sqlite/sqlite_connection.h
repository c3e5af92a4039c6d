// Internal: SQLite's C handles under RAII, and the few calls on them every part of the decision
// log makes (open a connection, prepare, run, read one value). Failures come from
// sqlite_errors.h. A connection and its statements belong to one thread at a time: whoever
// holds them (the log's opener, the writer at the front of the queue, a pending() reader).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "xatm/result.h"

struct sqlite3;
struct sqlite3_stmt;

namespace xatm::detail {

// Closing a connection logs a failure instead of throwing (a failure there means a statement
// leaked); finalizing a statement drops the error it repeats, handled where it happened.
struct sqlite_closer {
  void operator()(sqlite3* db) const noexcept;
};
struct sqlite_statement_finalizer {
  void operator()(sqlite3_stmt* statement) const noexcept;
};
using sqlite_handle = std::unique_ptr<sqlite3, sqlite_closer>;
using sqlite_statement = std::unique_ptr<sqlite3_stmt, sqlite_statement_finalizer>;

// Whether a VFS of that name is registered with SQLite (tests register a fault-injecting one).
[[nodiscard]] bool vfs_registered(const std::string& vfs_name);

// Opens `path` with SQLite's open flags (`read_only`: SQLITE_OPEN_READONLY, else READWRITE),
// extended result codes on, and a busy timeout: only the log's owner writes the file, but an
// operator's read-only sqlite3 shell may briefly hold a lock. `vfs_name` empty: the default VFS.
[[nodiscard]] result<sqlite_handle> open_connection(const std::string& path, const std::string& vfs_name,
                                                    bool read_only);

// Closes a connection; closing the last one checkpoints the WAL into the main file and deletes
// it, unless `checkpoint` is false: a failed or refused log is closed without copying anything
// anywhere. A failure is described as `what` (and the connection still closes, once the
// statement that held it open is finalized).
[[nodiscard]] result<void> close_connection(sqlite_handle db, bool checkpoint, const std::string& what);

// `persistent`: the statement is kept and reused for the life of the connection (the writer's),
// which SQLite is told so that it allocates it accordingly.
[[nodiscard]] result<sqlite_statement> prepare(sqlite3* db, std::string_view sql, bool persistent = false);
[[nodiscard]] result<void> exec(sqlite3* db, const char* sql);

// The first column of the first row, as text; nullopt when there is no row. `parameter`, when
// given, is bound to ?1.
[[nodiscard]] result<std::optional<std::string>> query_text(sqlite3* db, std::string_view sql,
                                                            const char* parameter = nullptr);

// A text column of the statement's current row; "" for NULL. Valid until the next step.
[[nodiscard]] std::string_view column_text(sqlite3_stmt* statement, int column) noexcept;

// Binds a string to parameter `index` without copying: the string must outlive the step.
void bind_text(sqlite3_stmt* statement, int index, std::string_view text) noexcept;

}  // namespace xatm::detail
