// support/throwaway_postgresql.cpp: initdb + pg_ctl in a temp dir, stopped and removed at the end.
#include "support/throwaway_postgresql.h"

#include <pwd.h>
#include <stdlib.h>  // mkdtemp
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <system_error>

namespace xatm::test {

throwaway_postgresql::throwaway_postgresql(const std::string& server_options) {
  char pattern[] = "/tmp/xatm-pgtest.XXXXXX";
  if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed for /tmp/xatm-pgtest.XXXXXX");
  dir_ = pattern;
  const char* bindir = std::getenv("XATM_PG_BINDIR");
  bindir_ = bindir != nullptr ? bindir : "/usr/lib/postgresql/15/bin";
  if (::geteuid() == 0) {
    // PostgreSQL refuses to run as root.
    const passwd* user = ::getpwnam("nobody");
    if (user == nullptr || ::chown(dir_.c_str(), user->pw_uid, user->pw_gid) != 0) {
      throw std::runtime_error("cannot hand " + dir_ + " to the user nobody");
    }
    as_user_ = "runuser -u nobody -- ";
  }
  run("initdb -D " + dir_ + "/data -U xatm --auth=trust -E UTF8 --locale=C --no-sync --no-instructions", "initdb.log");
  run("pg_ctl -D " + dir_ + "/data -l " + dir_ + "/log -w -t 60 -o \"-c listen_addresses='' " +
          "-c unix_socket_directories=" + dir_ + " " + server_options + "\" start",
      "pg_ctl.log");
  started_ = true;
}

throwaway_postgresql::~throwaway_postgresql() {
  if (started_ &&
      std::system(command("pg_ctl -D " + dir_ + "/data -m immediate -w stop >/dev/null 2>&1").c_str()) != 0) {
    // Leave the dir: the server may still be using it, and its log says why it did not stop.
    std::cerr << "could not stop the throwaway PostgreSQL in " << dir_ << "\n";
    return;
  }
  std::error_code ignored;  // best effort: a leftover temp dir is not worth failing a test over
  std::filesystem::remove_all(dir_, ignored);
}

std::string throwaway_postgresql::command(const std::string& tool_and_arguments) const {
  return "cd " + dir_ + " && " + as_user_ + bindir_ + "/" + tool_and_arguments;
}

void throwaway_postgresql::run(const std::string& tool_and_arguments, const std::string& log_name) const {
  std::string log = dir_ + "/" + log_name;
  std::string line = command(tool_and_arguments) + " >" + log + " 2>&1";
  if (std::system(line.c_str()) == 0) return;
  std::ifstream in(log);
  std::stringstream output;
  output << in.rdbuf();
  throw std::runtime_error("throwaway PostgreSQL: `" + line + "` failed:\n" + output.str());
}

}  // namespace xatm::test
