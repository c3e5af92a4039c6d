// Connections for production (docs/connections.md) against the fixture's servers over TCP with
// TLS: verified certificates, encrypted sessions, an XA transaction and a recovery over TLS,
// refusals of plain sessions and of a wrong CA, a PostgreSQL URI, MariaDB option files, and
// passwords from a file or the environment that never show in an error or in describe().
#include <doctest/doctest.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <mysql.h>

#include "mysql/connection_options.h"
#include "support/child_process.h"
#include "support/servers.h"
#include "support/temp_dir.h"
#include "support/tm_fixture.h"
#include "xatm/connection_settings.h"
#include "xatm/error.h"
#include "xatm/recovery.h"
#include "xatm/transaction_manager.h"

#ifndef XATM_TLS_CHILD_BIN
#error "XATM_TLS_CHILD_BIN must name the xatm-tls-child binary (set by tests/CMakeLists.txt)"
#endif

using namespace xatm;

namespace {

const test::server_env& tls_servers() {
  const auto& env = test::servers();
  REQUIRE_MESSAGE(!env.tls_ca.empty(), "servers.env has no TLS entries: restart the servers");
  return env;
}

// The xatm role over TCP, its certificate checked against `ca` and the host name.
std::string pg_tls(const std::string& ca, const std::string& user = "xatm") {
  const auto& env = tls_servers();
  return "host=" + env.tcp_host + " port=" + env.pg_tcp_port + " dbname=xatm_test user=" + user +
         " sslmode=verify-full sslrootcert=" + ca;
}

// xatm_tls (REQUIRE SSL) over TCP with a verified certificate; the password is the caller's.
std::string maria_tls(const std::string& ca) {
  const auto& env = tls_servers();
  return "host=" + env.tcp_host + " port=" + env.mysql_tcp_port + " dbname=xatm_test user=xatm_tls ssl_ca=" + ca +
         " ssl_verify_server_cert=1";
}

std::filesystem::path write_private_file(const test::temp_dir& dir, const std::string& name, const std::string& text) {
  std::filesystem::path path = dir.file(name);
  std::ofstream(path) << text;
  std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  return path;
}

// What an RM registered with `conninfo` answers to `sql` (first value of the first row), or the
// configuration/connection error's message when registering or connecting fails.
struct answer {
  std::string value;
  std::string error;
};

answer ask(const std::string& dialect, const std::string& conninfo, const std::string& sql) {
  test::tm_fixture fixture("tls", test::without_background_recovery(), test::fixture_rms::none);
  try {
    fixture.tm->register_rm("rm", dialect, conninfo);
    auto conn = fixture.tm->connect("rm");
    auto rows = conn->exec(sql).value();
    REQUIRE(!rows.rows.empty());
    return {rows.rows.front().front().value_or("NULL"), ""};
  } catch (const xatm::error& e) {
    return {"", e.what()};
  }
}

void check_no_secret(const std::string& text) {
  CAPTURE(text);
  CHECK(text.find(test::mysql_tls_password) == std::string::npos);
  CHECK(text.find("s3cr3t") == std::string::npos);
  CHECK(text.find(test::pg_password) == std::string::npos);
}

std::string percent_encoded(std::string_view text) {
  std::string encoded;
  for (unsigned char c : text) {
    if (std::isalnum(c) != 0 || c == '-' || c == '.' || c == '_' || c == '~') {
      encoded += static_cast<char>(c);
    } else {
      static const char* hex = "0123456789ABCDEF";
      encoded += '%';
      encoded += hex[c >> 4];
      encoded += hex[c & 15];
    }
  }
  return encoded;
}

}  // namespace

