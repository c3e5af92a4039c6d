// Internal: the one place that reads SQLite's result codes and turns them into xatm::failure and
// the decision store's outcomes (core/decision_store.h). The rest of lib/sqlite asks questions
// of a failure (is_damage) instead of comparing codes. Pure functions: call them from any thread.
#pragma once

#include <string>

#include "core/decision_store.h"
#include "xatm/result.h"

struct sqlite3;

namespace xatm::detail {

// "<what>: <SQLite's message> (<the code's name>)", xa_code::rm_error, with the extended result
// code as the native code (for the operator: describe() prints it). `db` may be null.
[[nodiscard]] failure sqlite_failure(sqlite3* db, int code, const std::string& what);

// A batch of decisions whose write failed with `code`. SQLITE_FULL: the write failed for want
// of space before the commit frame, so nothing of the batch is durable (not_written). Any other
// failure may have left the frames on disk, a failed fsync does not take them back (unknown).
[[nodiscard]] write_result failed_write(sqlite3* db, int code, const std::string& what);

// Whether a failure of sqlite_failure() says the file is not a database or is corrupt.
[[nodiscard]] bool is_damage(const failure& cause) noexcept;

// Whether a statement's result code is a primary-key clash (a gtrid already in the log).
[[nodiscard]] bool is_primary_key_clash(int code) noexcept;

}  // namespace xatm::detail
