// testing/throwaway_servers.h: throwaway PostgreSQL and MariaDB servers for the tests, xatm-bench
// and the demo, started and stopped by servers.sh (beside this file) in a temp dir of their own.
//
// servers.sh keeps what it started in a state file (XATM_SERVERS_STATE): its first line names the
// servers' temp dir, whose servers.env lists the connection strings. CTest's fixture runs the
// script for the tests; throwaway_servers runs it for a program that wants servers of its own.
// Call these from one thread (the program's main thread).
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace xatm::testing {

// Connection strings in libpq's keyword form (`key=value`, values in single quotes where needed).
struct server_env {
  std::string dir;           // the servers' temp dir (holds both unix sockets)
  std::string pg;            // PostgreSQL, database xatm_test, role xatm (superuser, trust auth)
  std::string pg2;           // PostgreSQL, database xatm_test2: a second RM on the same server
  std::string pg_pw;         // PostgreSQL, database xatm_test, role xatm_pw whose password is really
                             // checked; empty when servers.sh predates that role
  std::string mysql;         // MariaDB, database xatm_test, user xatm (with a password)
  std::string mysql2;        // MariaDB, database xatm_test2: a second RM on the same server
  std::string mysql_root;    // MariaDB as root (no password), database xatm_test
  std::string mysql_socket;  // dir + "/mysql.sock", for code that talks to libmysqlclient directly
  // TLS on TCP (empty when servers.sh predates it): both servers' certificate (for localhost and
  // 127.0.0.1) is signed by tls_ca; tls_other_ca signed nothing of theirs. On TCP PostgreSQL takes
  // TLS sessions of xatm and xatm_pw only; MariaDB has user xatm_tls, REQUIRE SSL.
  std::string tls_ca;
  std::string tls_other_ca;
  std::string tcp_host;  // 127.0.0.1
  std::string pg_tcp_port;
  std::string mysql_tcp_port;
  // A physical standby of `pg` (hot standby, database xatm_test, role xatm), which answers only
  // between `servers.sh start-pg-standby` and `stop-pg-standby`; empty when servers.sh predates it.
  std::string pg_standby;
};

// The servers a state file names. Throws std::runtime_error saying what is missing (the state
// file, the env file, an entry).
server_env read_server_env(const std::string& state_file);

// Where the script's standard output goes: the caller's, or its standard error (for a program
// whose standard output carries results).
enum class script_output : bool { inherit, to_stderr };

// Runs `servers.sh <subcommand>` (start, stop, ...; see the script) with XATM_SERVERS_STATE set to
// `state_file`, no shell in between. Throws std::runtime_error when it cannot run or exits non-zero.
void run_servers_script(std::string_view subcommand, const std::string& state_file, script_output output);

// A pair of servers of the caller's own: start() starts them (about 10 s), the destructor stops
// them and removes their state, also after a failed start.
class throwaway_servers {
 public:
  // Throws std::runtime_error when they cannot start (after cleaning up what the start left).
  static std::unique_ptr<throwaway_servers> start();
  ~throwaway_servers();
  throwaway_servers(const throwaway_servers&) = delete;
  throwaway_servers& operator=(const throwaway_servers&) = delete;

  const server_env& env() const noexcept { return env_; }

 private:
  explicit throwaway_servers(std::string state_dir);

  std::string state_dir_;  // private temp dir holding the state file
  server_env env_;
  bool started_ = false;
};

}  // namespace xatm::testing
