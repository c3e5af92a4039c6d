// Hostile input through the public API (docs/faults.md rows "oversize or hostile XIDs and
// tm_ids" and "malformed connection strings, passwords with quotes or %"). It proves that
//  - a bad tm_id, RM name, dialect or connection string is refused with configuration_error
//    before any file is created, any connection is opened or any SQL is sent: unix-socket
//    listeners stand in for the servers and see every connection attempt;
//  - passwords with quotes, %, backslashes and spaces reach the real servers byte for byte
//    (MariaDB's user xatm and PostgreSQL's role xatm_pw, scram, check them), and show up in no
//    exception message, no log line (every channel, debug level), no byte of the decision log
//    and no output of xatm-recover: not as is, nor conninfo-escaped, SQL-escaped or URL-encoded;
//    a password whose text occurs in a driver's message by chance withholds that message rather
//    than mark where the password stood.
// Covered elsewhere, not repeated: xid sizes and hostile XID bytes through both servers' SQL
// (unit/xid_test.cpp, integration/postgresql_test.cpp, integration/mysql_test.cpp, the
// conformance suite), and the parser's own cases (unit/connection_settings_test.cpp).
#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/tm_access.h"
#include "support/adapter_checks.h"
#include "support/log_capture.h"
#include "support/result_checks.h"
#include "support/servers.h"
#include "support/temp_dir.h"
#include "support/tool_run.h"
#include "xatm/connection_settings.h"
#include "xatm/error.h"
#include "xatm/transaction_manager.h"
#include "xatm/xid.h"

using namespace xatm;  // NOLINT(google-build-using-namespace): test file

namespace {

using namespace std::chrono_literals;
using test::log_capture;
using test::run;
using test::single_value;
using test::temp_dir;
using test::thrown_by;

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

// Bytes a terminal should not see, as \xNN, for doctest's messages.
std::string printable(std::string_view bytes) {
  std::string out;
  for (char c : bytes) {
    auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f) {
      out += c;
    } else {
      char escaped[5];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", static_cast<unsigned>(byte));
      out += escaped;
    }
  }
  return out;
}

// A tm_id of this test process: parallel runs never share one.
std::string own_tm_id(const std::string& tag) { return "input-" + tag + "-" + std::to_string(::getpid()); }

tm_options options_for(const temp_dir& dir, std::string tm_id) {
  tm_options options;
  options.tm_id = std::move(tm_id);
  options.log_path = dir.file("decisions.db");
  options.recovery_interval = 0ms;  // recovery runs when the test says so
  return options;
}

// Names that no tm_id or RM name may have: empty, one byte too long, 65 bytes, SQL and shell
// metacharacters, a NUL, a newline (log injection), a dot (the gtrid separator), non-ASCII.
std::vector<std::string> hostile_names(std::size_t max_size) {
  return {std::string(),        std::string(max_size + 1, 'a'),
          std::string(65, 'a'), "quote'd",
          "double\"quoted",     std::string("nul\0byte", 8),
          "';DROP TABLE x;--",  "new\nline",
          "dotted.name",        "spaced name",
          "percent%27",         "back\\slash",
          "caf\xc3\xa9"};
}

// A refusal must not quote the refused name back: it may hold any bytes.
void check_not_echoed(std::string_view message, const std::string& name) {
  if (!name.empty()) CHECK_FALSE(contains(message, name));
  CHECK_FALSE(contains(message, std::string_view("\0", 1)));
  CHECK_FALSE(contains(message, "\n"));
}

// `text` as inside a quoted conninfo value: a backslash before every quote and backslash.
std::string conninfo_escaped(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// `text` URL-encoded (RFC 3986): %XX, in `hex_format`'s case, for every byte but A-Za-z0-9-._~;
// with plus_for_space, a space becomes '+' (as in HTML forms).
std::string url_encoded(std::string_view text, const char* hex_format = "%%%02X", bool plus_for_space = false) {
  std::string out;
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte) != 0 || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else if (c == ' ' && plus_for_space) {
      out += '+';
    } else {
      char encoded[4];
      std::snprintf(encoded, sizeof encoded, hex_format, static_cast<unsigned>(byte));
      out += encoded;
    }
  }
  return out;
}

