// support/servers.h: the throwaway PostgreSQL and MariaDB servers every real-server test uses.
//
// CTest's `servers` fixture starts both servers (lib/testing/servers.sh) and sets XATM_SERVERS_STATE
// for the tests that need them; servers() reads their connection strings.
// A missing or broken server throws: a real-server test fails, it never skips. server_control()
// stops and starts the servers for crash and outage tests. Call these from the test's main thread.
#pragma once

#include <string>
#include <string_view>

#include "testing/throwaway_servers.h"

namespace xatm::test {

using testing::server_env;

// The xatm MariaDB user's password. Hostile on purpose (quotes, percent, space) so that tests
// catch quoting mistakes, and so that they can check it never shows up in messages or logs.
inline constexpr std::string_view mysql_password = "xatm pass'%\"w0rd";
// The PostgreSQL role xatm_pw's password (scram-sha-256), hostile likewise, with a backslash and
// "%27" (a quote, URL-encoded) besides.
inline constexpr std::string_view pg_password = "pg pw'%\"\\ s3cr3t %27";
// The MariaDB user xatm_tls's password (REQUIRE SSL; servers.sh).
inline constexpr std::string_view mysql_tls_password = "tls pw%s3cr3t";

// Reads $XATM_SERVERS_STATE -> temp dir -> servers.env once. Throws std::runtime_error saying
// what is missing when the variable, the state file or any entry is absent.
const server_env& servers();

// Runs `servers.sh <subcommand>` with the same state file (see servers.sh for the list); its
// output goes to the test's output. Throws std::runtime_error when it exits non-zero.
void server_control(std::string_view subcommand);

// kill -9 mariadbd and wait until it is gone; then start it again on the same data dir.
inline void kill_mysql() { server_control("kill-mysql"); }
inline void start_mysql() { server_control("start-mysql"); }
// PostgreSQL's crash-like shutdown (pg_ctl stop -m immediate); then start it again.
inline void stop_pg_immediate() { server_control("stop-pg-immediate"); }
inline void start_pg() { server_control("start-pg"); }
// A physical standby of PostgreSQL (servers().pg_standby), started from a base backup of the
// primary, streaming its WAL; stopped (and its data dir removed) by stop_pg_standby() or `stop`.
inline void start_pg_standby() { server_control("start-pg-standby"); }
inline void stop_pg_standby() { server_control("stop-pg-standby"); }

}  // namespace xatm::test
