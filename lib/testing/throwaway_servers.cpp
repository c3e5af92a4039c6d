// testing/throwaway_servers.cpp: reading servers.sh's state and running the script.
#include "testing/throwaway_servers.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <stdexcept>
#include <vector>

extern char** environ;

#ifndef XATM_SERVERS_SH
#error "XATM_SERVERS_SH must name lib/testing/servers.sh (set by lib/testing/CMakeLists.txt)"
#endif

namespace xatm::testing {
namespace {

[[noreturn]] void missing(const std::string& what) { throw std::runtime_error("throwaway servers: " + what); }

// KEY=VALUE lines; the value is the rest of the line, taken verbatim (it holds quotes).
std::map<std::string, std::string> read_env_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) missing("env file " + path + " is missing (did servers.sh start fail?)");
  std::map<std::string, std::string> entries;
  std::string line;
  while (std::getline(in, line)) {
    const auto equals = line.find('=');
    if (equals != std::string::npos && equals > 0) entries[line.substr(0, equals)] = line.substr(equals + 1);
  }
  return entries;
}

std::string make_temp_dir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/xatm-own-servers.XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("cannot create a temp dir for the servers' state: " + std::string(std::strerror(errno)));
  }
  return pattern;
}

}  // namespace

server_env read_server_env(const std::string& state_file) {
  std::string dir;
  {
    std::ifstream state(state_file);
    if (!state || !std::getline(state, dir) || dir.empty()) {
      missing("state file " + state_file + " is missing or empty");
    }
  }
  const std::string env_path = dir + "/servers.env";
  const auto entries = read_env_file(env_path);
  auto get = [&](const std::string& key) -> std::string {
    const auto found = entries.find(key);
    if (found == entries.end() || found->second.empty()) missing(key + " is missing from " + env_path);
    return found->second;
  };
  server_env env;
  env.dir = get("XATM_TEST_DIR");
  env.pg = get("XATM_TEST_PG");
  env.pg2 = get("XATM_TEST_PG2");
  // Optional: servers started by an older servers.sh lack it, and only its tests need it.
  if (const auto found = entries.find("XATM_TEST_PG_PW"); found != entries.end()) env.pg_pw = found->second;
  env.mysql = get("XATM_TEST_MYSQL");
  // Optional as pg_pw: only the tests of MariaDB-MariaDB pairs need it.
  if (const auto found = entries.find("XATM_TEST_MYSQL2"); found != entries.end()) env.mysql2 = found->second;
  env.mysql_root = get("XATM_TEST_MYSQL_ROOT");
  env.mysql_socket = env.dir + "/mysql.sock";
  // Optional: servers started by an older servers.sh serve no TLS.
  auto optional = [&](const std::string& key) {
    const auto found = entries.find(key);
    return found == entries.end() ? std::string() : found->second;
  };
  env.tls_ca = optional("XATM_TEST_TLS_CA");
  env.tls_other_ca = optional("XATM_TEST_TLS_OTHER_CA");
  env.tcp_host = optional("XATM_TEST_TCP_HOST");
  env.pg_tcp_port = optional("XATM_TEST_PG_TCP_PORT");
  env.mysql_tcp_port = optional("XATM_TEST_MYSQL_TCP_PORT");
  env.pg_standby = optional("XATM_TEST_PG_STANDBY");
  return env;
}

void run_servers_script(std::string_view subcommand, const std::string& state_file, script_output output) {
  const std::string script = XATM_SERVERS_SH;
  const std::string command(subcommand);
  const std::string state = "XATM_SERVERS_STATE=" + state_file;
  // This process's environment with the state file replaced; nothing else changes.
  std::vector<char*> envp;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    if (std::strncmp(*entry, "XATM_SERVERS_STATE=", 19) != 0) envp.push_back(*entry);
  }
  envp.push_back(const_cast<char*>(state.c_str()));
  envp.push_back(nullptr);
  // No shell: the script path and the subcommand reach the script verbatim.
  std::vector<char*> argv{const_cast<char*>(script.c_str()), const_cast<char*>(command.c_str()), nullptr};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (output == script_output::to_stderr) posix_spawn_file_actions_adddup2(&actions, STDERR_FILENO, STDOUT_FILENO);
  pid_t child = 0;
  const int spawned = posix_spawn(&child, script.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) throw std::runtime_error("cannot run " + script + ": " + std::strerror(spawned));
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) throw std::runtime_error("waitpid for servers.sh failed: " + std::string(std::strerror(errno)));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    const std::string how = WIFEXITED(status) ? "exit code " + std::to_string(WEXITSTATUS(status))
                                              : "signal " + std::to_string(WTERMSIG(status));
    throw std::runtime_error("servers.sh " + command + " failed (" + how + "; see its messages above)");
  }
}

throwaway_servers::throwaway_servers(std::string state_dir) : state_dir_(std::move(state_dir)) {}

std::unique_ptr<throwaway_servers> throwaway_servers::start() {
  std::unique_ptr<throwaway_servers> servers(new throwaway_servers(make_temp_dir()));
  // From here the destructor cleans up whatever a failed start leaves behind.
  servers->started_ = true;
  const std::string state_file = servers->state_dir_ + "/servers.state";
  run_servers_script("start", state_file, script_output::to_stderr);
  servers->env_ = read_server_env(state_file);
  return servers;
}

throwaway_servers::~throwaway_servers() {
  if (started_) {
    try {
      run_servers_script("stop", state_dir_ + "/servers.state", script_output::to_stderr);
    } catch (const std::exception& e) {
      std::cerr << "xatm: warning: " << e.what() << "\n";
    }
  }
  std::error_code ignored;  // best effort: only the state file's dir, which is ours
  std::filesystem::remove_all(state_dir_, ignored);
}

}  // namespace xatm::testing