TEST_CASE("tls: both sessions are encrypted and verified") {
  const auto& env = tls_servers();
  CHECK(ask("postgresql", pg_tls(env.tls_ca), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").value ==
        "t");
  test::temp_dir dir("tls-pw");
  auto password = write_private_file(dir, "maria.pw", std::string(test::mysql_tls_password) + "\n");
  auto cipher = ask("mariadb", maria_tls(env.tls_ca) + " password_file=" + password.string(),
                    "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'SSL_CIPHER'");
  CHECK(cipher.error == "");
  CHECK(cipher.value.size() > 3);  // a cipher's name, e.g. TLS_AES_256_GCM_SHA384
}

TEST_CASE("tls: plain sessions are refused, and so is a certificate a wrong CA did not sign") {
  const auto& env = tls_servers();
  test::temp_dir dir("tls-refused");
  auto password = write_private_file(dir, "maria.pw", std::string(test::mysql_tls_password));
  // hostssl in pg_hba.conf, REQUIRE SSL for xatm_tls.
  auto pg_plain = ask("postgresql",
                      "host=" + env.tcp_host + " port=" + env.pg_tcp_port + " dbname=xatm_test user=xatm sslmode=disable",
                      "SELECT 1");
  CHECK(pg_plain.error.find("no encryption") != std::string::npos);
  auto maria_plain = ask("mariadb",
                         "host=" + env.tcp_host + " port=" + env.mysql_tcp_port +
                             " dbname=xatm_test user=xatm_tls ssl=0 password_file=" + password.string(),
                         "SELECT 1");
  CHECK(maria_plain.error.find("Access denied") != std::string::npos);
  check_no_secret(maria_plain.error);

  auto pg_wrong = ask("postgresql", pg_tls(env.tls_other_ca, "xatm_pw") + " password_file=" + password.string(),
                      "SELECT 1");
  CHECK(pg_wrong.error.find("certificate verify failed") != std::string::npos);
  check_no_secret(pg_wrong.error);
  auto maria_wrong = ask("mariadb", maria_tls(env.tls_other_ca) + " password_file=" + password.string(), "SELECT 1");
  CAPTURE(maria_wrong.error);
  CHECK(maria_wrong.error.find("SSL") != std::string::npos);
  check_no_secret(maria_wrong.error);
}

TEST_CASE("tls: a MariaDB ssl_ca is checked even without ssl_verify_server_cert, which adds the host name") {
  // What docs/connections.md says: Connector/C checks the server's chain against ssl_ca whenever
  // it is given (=0 does not turn that off); ssl_verify_server_cert=1 adds the host-name check.
  const auto& env = tls_servers();
  test::temp_dir dir("tls-ca-only");
  auto password = write_private_file(dir, "maria.pw", std::string(test::mysql_tls_password));
  const std::string base = "host=" + env.tcp_host + " port=" + env.mysql_tcp_port +
                           " dbname=xatm_test user=xatm_tls password_file=" + password.string();
  for (const std::string flag : {"", " ssl_verify_server_cert=0"}) {
    CAPTURE(flag);
    auto wrong_ca = ask("mariadb", base + " ssl_ca=" + env.tls_other_ca + flag, "SELECT 1");
    CAPTURE(wrong_ca.error);
    CHECK(wrong_ca.value.empty());
    CHECK(wrong_ca.error.find("SSL") != std::string::npos);
    check_no_secret(wrong_ca.error);
    CHECK(ask("mariadb", base + " ssl_ca=" + env.tls_ca + flag, "SELECT 1").value == "1");
  }
}

TEST_CASE("tls: a MariaDB ssl_ca turns the host-name check on unless ssl_verify_server_cert=0 says otherwise") {
  // The test certificate is made for localhost and 127.0.0.1, so a host-name mismatch cannot be
  // reached on these servers: the option Connector/C is handed is what is checked here.
  auto verify_set_by = [](const std::string& conninfo) {
    MYSQL* handle = mysql_init(nullptr);
    REQUIRE(handle != nullptr);
    auto applied = mysql_detail::apply(handle, connection_settings::parse(conninfo).value());
    REQUIRE_MESSAGE(applied.ok(), conninfo);
    my_bool verify = 0;
    REQUIRE(mysql_get_optionv(handle, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify) == 0);
    mysql_close(handle);
    return verify != 0;
  };
  CHECK(verify_set_by("host=h user=u ssl_ca=/etc/ca.pem"));
  CHECK(verify_set_by("host=h user=u ssl_capath=/etc/ssl/certs"));
  CHECK_FALSE(verify_set_by("host=h user=u ssl_ca=/etc/ca.pem ssl_verify_server_cert=0"));
  CHECK_FALSE(verify_set_by("host=h user=u ssl=1"));
  CHECK(verify_set_by("host=h user=u ssl_verify_server_cert=1"));
}

TEST_CASE("tls: a PostgreSQL URI is parsed by libpq and printed redacted") {
  const auto& env = tls_servers();
  const std::string uri = "postgresql://xatm_pw:" + percent_encoded(test::pg_password) + "@" + env.tcp_host + ":" +
                          env.pg_tcp_port + "/xatm_test?sslmode=verify-full&sslrootcert=" + env.tls_ca;
  CHECK(ask("postgresql", uri, "SELECT current_user").value == "xatm_pw");
  auto settings = connection_settings::parse(uri).value();
  check_no_secret(settings.describe());
  CHECK(settings.describe().find("postgresql://xatm_pw:***@127.0.0.1:") == 0);
  // libpq's refusal quotes the URI: xatm leaves the quote out.
  auto bad = ask("postgresql", "postgresql://xatm_pw:s3cr3t@[::1/xatm_test", "SELECT 1");
  CHECK(bad.error.find("PostgreSQL connection URI") != std::string::npos);
  check_no_secret(bad.error);
  // MariaDB takes keywords only.
  auto maria_uri = ask("mariadb", "postgresql://u:s3cr3t@h/d", "SELECT 1");
  CHECK(maria_uri.error.find("takes no URI") != std::string::npos);
  check_no_secret(maria_uri.error);
}

TEST_CASE("tls: passwords from a file, from libpq's passfile and PGPASSWORD, from a MariaDB option file") {
  const auto& env = tls_servers();
  test::temp_dir dir("tls-sources");
  // password_file, both backends.
  auto pg_file = write_private_file(dir, "pg.pw", std::string(test::pg_password) + "\n");
  CHECK(ask("postgresql", pg_tls(env.tls_ca, "xatm_pw") + " password_file=" + pg_file.string(), "SELECT current_user")
            .value == "xatm_pw");
  // libpq's own: passfile (':' and '\' escaped), PGPASSWORD.
  std::string escaped;
  for (char c : test::pg_password) {
    if (c == ':' || c == '\\') escaped += '\\';
    escaped += c;
  }
  auto passfile = write_private_file(dir, "pgpass", "*:*:*:xatm_pw:" + escaped + "\n");
  CHECK(ask("postgresql", pg_tls(env.tls_ca, "xatm_pw") + " passfile=" + passfile.string(), "SELECT current_user")
            .value == "xatm_pw");
  ::setenv("PGPASSWORD", std::string(test::pg_password).c_str(), 1);
  auto from_environment = ask("postgresql", pg_tls(env.tls_ca, "xatm_pw"), "SELECT current_user");
  ::unsetenv("PGPASSWORD");
  CHECK(from_environment.value == "xatm_pw");
  // A MariaDB option file and group that hold everything, the password included.
  auto options = write_private_file(dir, "my.cnf",
                                    "[xatm_tls_test]\nhost=" + env.tcp_host + "\nport=" + env.mysql_tcp_port +
                                        "\nuser=xatm_tls\npassword=\"" + std::string(test::mysql_tls_password) +
                                        "\"\nssl-ca=" + env.tls_ca + "\nssl-verify-server-cert\n");
  auto from_options =
      ask("mariadb", "read_default_file=" + options.string() + " read_default_group=xatm_tls_test dbname=xatm_test",
          "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'SSL_CIPHER'");
  CHECK(from_options.error == "");
  CHECK(from_options.value.size() > 3);

  // A password file others may read, or a missing one, is refused at registration (an existing one named).
  std::filesystem::path open_file = dir.file("open.pw");
  std::ofstream(open_file) << test::mysql_tls_password;
  std::filesystem::permissions(open_file, std::filesystem::perms::others_read, std::filesystem::perm_options::add);
  auto refused = ask("mariadb", maria_tls(env.tls_ca) + " password_file=" + open_file.string(), "SELECT 1");
  CHECK(refused.error.find("group or others may access it") != std::string::npos);
  CHECK(refused.error.find(open_file.string()) != std::string::npos);
  check_no_secret(refused.error);
  CHECK(ask("mariadb", maria_tls(env.tls_ca) + " password_file=" + dir.file("none"), "SELECT 1")
            .error.find("No such file") != std::string::npos);
  // A wrong password from a file: refused by the server, the text in no message.
  auto wrong = write_private_file(dir, "wrong.pw", "s3cr3t-wrong");
  auto denied = ask("mariadb", maria_tls(env.tls_ca) + " password_file=" + wrong.string(), "SELECT 1");
  CHECK(denied.error.find("Access denied") != std::string::npos);
  check_no_secret(denied.error);
}

TEST_CASE("tls: MariaDB keywords are checked at registration") {
  test::tm_fixture fixture("tls-keywords", test::without_background_recovery(), test::fixture_rms::none);
  auto refusal = [&](const std::string& conninfo) {
    try {
      fixture.tm->register_rm("rm", "mariadb", conninfo);
    } catch (const configuration_error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK(refusal("host=h user=u ssl_verify_server_cert=maybe").find("ssl_verify_server_cert must be 1 or 0") !=
        std::string::npos);
  CHECK(refusal("host=h user=u port=70000").find("port must be a number") != std::string::npos);
  CHECK(refusal("host=h user=u sslmode=require").find("unknown connection keyword 'sslmode'") != std::string::npos);
  CHECK(refusal("host=h user=u connect_timeout=soon").find("connect_timeout must be a number") != std::string::npos);
  CHECK(refusal("host=h user=u password=x password_file=/p").find("not both") != std::string::npos);
  // A password typed as password_file's value by mistake is not quoted back (describe() hides it too).
  CHECK(refusal("host=h user=u password_file=s3cr3t").find("password_file") != std::string::npos);
  CHECK(refusal("host=h user=u password_file=s3cr3t").find("s3cr3t") == std::string::npos);
  CHECK(refusal("host=/x port=1 user=u sslmode=verify-all").find("sslmode must be") == std::string::npos);  // mariadb
  try {
    fixture.tm->register_rm("pg", "postgresql", "host=h user=u sslmode=verify-all");
    FAIL("accepted");
  } catch (const configuration_error& e) {
    CHECK(std::string(e.what()).find("sslmode must be") != std::string::npos);
  }
}

TEST_CASE("tls: an XA transaction commits over TLS, and recovery finishes one over TLS") {
  const auto& env = tls_servers();
  test::temp_dir dir("tls-xa");
  auto password = write_private_file(dir, "maria.pw", std::string(test::mysql_tls_password));
  const std::string pg = pg_tls(env.tls_ca);
  const std::string maria = maria_tls(env.tls_ca) + " password_file=" + password.string();

  test::tm_fixture fixture("tls-xa", test::without_background_recovery(), test::fixture_rms::none);
  fixture.tm->register_rm("pg", "postgresql", pg);
  fixture.tm->register_rm("maria", "mariadb", maria);
  auto pg_conn = fixture.tm->connect("pg");
  auto maria_conn = fixture.tm->connect("maria");
  pg_conn->exec("CREATE TABLE IF NOT EXISTS tls_items (id varchar(80) PRIMARY KEY)").value();
  maria_conn->exec("CREATE TABLE IF NOT EXISTS tls_items (id varchar(80) PRIMARY KEY) ENGINE=InnoDB").value();
  {
    auto tx = fixture.tm->begin();
    tx.enlist(*pg_conn);
    tx.enlist(*maria_conn);
    pg_conn->exec("INSERT INTO tls_items VALUES ('" + fixture.tm_id + "')").value();
    maria_conn->exec("INSERT INTO tls_items VALUES ('" + fixture.tm_id + "')").value();
    CHECK(tx.commit() == commit_outcome::committed);
  }
  auto count = [&](const std::string& id) {
    std::string sql = "SELECT COUNT(*) FROM tls_items WHERE id = '" + id + "'";
    return pg_conn->exec(sql).value().rows.front().front().value() + "/" +
           maria_conn->exec(sql).value().rows.front().front().value();
  };
  CHECK(count(fixture.tm_id) == "1/1");

  // A child commits over TLS and dies with the decision durable: recovery commits its branches.
  const std::string child_tm = test::unique_tm_id("tls-child");
  const std::filesystem::path child_log = dir.file("child.log");
  test::child_process child({XATM_TLS_CHILD_BIN},
                            {"XATM_CRASH_AT=after_decision_durable", "XATM_TLS_CHILD_LOG=" + child_log.string(),
                             "XATM_TLS_CHILD_TM=" + child_tm, "XATM_TLS_CHILD_PG=" + pg,
                             "XATM_TLS_CHILD_MARIA=" + maria},
                            dir.file("child.out"), dir.file("child.err"));
  auto ended = child.wait(std::chrono::seconds(60));
  CAPTURE(child.out());
  CAPTURE(child.err());
  REQUIRE(ended.killed_by_sigkill());
  CHECK(count(child_tm) == "0/0");  // prepared, not committed

  offline_recovery_options options;
  options.tm_id = child_tm;
  options.log_path = child_log.string();
  options.rms = {{"pg", "postgresql:" + pg}, {"maria", "mariadb:" + maria}};
  auto report = recover_offline(options);
  CHECK(report.unreachable_rms.empty());
  int committed = 0;
  for (const auto& item : report.items) {
    if (item.result == recovery_result::committed) ++committed;
  }
  CHECK(committed == 2);
  CHECK(count(child_tm) == "1/1");

  // Recovery over a wrong CA reaches neither RM, and says why without the password.
  options.rms = {{"pg", "postgresql:" + pg_tls(env.tls_other_ca)},
                 {"maria", "mariadb:" + maria_tls(env.tls_other_ca) + " password_file=" + password.string()}};
  auto refused = recover_offline(options);
  CHECK(refused.unreachable_rms.size() == 2);
  for (const auto& why : refused.unreachable_rms) check_no_secret(why);
}
