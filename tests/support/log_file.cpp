#include "support/log_file.h"

#include <sqlite3.h>

#include <memory>
#include <stdexcept>

namespace xatm::test {

std::vector<std::string> decisions_in_log_file(const std::filesystem::path& log_path) {
  sqlite3* raw = nullptr;
  const int opened = sqlite3_open_v2(log_path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr);
  std::unique_ptr<sqlite3, decltype(&sqlite3_close)> db(raw, &sqlite3_close);
  if (opened != SQLITE_OK) throw std::runtime_error("open " + log_path.string() + ": " + sqlite3_errstr(opened));
  sqlite3_busy_timeout(db.get(), 5000);  // the writer may be committing right now
  sqlite3_stmt* raw_statement = nullptr;
  if (sqlite3_prepare_v2(db.get(), "SELECT gtrid FROM decisions ORDER BY gtrid", -1, &raw_statement, nullptr) !=
      SQLITE_OK) {
    throw std::runtime_error("read " + log_path.string() + ": " + sqlite3_errmsg(db.get()));
  }
  std::unique_ptr<sqlite3_stmt, decltype(&sqlite3_finalize)> statement(raw_statement, &sqlite3_finalize);
  std::vector<std::string> gtrids;
  int step = SQLITE_OK;
  while ((step = sqlite3_step(statement.get())) == SQLITE_ROW) {
    gtrids.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(statement.get(), 0)));
  }
  if (step != SQLITE_DONE) throw std::runtime_error("read " + log_path.string() + ": " + sqlite3_errmsg(db.get()));
  return gtrids;
}

}  // namespace xatm::test