// The spellings in which a password could leak: as is, conninfo-escaped, SQL-escaped (''),
// URL-encoded (either hex case, space as %20 or +), and a fragment that no other text holds.
std::vector<std::string> spellings_of(std::string_view password, std::string_view fragment) {
  std::string sql;
  for (char c : password) sql += c == '\'' ? std::string("''") : std::string(1, c);
  return {std::string(password), conninfo_escaped(password),      sql,
          url_encoded(password), url_encoded(password, "%%%02x"), url_encoded(password, "%%%02X", true),
          std::string(fragment)};
}

// Fails once for every spelling of either server's test password found in `text`.
void check_no_password(const std::string& where, std::string_view text) {
  static const std::vector<std::string> spellings = [] {
    auto all = spellings_of(test::pg_password, "s3cr3t");
    auto maria = spellings_of(test::mysql_password, "w0rd");
    all.insert(all.end(), maria.begin(), maria.end());
    return all;
  }();
  for (const std::string& spelling : spellings) {
    CHECK_MESSAGE(!contains(text, spelling), where << " shows a password, spelt " << printable(spelling));
  }
}

// The conninfo `conninfo` with another password.
std::string with_password(const std::string& conninfo, std::string_view password) {
  auto settings = test::settings_of(conninfo);
  settings.set("password", std::string(password));
  return settings.to_conninfo();
}

// PostgreSQL's conninfo with the role whose password is checked, or a failed test saying why not.
const std::string& pg_with_password() {
  const std::string& conninfo = test::servers().pg_pw;
  REQUIRE_MESSAGE(!conninfo.empty(),
                  "the servers' env has no XATM_TEST_PG_PW: they were started by an older "
                  "servers.sh; stop them (ctest -R servers_stop) and run again");
  return conninfo;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A unix socket where a server would listen. Nothing answers on it: a driver that connects
// waits for a greeting until the test closes the connection, and the test sees that it came.
class wire_listener {
 public:
  explicit wire_listener(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof(address.sun_path));
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    REQUIRE(::bind(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0);
    REQUIRE(::listen(fd_, 16) == 0);
  }
  ~wire_listener() { ::close(fd_); }
  wire_listener(const wire_listener&) = delete;
  wire_listener& operator=(const wire_listener&) = delete;

  // Whether a connection arrives within `wait`; it is accepted and closed at once (the driver
  // on the other end then fails).
  bool take_connection(std::chrono::milliseconds wait) {
    pollfd ready{fd_, POLLIN, 0};
    if (::poll(&ready, 1, static_cast<int>(wait.count())) != 1) return false;
    int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) return false;
    ::close(client);
    return true;
  }

 private:
  int fd_ = -1;
};

// Connects to `rm_name` on another thread while `listener` takes what arrives; answers whether
// the listener saw a connection and the connect then failed with rm_error (the control that
// shows a listener would notice).
bool listener_sees_connect(transaction_manager& tm, const std::string& rm_name, wire_listener& listener) {
  auto connecting = std::async(std::launch::async, [&tm, rm_name] {
    try {
      (void)tm.connect(rm_name);
    } catch (const rm_error&) {
      return true;
    }
    return false;
  });
  bool seen = false;
  const auto give_up = std::chrono::steady_clock::now() + 30s;  // "does not hang", not a timing claim
  while (connecting.wait_for(0s) != std::future_status::ready && std::chrono::steady_clock::now() < give_up) {
    seen = listener.take_connection(100ms) || seen;
  }
  REQUIRE_MESSAGE(connecting.wait_for(0s) == std::future_status::ready, "connect did not give up");
  return seen && connecting.get();
}

