#include "bench/throwaway_servers.h"

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
#error "XATM_SERVERS_SH must name tests/support/servers.sh (set by tools/CMakeLists.txt)"
#endif

namespace xatm::bench {
namespace {

std::string make_temp_dir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/xatm-bench-servers.XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("cannot create a temp dir for the servers' state: " + std::string(std::strerror(errno)));
  }
  return pattern;
}

// KEY=VALUE lines; the value is the rest of the line, verbatim (it holds quotes).
std::map<std::string, std::string> read_env_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("the servers' env file " + path + " is missing");
  std::map<std::string, std::string> entries;
  std::string line;
  while (std::getline(in, line)) {
    const auto equals = line.find('=');
    if (equals != std::string::npos && equals > 0) entries[line.substr(0, equals)] = line.substr(equals + 1);
  }
  return entries;
}

}  // namespace

throwaway_servers::throwaway_servers(std::string state_dir) : state_dir_(std::move(state_dir)) {}

std::unique_ptr<throwaway_servers> throwaway_servers::start() {
  std::unique_ptr<throwaway_servers> servers(new throwaway_servers(make_temp_dir()));
  // From here the destructor cleans up whatever a failed start leaves behind.
  servers->started_ = true;
  servers->run_script("start");
  std::string dir;
  {
    std::ifstream state(servers->state_dir_ + "/servers.state");
    if (!state || !std::getline(state, dir) || dir.empty()) {
      throw std::runtime_error("servers.sh start left no state file");
    }
  }
  auto env = read_env_file(dir + "/servers.env");
  auto get = [&](const char* key) {
    auto found = env.find(key);
    if (found == env.end() || found->second.empty()) {
      throw std::runtime_error(std::string(key) + " is missing from " + dir + "/servers.env");
    }
    return found->second;
  };
  servers->pg_ = get("XATM_TEST_PG");
  servers->pg2_ = get("XATM_TEST_PG2");
  servers->mysql_ = get("XATM_TEST_MYSQL");
  return servers;
}

throwaway_servers::~throwaway_servers() {
  if (started_) {
    try {
      run_script("stop");
    } catch (const std::exception& e) {
      std::cerr << "xatm-bench: warning: " << e.what() << "\n";
    }
  }
  std::error_code ignored;  // best effort: only the state file's dir, which is ours
  std::filesystem::remove_all(state_dir_, ignored);
}

void throwaway_servers::run_script(const char* subcommand) const {
  const std::string script = XATM_SERVERS_SH;
  const std::string state = "XATM_SERVERS_STATE=" + state_dir_ + "/servers.state";
  // The environment of this process plus the state file; nothing else changes.
  std::vector<char*> envp;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    if (std::strncmp(*entry, "XATM_SERVERS_STATE=", 19) != 0) envp.push_back(*entry);
  }
  envp.push_back(const_cast<char*>(state.c_str()));
  envp.push_back(nullptr);
  std::vector<char*> argv{const_cast<char*>(script.c_str()), const_cast<char*>(subcommand), nullptr};
  // The script's chatter goes to stderr: stdout carries the tables.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, STDERR_FILENO, STDOUT_FILENO);
  pid_t child = 0;
  const int spawned = posix_spawn(&child, script.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) throw std::runtime_error("cannot run " + script + ": " + std::strerror(spawned));
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) throw std::runtime_error("waitpid for servers.sh failed: " + std::string(std::strerror(errno)));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error("servers.sh " + std::string(subcommand) + " failed (see its messages above)");
  }
}

}  // namespace xatm::bench
