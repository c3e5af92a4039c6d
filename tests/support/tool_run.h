// support/tool_run.h: one run of a command-line tool of xatm (xatm-recover) as an operator would
// start it: a child process (support/child_process.h) whose stdout, stderr and exit status are
// kept for the test to check. The tool's path comes from the test (XATM_RECOVER_BIN, which
// tests/CMakeLists.txt sets for the tests that run it). Use from the test's thread.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "support/child_process.h"

namespace xatm::test {

// What one run of a tool printed and how it ended.
struct tool_run {
  exit_status status;
  std::string out;
  std::string err;

  // The exit code as a shell reports it: the tool's own, or 128 + the signal that ended it.
  int exit_code() const;
  // stdout, then stderr.
  std::string output() const { return out + err; }
  // The line of stdout that mentions `token` (with --json: one line per branch), or "".
  std::string line_with(const std::string& token) const;
};

// Runs argv (argv[0]: the tool's path; no shell, so every argument reaches it verbatim), its
// stdout and stderr in fresh files of `output_dir`, and waits until it ends: after `timeout` it
// is killed and status.timed_out is set. Fails the test when the tool cannot be started.
tool_run run_tool(const std::vector<std::string>& argv, const std::filesystem::path& output_dir,
                  std::chrono::milliseconds timeout);

}  // namespace xatm::test