#ifdef XATM_RECOVER_BIN
// Runs xatm-recover with `arguments` (no shell: each reaches it verbatim), its output in files of
// `dir`. Fails the test if it has not ended within 60 s.
test::tool_run run_xatm_recover(const temp_dir& dir, const std::vector<std::string>& arguments) {
  std::vector<std::string> argv{XATM_RECOVER_BIN};
  argv.insert(argv.end(), arguments.begin(), arguments.end());
  auto done = test::run_tool(argv, dir.path, 60s);
  REQUIRE_MESSAGE(!done.status.timed_out, "xatm-recover did not end within 60 s\n" << done.output());
  return done;
}
#endif

}  // namespace

TEST_CASE("a hostile tm_id is refused with configuration_error before the decision log exists") {
  log_capture logs;
  for (const std::string& tm_id : hostile_names(max_tm_id_size)) {
    CAPTURE(printable(tm_id));
    temp_dir dir("xatm-input");
    auto refused = thrown_by<configuration_error>([&] { transaction_manager tm(options_for(dir, tm_id)); });
    CHECK(refused.code() == xa_code::invalid);
    CHECK(contains(refused.what(), "tm_id"));
    check_not_echoed(refused.what(), tm_id);
    CHECK(std::filesystem::is_empty(dir.path));  // no log, no -wal, no lock file
  }
  CHECK_FALSE(contains(logs.text(), "opened log"));

  // The control: the longest valid tm_id does create its log, and says so.
  temp_dir dir("xatm-input");
  { transaction_manager tm(options_for(dir, std::string(max_tm_id_size, 'a'))); }
  CHECK(std::filesystem::exists(dir.file("decisions.db")));
  CHECK(contains(logs.text(), "opened log"));
}

TEST_CASE("a hostile RM name is refused by register_rm and connect before anything connects") {
  log_capture logs;
  temp_dir dir("xatm-input");
  transaction_manager tm(options_for(dir, own_tm_id("names")));
  // Where a PostgreSQL and a MariaDB server would be, if these conninfos were ever used.
  wire_listener pg_listener(dir.file(".s.PGSQL.5432"));
  wire_listener maria_listener(dir.file("mysql.sock"));
  const std::string pg_conninfo = "host=" + dir.path.string() + " port=5432 dbname=x user=x password=pw";
  const std::string maria_conninfo = "unix_socket=" + dir.file("mysql.sock") + " dbname=x user=x password=pw";
  int connector_calls = 0;
  rm_connector counting = [&connector_calls]() -> result<std::unique_ptr<resource_manager>> {
    ++connector_calls;
    return make_failure(xa_code::rm_failure, "this connector must never be called");
  };

  for (const std::string& name : hostile_names(max_rm_name_size)) {
    CAPTURE(printable(name));
    auto pg = thrown_by<configuration_error>([&] { tm.register_rm(name, "postgresql", pg_conninfo); });
    CHECK(contains(pg.what(), "RM name"));
    check_not_echoed(pg.what(), name);
    auto maria = thrown_by<configuration_error>([&] { tm.register_rm(name, "mariadb", maria_conninfo); });
    check_not_echoed(maria.what(), name);
    auto custom = thrown_by<configuration_error>([&] { detail::tm_access::register_rm(tm, name, counting); });
    check_not_echoed(custom.what(), name);
    auto connect = thrown_by<configuration_error>([&] { (void)tm.connect(name); });
    check_not_echoed(connect.what(), name);
  }
  CHECK(connector_calls == 0);
  CHECK_FALSE(pg_listener.take_connection(200ms));
  CHECK_FALSE(maria_listener.take_connection(200ms));
  CHECK_FALSE(contains(logs.text(), "registered RM"));

  // The control: valid names with the same conninfos do reach the listeners.
  tm.register_rm("listener-pg", "postgresql", pg_conninfo);
  tm.register_rm("listener-maria", "mariadb", maria_conninfo);
  CHECK(listener_sees_connect(tm, "listener-pg", pg_listener));
  CHECK(listener_sees_connect(tm, "listener-maria", maria_listener));
  CHECK(contains(logs.text(), "registered RM listener-pg"));
}

