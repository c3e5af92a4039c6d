// Throwaway PostgreSQL and MariaDB servers for xatm-bench, started with the test suite's
// tests/support/servers.sh (the same script CTest's fixture uses) so that `xatm-bench` with no
// connection strings works on a fresh machine. The object owns the servers: its destructor
// stops them and removes their temp dir, also when the bench fails. Main thread only.
#pragma once

#include <memory>
#include <string>

namespace xatm::bench {

class throwaway_servers {
 public:
  // Starts both servers (about 10 s); the script's progress goes to stderr. Throws
  // std::runtime_error when they cannot start (after cleaning up what the start left).
  static std::unique_ptr<throwaway_servers> start();
  ~throwaway_servers();
  throwaway_servers(const throwaway_servers&) = delete;
  throwaway_servers& operator=(const throwaway_servers&) = delete;

  const std::string& pg() const noexcept { return pg_; }        // database xatm_test
  const std::string& pg2() const noexcept { return pg2_; }      // database xatm_test2, same server
  const std::string& mysql() const noexcept { return mysql_; }  // MariaDB database xatm_test

 private:
  explicit throwaway_servers(std::string state_dir);
  void run_script(const char* subcommand) const;  // throws when the script fails

  std::string state_dir_;  // private temp dir holding the state file
  std::string pg_, pg2_, mysql_;
  bool started_ = false;
};

}  // namespace xatm::bench
