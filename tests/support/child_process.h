// support/child_process.h: a program run as a child of the test (a workload, xatm-recover), its
// stdout and stderr in files, with a bounded wait and a SIGKILL. The crash tests kill and restart
// such children; the fault tests run the tools the way an operator would. Use a child_process
// from the thread that started it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace xatm::test {

// How a child process ended.
struct exit_status {
  bool exited = false;  // exited by itself, with `code`
  int code = 0;
  int signal = 0;          // killed by this signal
  bool timed_out = false;  // did not end in time: the harness killed it
  bool killed_by_sigkill() const;
  std::string describe() const;
};

// A child process (posix_spawn, no shell: each argument reaches it verbatim) with stdin from
// /dev/null and its stdout and stderr in files. The destructor kills and reaps a child that is
// still running.
class child_process {
 public:
  // argv[0] is the program's path. env: "NAME=value" entries set on top of this process's
  // environment, from which XATM_CRASH_AT is always removed first (a crash point is armed only
  // by asking for it). Throws std::runtime_error when the program cannot be started.
  child_process(const std::vector<std::string>& argv, const std::vector<std::string>& env, std::filesystem::path out,
                std::filesystem::path err);
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  pid_t pid() const { return pid_; }
  // The status once the child has ended (reaping it), nullopt while it runs.
  std::optional<exit_status> poll();
  // Waits until the child ends; after `timeout` it is killed and reported timed_out.
  exit_status wait(std::chrono::milliseconds timeout);
  // SIGKILL now, then reap it.
  exit_status kill();
  std::string out() const;
  std::string err() const;

 private:
  pid_t pid_ = -1;
  std::optional<exit_status> status_;
  std::filesystem::path out_;
  std::filesystem::path err_;
};

}  // namespace xatm::test