TEST_CASE(
    "a malformed connection string or dialect is refused by register_rm, naming the problem, never the password") {
  const std::string password(test::pg_password);
  const std::string quoted = "'" + conninfo_escaped(password) + "'";
  struct malformed {
    std::string conninfo;
    std::string says;  // what the message must name
  };
  const malformed cases[] = {
      {"user=app password=" + quoted.substr(0, quoted.size() - 1), "unterminated quoted value of keyword 'password'"},
      {"user app password=" + quoted, "missing '=' after keyword 'user'"},
      // An unquoted password with a space: the word after it is the rest of the password.
      {"user=app password=pw0 s3cr3t dbname=x", "the word after an unquoted password (quote a password"},
      {"colour=blue password=" + quoted, "unknown connection keyword 'colour'"},
      {"user=a user=b password=" + quoted, "keyword 'user' given twice"},
      {"Host=x password=" + quoted, "expected a keyword"},
      {"password=" + quoted + " =x", "expected a keyword"},
      {"", "the connection string is empty"},
      {" \t ", "the connection string is empty"},
  };
  log_capture logs;
  temp_dir dir("xatm-input");
  transaction_manager tm(options_for(dir, own_tm_id("conninfo")));
  for (const char* dialect : {"postgresql", "mariadb"}) {
    for (const auto& bad : cases) {
      CAPTURE(std::string(dialect));
      CAPTURE(bad.says);
      auto refused = thrown_by<configuration_error>([&] { tm.register_rm("rm", dialect, bad.conninfo); });
      INFO(std::string(refused.what()));
      CHECK(refused.code() == xa_code::invalid);
      CHECK(refused.rm_name() == "rm");
      CHECK(contains(refused.what(), bad.says));
      check_no_password("the refusal", refused.what());
    }
  }
  // A URI: MariaDB takes none; libpq refuses a malformed one, and its quote of the URI is left out.
  auto maria_uri = thrown_by<configuration_error>(
      [&] { tm.register_rm("rm", "mariadb", "postgresql://app:" + url_encoded(password) + "@localhost/db"); });
  CHECK(contains(maria_uri.what(), "the mariadb backend takes no URI"));
  check_no_password("the refusal of a URI", maria_uri.what());
  auto bad_uri = thrown_by<configuration_error>(
      [&] { tm.register_rm("rm", "postgresql", "postgresql://app:" + url_encoded(password) + "@[::1/db"); });
  CHECK(contains(bad_uri.what(), "PostgreSQL connection URI: end of string reached"));
  check_no_password("libpq's refusal of a URI", bad_uri.what());
  // A mistyped dialect, or the arguments swapped (the conninfo where the dialect goes): the
  // dialect is never quoted back either.
  auto mistyped = thrown_by<configuration_error>([&] { tm.register_rm("rm", "postgres", test::servers().pg); });
  CHECK(contains(mistyped.what(), "unknown RM dialect (postgresql, mysql or mariadb)"));
  auto swapped = thrown_by<configuration_error>([&] { tm.register_rm("rm", pg_with_password(), "postgresql"); });
  check_no_password("the refusal of swapped arguments", swapped.what());

  // Nothing was registered, and nothing logged the password.
  auto unknown = thrown_by<configuration_error>([&] { (void)tm.connect("rm"); });
  CHECK(contains(unknown.what(), "no RM named 'rm' is registered"));
  check_no_password("the log", logs.text());
}

