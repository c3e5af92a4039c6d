// support/throwaway_postgresql.h: a PostgreSQL 15 server of the test's own, with settings the
// shared `servers` fixture must not have (max_prepared_transactions = 0, ...).
//
// The constructor runs initdb and pg_ctl in a fresh temp dir (unix socket only, trust auth, role
// xatm) and throws std::runtime_error, naming the command and its log, when either fails; the
// destructor stops the server (immediate mode) and removes the dir. As root the server runs as
// `nobody`, like tests/support/servers.sh. Use it from the test's main thread.
#pragma once

#include <string>

namespace xatm::test {

class throwaway_postgresql {
 public:
  // server_options: extra `postgres` options, e.g. "-c max_prepared_transactions=0".
  explicit throwaway_postgresql(const std::string& server_options);
  ~throwaway_postgresql();
  throwaway_postgresql(const throwaway_postgresql&) = delete;
  throwaway_postgresql& operator=(const throwaway_postgresql&) = delete;

  // libpq keyword form: the server's socket dir, database postgres, role xatm.
  std::string conninfo() const { return "host=" + dir_ + " dbname=postgres user=xatm"; }

 private:
  std::string command(const std::string& tool_and_arguments) const;
  void run(const std::string& tool_and_arguments, const std::string& log_name) const;

  std::string dir_;
  std::string bindir_;
  std::string as_user_;
  bool started_ = false;
};

}  // namespace xatm::test
