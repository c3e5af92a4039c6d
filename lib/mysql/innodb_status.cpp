// The InnoDB monitor's transaction list (innodb_status.h). MariaDB 10.11 prints it as
//
//   LIST OF TRANSACTIONS FOR EACH SESSION:
//   ---TRANSACTION 421, ACTIVE (PREPARED) 0 sec
//   2 lock struct(s), heap size 1128, 1 row lock(s), undo log entries 1
//   MariaDB thread id 57, OS thread handle 140..., query id 912 localhost xatm
//   ---TRANSACTION 418, ACTIVE (PREPARED) 3 sec recovered trx
//   ...
//   --------
//   FILE I/O
//
// (the header line is printed by lock_print_info_all_transactions, the thread line by
// thd_get_error_context_description; MariaDB 10.4 and older say "MySQL thread id"). Output over
// 1 MiB loses the beginning of the list, header included, to "... truncated...", or its end,
// END OF INNODB MONITOR OUTPUT included (innodb_show_status in ha_innodb.cc): either answers
// unknown. The thread line may be followed by the session's query, which the application wrote;
// a query that imitates a thread line can only make a session look attached, never detached.
#include "mysql/innodb_status.h"

#include <charconv>

namespace xatm::mysql_detail {
namespace {

constexpr std::string_view list_header = "LIST OF TRANSACTIONS FOR EACH SESSION:\n";
constexpr std::string_view next_section = "\n--------\nFILE I/O\n";
constexpr std::string_view output_end = "END OF INNODB MONITOR OUTPUT";
constexpr std::string_view truncation = "... truncated...\n";
constexpr std::string_view thread_lines[] = {"MariaDB thread id ", "MySQL thread id "};

// The session id a thread line names, if `line` is one.
bool names_session(std::string_view line, std::uint64_t session) {
  for (std::string_view prefix : thread_lines) {
    if (!line.starts_with(prefix)) continue;
    line.remove_prefix(prefix.size());
    std::uint64_t id = 0;
    auto [end, error] = std::from_chars(line.data(), line.data() + line.size(), id);
    if (error != std::errc{} || end == line.data() + line.size() || *end != ',') return false;
    return id == session;
  }
  return false;
}

}  // namespace

session_transaction innodb_transaction_of(std::string_view monitor_output, std::uint64_t session) noexcept {
  if (monitor_output.find(truncation) != std::string_view::npos) return session_transaction::unknown;
  if (monitor_output.find(output_end) == std::string_view::npos) return session_transaction::unknown;
  auto begin = monitor_output.find(list_header);
  if (begin == std::string_view::npos) return session_transaction::unknown;
  begin += list_header.size();
  auto end = monitor_output.find(next_section, begin);
  if (end == std::string_view::npos) return session_transaction::unknown;
  std::string_view list = monitor_output.substr(begin, end + 1 - begin);
  while (!list.empty()) {
    auto line_end = list.find('\n');
    std::string_view line = list.substr(0, line_end);
    if (names_session(line, session)) return session_transaction::attached;
    if (line_end == std::string_view::npos) break;
    list.remove_prefix(line_end + 1);
  }
  return session_transaction::none;
}

}  // namespace xatm::mysql_detail