TEST_CASE("passwords with quotes, percent, backslashes and spaces reach both servers byte for byte") {
  const std::string& pg_conninfo = pg_with_password();
  CHECK(test::settings_of(pg_conninfo).get("password") == std::string(test::pg_password));
  CHECK(test::settings_of(test::servers().mysql).get("password") == std::string(test::mysql_password));
  temp_dir dir("xatm-input");
  transaction_manager tm(options_for(dir, own_tm_id("exact")));
  tm.register_rm("pg", "postgresql", pg_conninfo);
  tm.register_rm("maria", "mariadb", test::servers().mysql);
  CHECK(single_value(*tm.connect("pg"), "SELECT current_user") == "xatm_pw");
  CHECK(single_value(*tm.connect("maria"), "SELECT CURRENT_USER()") == "xatm@localhost");

  // Both servers do check: one character more and each refuses.
  tm.register_rm("pg-wrong", "postgresql", with_password(pg_conninfo, std::string(test::pg_password) + "!"));
  tm.register_rm("maria-wrong", "mariadb",
                 with_password(test::servers().mysql, std::string(test::mysql_password) + "!"));
  auto pg_refused = thrown_by<rm_error>([&] { (void)tm.connect("pg-wrong"); });
  CHECK(contains(pg_refused.what(), "password authentication failed"));
  // The same class of error on both: the RM cannot be connected to (XAER_RMFAIL, rm_error).
  auto maria_refused = thrown_by<rm_error>([&] { (void)tm.connect("maria-wrong"); });
  CHECK(pg_refused.code() == xa_code::rm_failure);
  CHECK(maria_refused.code() == xa_code::rm_failure);
  CHECK(maria_refused.native_code() == 1045);
  CHECK(contains(maria_refused.what(), "Access denied for user 'xatm'@'localhost' (using password: YES)"));
}

TEST_CASE("a refused or unreachable connect shows the password in no message and no log line, on both servers") {
  const std::string& pg_conninfo = pg_with_password();
  const std::string& maria_conninfo = test::servers().mysql;
  log_capture logs;
  temp_dir dir("xatm-input");
  transaction_manager tm(options_for(dir, own_tm_id("refused")));
  // Wrong passwords that contain the right ones: a leak of either shows as a leak of the right one.
  tm.register_rm("pg-wrong", "postgresql", with_password(pg_conninfo, std::string(test::pg_password) + "!"));
  tm.register_rm("maria-wrong", "mariadb", with_password(maria_conninfo, std::string(test::mysql_password) + "!"));
  auto pg_gone = test::settings_of(pg_conninfo);
  pg_gone.set("host", "/nonexistent/xatm");
  tm.register_rm("pg-gone", "postgresql", pg_gone.to_conninfo());
  auto maria_gone = test::settings_of(maria_conninfo);
  maria_gone.set("unix_socket", "/nonexistent/xatm/mysql.sock");
  tm.register_rm("maria-gone", "mariadb", maria_gone.to_conninfo());

  // What each refusal is: refused logins and unreachable servers alike are RM failures.
  const xatm::error refusals[] = {
      thrown_by<rm_error>([&] { (void)tm.connect("pg-wrong"); }),
      thrown_by<rm_error>([&] { (void)tm.connect("maria-wrong"); }),
      thrown_by<rm_error>([&] { (void)tm.connect("pg-gone"); }),
      thrown_by<rm_error>([&] { (void)tm.connect("maria-gone"); }),
  };
  for (const xatm::error& refused : refusals) {
    CAPTURE(refused.rm_name());
    CHECK(contains(refused.what(), "password=***"));  // the settings are named, redacted
    check_no_password("the exception", refused.what());
  }
  // Recovery meets the same four RMs: it reports them unreachable, never with the password.
  { auto first = tm.begin(); }  // the first begin() runs recovery
  auto report = tm.recover_now();
  CHECK(report.unreachable_rms.size() == 4);
  for (const auto& unreachable : report.unreachable_rms) check_no_password("the recovery report", unreachable);

  const std::string text = logs.text();
  CHECK(contains(text, "password=***"));  // the sink did see the connection settings
  check_no_password("the log", text);
}

