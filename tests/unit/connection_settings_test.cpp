// Connection strings: libpq's keyword syntax, clear errors, and a password that never shows.
#include <doctest/doctest.h>

#include <string>

#include "xatm/connection_settings.h"

using namespace xatm;

TEST_CASE("connection_settings: keywords, quotes and escapes") {
  auto parsed =
      connection_settings::parse(R"(host=/tmp/x  port = 5432 user='app user' password='it\'s 50%\\' dbname=shop)");
  REQUIRE(parsed.ok());
  const auto& settings = parsed.value();
  CHECK(settings.get("host") == "/tmp/x");
  CHECK(settings.get("port") == "5432");
  CHECK(settings.get("user") == "app user");
  CHECK(settings.get("password") == R"(it's 50%\)");
  CHECK(settings.get("dbname") == "shop");
  CHECK_FALSE(settings.get("sslmode").has_value());
  CHECK(connection_settings::parse("").ok());
  CHECK(connection_settings::parse("password=''").value().get("password") == "");
}

TEST_CASE("connection_settings: to_conninfo round-trips, describe redacts") {
  auto settings = connection_settings::parse(R"(user=u password='p a\'ss"w%rd\\' dbname=d)").value();
  auto again = connection_settings::parse(settings.to_conninfo());
  REQUIRE(again.ok());
  CHECK(again.value().values() == settings.values());
  CHECK(settings.describe() == "dbname=d password=*** user=u");
  CHECK(settings.describe().find("w%rd") == std::string::npos);
}

TEST_CASE("connection_settings: malformed strings give clear errors without the secret") {
  const std::string secret = "s3cr3t%pw";
  const std::string malformed[] = {"password='" + secret,          "host",           "host=a host=b", "=x", "Host=x",
                                   "password=" + secret + " user", "user=a password"};
  for (const std::string& bad : malformed) {
    CAPTURE(bad);
    auto parsed = connection_settings::parse(bad);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.error().code == xa_code::invalid);
    CHECK(parsed.error().message.find("connection string") != std::string::npos);
    CHECK(parsed.error().message.find(secret) == std::string::npos);
    CHECK(parsed.error().message.find("s3cr3t") == std::string::npos);
  }
  CHECK(connection_settings::parse("password='abc").error().message.find("unterminated") != std::string::npos);
}

TEST_CASE("connection_settings: a refusal never quotes the word after an unquoted password") {
  // `password=my secret`: "secret" is the rest of a password with a space, not a keyword (a
  // fuzzer property: tests/fuzz/parsers_fuzz.cpp).
  for (const std::string bad :
       {"password=pw0 s3cr3t", "password=pw0 s3cr3t user=x", "password=pw0 s3cr3t='x", "user=x password=pw0 user=y"}) {
    CAPTURE(bad);
    auto parsed = connection_settings::parse(bad);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.error().message.find("after an unquoted password (quote a password") != std::string::npos);
    CHECK(parsed.error().message.find("s3cr3t") == std::string::npos);
  }
  // A quoted password, or a backslash before the space, is one value.
  CHECK(connection_settings::parse("password='pw0 s3cr3t'").value().get("password") == "pw0 s3cr3t");
  CHECK(connection_settings::parse(R"(password=pw0\ s3cr3t)").value().get("password") == "pw0 s3cr3t");
}

TEST_CASE("connection_settings: a PostgreSQL URI is kept as given and printed without its passwords") {
  auto uri = connection_settings::parse("postgresql://app:s3cr3t%40x@db1:5432,db2/shop?sslmode=verify-full").value();
  CHECK(uri.uri() == "postgresql://app:s3cr3t%40x@db1:5432,db2/shop?sslmode=verify-full");
  CHECK(uri.values().empty());
  CHECK(uri.to_conninfo() == uri.uri());
  CHECK(uri.describe() == "postgresql://app:***@db1:5432,db2/shop?sslmode=verify-full");
  // In the query too, also when the keyword is percent-encoded; an '@' after a '/' is no user
  // information (libpq's reading).
  CHECK(connection_settings::parse("postgres://h/d?user=u&password=s3cr3t&sslpassword=s3cr3t").value().describe() ==
        "postgres://h/d?user=u&password=***&sslpassword=***");
  CHECK(connection_settings::parse("postgresql://h/d?pass%77ord=s3cr3t").value().describe() ==
        "postgresql://h/d?pass%77ord=***");
  CHECK(connection_settings::parse("postgresql://u@h/d").value().describe() == "postgresql://u@h/d");
  CHECK(connection_settings::parse("postgresql://").value().describe() == "postgresql://");
  // ssl_passphrase (MariaDB) is a secret as well.
  CHECK(connection_settings::parse("ssl_passphrase=s3cr3t").value().describe() == "ssl_passphrase=***");
}

TEST_CASE("connection_settings: a URI whose password holds a raw '@' or '/' is refused, never half printed") {
  // libpq ends the user information at the first '@' before any '/': in `app:p@ss@db1` the
  // password is "p" and the host "ss@db1", in `app:12/34@db1` the host is "app", the port 12 and
  // the database "34@db1". libpq accepts both, so the rest of the password would reach the
  // registration log, describe() and libpq's "could not translate host name" error. An '@' after
  // the user information and before the query is refused instead, without a quote.
  for (const std::string bad : {"postgresql://app:p@s3cr3t@db1/shop", "postgresql://app:12/s3cr3t@db1/shop",
                                "postgres://app:12/s3cr3t@db1:5432/shop?sslmode=require", "postgresql://db1/s3cr3t@x"}) {
    CAPTURE(bad);
    auto parsed = connection_settings::parse(bad);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.error().code == xa_code::invalid);
    CHECK(parsed.error().message.find("%40") != std::string::npos);
    CHECK(parsed.error().message.find("s3cr3t") == std::string::npos);
  }
  // Percent-encoded, or in the query, an '@' is fine.
  CHECK(connection_settings::parse("postgresql://app:p%40s3cr3t@db1/shop").value().describe() ==
        "postgresql://app:***@db1/shop");
  CHECK(connection_settings::parse("postgresql://db1/shop?user=a@b&password=s3cr3t").value().describe() ==
        "postgresql://db1/shop?user=a@b&password=***");
  CHECK(connection_settings::parse("postgresql://app:pa?s3cr3t@db1/shop").value().describe() ==
        "postgresql://app:***@db1/shop");
}
