// support/child_process.cpp: child processes of the tests (see child_process.h).
#include "support/child_process.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <thread>
#include <utility>

extern char** environ;

namespace xatm::test {
namespace {

using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

exit_status status_of(int wait_status) {
  exit_status status;
  if (WIFEXITED(wait_status)) {
    status.exited = true;
    status.code = WEXITSTATUS(wait_status);
  } else if (WIFSIGNALED(wait_status)) {
    status.signal = WTERMSIG(wait_status);
  }
  return status;
}

// This process's environment without XATM_CRASH_AT and the overridden names, plus `extra`.
std::vector<std::string> child_environment(const std::vector<std::string>& extra) {
  auto name_of = [](const std::string& entry) { return entry.substr(0, entry.find('=')); };
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string text = *entry;
    const std::string name = name_of(text);
    bool replaced = name == "XATM_CRASH_AT";
    for (const auto& override_entry : extra) replaced = replaced || name_of(override_entry) == name;
    if (!replaced) env.push_back(text);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

}  // namespace

bool exit_status::killed_by_sigkill() const { return !exited && !timed_out && signal == SIGKILL; }

std::string exit_status::describe() const {
  if (timed_out) return "timed out (killed by the harness)";
  if (exited) return "exited with code " + std::to_string(code);
  return "killed by signal " + std::to_string(signal) + (signal == SIGKILL ? " (SIGKILL)" : "");
}

child_process::child_process(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                             std::filesystem::path out, std::filesystem::path err)
    : out_(std::move(out)), err_(std::move(err)) {
  std::vector<char*> argv_pointers;
  for (const auto& arg : argv) argv_pointers.push_back(const_cast<char*>(arg.c_str()));
  argv_pointers.push_back(nullptr);
  const auto environment = child_environment(env);
  std::vector<char*> env_pointers;
  for (const auto& entry : environment) env_pointers.push_back(const_cast<char*>(entry.c_str()));
  env_pointers.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  const int spawned =
      posix_spawn(&pid_, argv_pointers[0], &actions, nullptr, argv_pointers.data(), env_pointers.data());
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) throw std::runtime_error("cannot run " + argv.at(0) + ": " + std::strerror(spawned));
}

child_process::~child_process() {
  if (status_) return;
  try {
    static_cast<void>(kill());  // a test that failed half-way leaves no child behind
  } catch (const std::exception& e) {
    MESSAGE("could not reap child " << pid_ << ": " << e.what());
  }
}

std::optional<exit_status> child_process::poll() {
  if (status_) return status_;
  int wait_status = 0;
  const pid_t reaped = ::waitpid(pid_, &wait_status, WNOHANG);
  if (reaped == pid_) status_ = status_of(wait_status);
  if (reaped < 0 && errno != EINTR) throw std::runtime_error(std::string("waitpid: ") + std::strerror(errno));
  return status_;
}

exit_status child_process::wait(std::chrono::milliseconds timeout) {
  const auto deadline = clock::now() + timeout;
  while (!poll()) {
    if (clock::now() > deadline) {
      exit_status killed = kill();
      killed.timed_out = true;
      status_ = killed;
      return killed;
    }
    std::this_thread::sleep_for(5ms);
  }
  return *status_;
}

exit_status child_process::kill() {
  if (status_) return *status_;
  ::kill(pid_, SIGKILL);
  int wait_status = 0;
  while (::waitpid(pid_, &wait_status, 0) < 0) {
    if (errno != EINTR) throw std::runtime_error(std::string("waitpid: ") + std::strerror(errno));
  }
  status_ = status_of(wait_status);
  return *status_;
}

std::string child_process::out() const { return read_file(out_); }
std::string child_process::err() const { return read_file(err_); }

}  // namespace xatm::test