TEST_CASE("a password whose text occurs in a refusal by chance withholds the message, never marks where it stood") {
  // Short or common passwords occur in drivers' messages by chance; "***" in their place would
  // show them ("acce***ting" for a password "p"). The message is withheld instead.
  log_capture logs;
  temp_dir dir("xatm-input");
  transaction_manager tm(options_for(dir, own_tm_id("short")));
  tm.register_rm("pg-gone", "postgresql", "host=/nonexistent/xatm dbname=x user=x password=p");
  tm.register_rm("maria-gone", "mariadb", "unix_socket=/nonexistent/xatm/mysql.sock user=x password=o");
  // The user name as the password: both servers name the user in their refusal.
  tm.register_rm("pg-user", "postgresql", with_password(pg_with_password(), "xatm_pw"));
  tm.register_rm("maria-user", "mariadb", with_password(test::servers().mysql, "xatm"));
  auto without_redacted_settings = [](std::string text) {
    for (auto at = text.find("password=***"); at != std::string::npos; at = text.find("password=***")) {
      text.erase(at, std::string("password=***").size());
    }
    return text;
  };
  const xatm::error refusals[] = {
      thrown_by<rm_error>([&] { (void)tm.connect("pg-gone"); }),
      thrown_by<rm_error>([&] { (void)tm.connect("maria-gone"); }),
      thrown_by<rm_error>([&] { (void)tm.connect("pg-user"); }),
      thrown_by<rm_error>([&] { (void)tm.connect("maria-user"); }),
  };
  for (const xatm::error& refused : refusals) {
    CAPTURE(refused.rm_name());
    INFO(std::string(refused.what()));
    CHECK(contains(refused.what(), "(message withheld: it contains the text of the password)"));
    CHECK_FALSE(contains(without_redacted_settings(refused.what()), "***"));
  }
  CHECK_FALSE(contains(without_redacted_settings(logs.text()), "***"));
}

TEST_CASE("a commit and a recovery with hostile passwords leave them in no log line and no byte of the decision log") {
  const std::string& pg_conninfo = pg_with_password();
  const std::string& maria_conninfo = test::servers().mysql;
  const std::string table = "input_fault_rows";
  log_capture logs;
  temp_dir dir("xatm-input");
  const std::string tm_id = own_tm_id("cycle");
  std::int64_t committed_row = test::next_row_id();
  std::string orphan_gtrid;
  std::int64_t orphan_pg_row = 0;
  std::int64_t orphan_maria_row = 0;
  {
    transaction_manager tm(options_for(dir, tm_id));
    tm.register_rm("pg", "postgresql", pg_conninfo);
    tm.register_rm("maria", "mariadb", maria_conninfo);
    auto pg = tm.connect("pg");
    auto maria = tm.connect("maria");
    run(*pg, "CREATE TABLE IF NOT EXISTS " + table + " (id bigint PRIMARY KEY, note text)");
    run(*maria, "CREATE TABLE IF NOT EXISTS " + table + " (id bigint PRIMARY KEY, note text) ENGINE=InnoDB");
    {
      auto tx = tm.begin();
      tx.enlist(*pg);
      tx.enlist(*maria);
      run(*pg, test::insert_row_sql(table, committed_row));
      run(*maria, test::insert_row_sql(table, committed_row));
      CHECK(tx.commit() == commit_outcome::committed);
    }
    CHECK(tm.statistics().decisions_logged == 1);
    // What a crash before the decision leaves: branches of this incarnation prepared on both
    // servers, no record. The next incarnation's recovery must roll them back.
    orphan_gtrid = format_gtrid({tm_id, tm.incarnation_id(), 1'000'000, commit_protocol::two_phase}).value();
    const xid orphan_pg(xatm_format_id, orphan_gtrid, "1");
    const xid orphan_maria(xatm_format_id, orphan_gtrid, "2");
    orphan_pg_row = test::write_and_end_in(resource_manager::of(*pg), orphan_pg, table);
    REQUIRE_OK(resource_manager::of(*pg).prepare(orphan_pg));
    orphan_maria_row = test::write_and_end_in(resource_manager::of(*maria), orphan_maria, table);
    REQUIRE_OK(resource_manager::of(*maria).prepare(orphan_maria));
  }
  {
    transaction_manager tm(options_for(dir, tm_id));
    tm.register_rm("pg", "postgresql", pg_conninfo);
    tm.register_rm("maria", "mariadb", maria_conninfo);
    // MariaDB may still be finishing the closed session that prepared its branch (it then says
    // "retry"): run recovery until both branches are rolled back.
    std::set<std::string> rolled_back_on;
    const auto give_up = std::chrono::steady_clock::now() + 30s;  // "does not hang", not a timing claim
    while (rolled_back_on.size() < 2 && std::chrono::steady_clock::now() < give_up) {
      auto report = tm.recover_now();
      CHECK(report.unreachable_rms.empty());
      for (const auto& item : report.items) {
        if (item.gtrid == orphan_gtrid && item.result == recovery_result::rolled_back)
          rolled_back_on.insert(item.rm_name);
        check_no_password("the recovery report", item.detail + " " + item.xid);
      }
      if (rolled_back_on.size() < 2) std::this_thread::sleep_for(200ms);
    }
    CHECK(rolled_back_on == std::set<std::string>{"pg", "maria"});
    auto rows_among = [&](connection& rm, std::int64_t orphan_row) {
      return single_value(rm, "SELECT count(*) FROM " + table + " WHERE id IN (" + std::to_string(committed_row) +
                                  ", " + std::to_string(orphan_row) + ")");
    };
    CHECK(rows_among(*tm.connect("pg"), orphan_pg_row) == "1");
    CHECK(rows_among(*tm.connect("maria"), orphan_maria_row) == "1");
  }

  const std::string text = logs.text();
  CHECK(contains(text, "password=***"));
  check_no_password("the log", text);
  // The decision log (and its -wal, if any) holds RM names only: no password, no conninfo.
  for (const auto& entry : std::filesystem::directory_iterator(dir.path)) {
    if (!entry.is_regular_file()) continue;
    CAPTURE(entry.path().string());
    const std::string bytes = read_file(entry.path());
    check_no_password("the decision log", bytes);
    CHECK_FALSE(contains(bytes, test::servers().dir));
    CHECK_FALSE(contains(bytes, "xatm_pw"));
  }
}

