// support/servers.cpp: reads the servers' env file and runs servers.sh for outage tests.
#include "support/servers.h"

#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

#ifndef XATM_SERVERS_SH
#error "XATM_SERVERS_SH must name tests/support/servers.sh (set by tests/CMakeLists.txt)"
#endif

namespace xatm::test {
namespace {

constexpr std::string_view how_to_start =
    "run the test through ctest (its 'servers' fixture starts the servers), or start them by hand "
    "with `XATM_SERVERS_STATE=<file> tests/support/servers.sh start` and export the same variable";

[[noreturn]] void missing(const std::string& what) {
  throw std::runtime_error("xatm test servers: " + what + "; " + std::string(how_to_start));
}

std::string state_file_path() {
  const char* state = std::getenv("XATM_SERVERS_STATE");
  if (state == nullptr || *state == '\0') {
    missing("XATM_SERVERS_STATE is not set");
  }
  return state;
}

std::string first_line_of(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line) || line.empty()) {
    missing(what + " " + path + " is missing or empty");
  }
  return line;
}

// KEY=VALUE lines; the value is the rest of the line, taken verbatim (it holds quotes).
std::map<std::string, std::string> read_env_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    missing("env file " + path + " is missing (did servers.sh start fail?)");
  }
  std::map<std::string, std::string> entries;
  std::string line;
  while (std::getline(in, line)) {
    const auto equals = line.find('=');
    if (equals == std::string::npos || equals == 0) {
      continue;
    }
    entries[line.substr(0, equals)] = line.substr(equals + 1);
  }
  return entries;
}

server_env load() {
  const std::string state = state_file_path();
  const std::string dir = first_line_of(state, "state file");
  const std::string env_path = dir + "/servers.env";
  const auto entries = read_env_file(env_path);
  auto get = [&](const std::string& key) -> std::string {
    const auto found = entries.find(key);
    if (found == entries.end() || found->second.empty()) {
      missing(key + " is missing from " + env_path);
    }
    return found->second;
  };
  server_env env;
  env.dir = get("XATM_TEST_DIR");
  env.pg = get("XATM_TEST_PG");
  env.pg2 = get("XATM_TEST_PG2");
  // Optional: servers started by an older servers.sh lack it, and only its tests need it.
  if (const auto found = entries.find("XATM_TEST_PG_PW"); found != entries.end()) env.pg_pw = found->second;
  env.mysql = get("XATM_TEST_MYSQL");
  env.mysql_root = get("XATM_TEST_MYSQL_ROOT");
  env.mysql_socket = env.dir + "/mysql.sock";
  return env;
}

}  // namespace

const server_env& servers() {
  // A failed load throws out of the initialiser, so the next call tries again.
  static const server_env env = load();
  return env;
}

void server_control(std::string_view subcommand) {
  const std::string script = XATM_SERVERS_SH;
  const std::string command(subcommand);
  // Fail here with the fixture's advice rather than inside the script.
  static_cast<void>(state_file_path());

  std::vector<char*> argv{const_cast<char*>(script.c_str()), const_cast<char*>(command.c_str()),
                          nullptr};
  pid_t child = 0;
  // No shell: the script path and the subcommand reach the script verbatim.
  const int spawn_error = posix_spawn(&child, script.c_str(), nullptr, nullptr, argv.data(), environ);
  if (spawn_error != 0) {
    throw std::runtime_error("cannot run " + script + ": " + std::strerror(spawn_error));
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) {
      throw std::runtime_error("waitpid for " + script + " failed: " + std::strerror(errno));
    }
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    const std::string how = WIFEXITED(status) ? "exit code " + std::to_string(WEXITSTATUS(status))
                                              : "signal " + std::to_string(WTERMSIG(status));
    throw std::runtime_error("servers.sh " + command + " failed (" + how + ")");
  }
}

}  // namespace xatm::test
