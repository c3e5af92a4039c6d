// support/tool_run.cpp: runs of xatm's command-line tools (see tool_run.h).
#include "support/tool_run.h"

#include <doctest/doctest.h>

#include <exception>
#include <sstream>

namespace xatm::test {

int tool_run::exit_code() const { return status.exited ? status.code : 128 + status.signal; }

std::string tool_run::line_with(const std::string& token) const {
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (line.find(token) != std::string::npos) return line;
  }
  return {};
}

tool_run run_tool(const std::vector<std::string>& argv, const std::filesystem::path& output_dir,
                  std::chrono::milliseconds timeout) {
  static int runs = 0;
  const std::string name = std::filesystem::path(argv.at(0)).filename().string() + "-" + std::to_string(++runs);
  try {
    child_process tool(argv, {}, output_dir / (name + ".out"), output_dir / (name + ".err"));
    const exit_status status = tool.wait(timeout);
    return {status, tool.out(), tool.err()};
  } catch (const std::exception& e) {
    FAIL(e.what());  // "cannot run <tool>: <why>"
  }
  return {};
}

}  // namespace xatm::test