#ifdef XATM_RECOVER_BIN
TEST_CASE("xatm-recover given hostile passwords on its command line prints them nowhere, even with --verbose") {
  const std::string& pg_conninfo = pg_with_password();
  const std::string& maria_conninfo = test::servers().mysql;
  temp_dir dir("xatm-input");
  const std::string tm_id = own_tm_id("tool");
  { transaction_manager tm(options_for(dir, tm_id)); }  // a log of its own, nothing in doubt
  const std::string log = dir.file("decisions.db");

  auto clean = run_xatm_recover(dir, {"--verbose", "--log", log, "--rm", "pg=postgresql:" + pg_conninfo, "--rm",
                                      "maria=mariadb:" + maria_conninfo});
  INFO(clean.output());
  CHECK(clean.exit_code() == 0);
  CHECK(contains(clean.output(), "password=***"));  // --verbose logged the connection settings
  check_no_password("xatm-recover's output", clean.output());

  auto refused = run_xatm_recover(
      dir, {"--verbose", "--log", log, "--rm",
            "pg=postgresql:" + with_password(pg_conninfo, std::string(test::pg_password) + "!"), "--rm",
            "maria=mariadb:" + with_password(maria_conninfo, std::string(test::mysql_password) + "!")});
  INFO(refused.output());
  CHECK(refused.exit_code() == 1);  // unresolved: both RMs unreachable
  check_no_password("xatm-recover's output", refused.output());

  auto malformed = run_xatm_recover(dir, {"--log", log, "--rm", "pg=postgresql:user=x password='s3cr3t"});
  INFO(malformed.output());
  CHECK(malformed.exit_code() == 2);
  CHECK(contains(malformed.output(), "unterminated quoted value of keyword 'password'"));
  check_no_password("xatm-recover's output", malformed.output());
}
#endif
