// support/log_file.h: what a decision log file holds, read the way a recovering process would:
// through a read-only SQLite connection of its own, never through the TM that writes it.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace xatm::test {

// The gtrids in the log's decisions table, sorted. Throws std::runtime_error if the file cannot
// be read.
std::vector<std::string> decisions_in_log_file(const std::filesystem::path& log_path);

}  // namespace xatm::test
