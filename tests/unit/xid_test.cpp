// XIDs, gtrids and both SQL encodings: round trips at the limits, and rejection of anything
// foreign or malformed before it could reach SQL.
#include <doctest/doctest.h>

#include <string>

#include "xatm/error.h"
#include "xatm/xid.h"
#include "postgresql/postgresql_xid.h"
#include "mysql/mysql_xid.h"

using namespace xatm;

namespace {
std::string all_bytes(std::size_t size, int offset = 0) {
  std::string bytes;
  for (std::size_t i = 0; i < size; ++i) bytes += char((int(i) * 37 + offset) & 0xff);
  return bytes;
}
}  // namespace

TEST_CASE("xid: sizes are validated") {
  CHECK(xid::make(xatm_format_id, "g", "b").ok());
  CHECK(xid::make(xatm_format_id, std::string(64, 'g'), std::string(64, 'b')).ok());
  CHECK(xid::make(xatm_format_id, std::string(65, 'g'), "b").error().code == xa_code::invalid);
  CHECK(xid::make(xatm_format_id, "g", std::string(65, 'b')).error().code == xa_code::invalid);
  CHECK(xid::make(xatm_format_id, "", "b").error().code == xa_code::invalid);
  CHECK(xid::make(xatm_format_id, "g", "").error().code == xa_code::invalid);
  CHECK(xid::make(-1, "g", "b").error().code == xa_code::invalid);
  CHECK_THROWS_AS(xid(xatm_format_id, std::string(65, 'g'), "b"), invalid_argument_error);
  CHECK(xid::make(xatm_format_id, std::string(65, 'g'), "b").error().message.find("1..64") != std::string::npos);
}

TEST_CASE("xid: PostgreSQL gid is pgjdbc's encoding and round-trips") {
  xid simple(xatm_format_id, "tm1.1.1", "1");
  CHECK(postgresql::gid_of(simple) == "2019652657_dG0xLjEuMQ==_MQ==");
  for (std::size_t size : {1u, 2u, 3u, 4u, 63u, 64u}) {
    CAPTURE(size);
    xid branch(xatm_format_id, all_bytes(size), all_bytes(size, 7));
    auto gid = postgresql::gid_of(branch);
    CHECK(gid.size() < 200);
    CHECK(gid.find('\'') == std::string::npos);
    auto parsed = postgresql::parse_gid(gid);
    REQUIRE(parsed.ok());
    CHECK(parsed.value() == branch);
  }
  xid negative(-7, "g", "b");
  CHECK(postgresql::parse_gid(postgresql::gid_of(negative)).value() == negative);
}

TEST_CASE("xid: foreign or malformed gids are rejected, not guessed") {
  for (const char* gid :
       {"", "foreign-1", "1_2", "1_Zw==_Yg==_x", "x_Zw==_Yg==", "01_Zw==_Yg==", "1_Zw=_Yg==", "1_Zw==_", "1__Yg==",
        "1_Z===_Yg==", "1_Zx==_Yg==", "99999999999_Zw==_Yg==", "1_Zw==_Yg==\n", "+1_Zw==_Yg==", "1_Zw==_Y*=="}) {
    CAPTURE(gid);
    CHECK(postgresql::parse_gid(gid).error().code == xa_code::invalid);
  }
  // 65 bytes of gtrid is well-formed base64 but not a valid XID.
  CHECK(postgresql::parse_gid("1_" + std::string(88, 'A') + "_Yg==").error().code == xa_code::invalid);
}

TEST_CASE("xid: MySQL literal and both XA RECOVER shapes round-trip") {
  xid branch(xatm_format_id, "ab'c", std::string("\0\x01;", 3));
  CHECK(mysql::xid_literal(branch) == "X'61622763',X'00013b',2019652657");
  CHECK(mysql::parse_sql_literal(mysql::xid_literal(branch)).value() == branch);
  CHECK(mysql::parse_sql_literal("X'61622763',X'00013B',2019652657").value() == branch);
  CHECK(mysql::parse_hex(xatm_format_id, 4, 3,
                         "0x61622763"
                         "00013b")
            .value() == branch);

  xid wide(1, all_bytes(64), all_bytes(64, 3));
  CHECK(mysql::parse_sql_literal(mysql::xid_literal(wide)).value() == wide);

  for (const char* data : {"", "X'6162',X'',1", "'ab','c',1", "X'6',X'62',1", "X'61',X'62'", "X'61',X'62',",
                           "X'61',X'62',1 ", "X'61';X'62',1", "X'zz',X'62',1", "X'61',X'62',1;DROP"}) {
    CAPTURE(data);
    CHECK_FALSE(mysql::parse_sql_literal(data).ok());
  }
  CHECK_FALSE(mysql::parse_hex(1, 2, 2, "0x616263").ok());
  CHECK_FALSE(mysql::parse_hex(1, 1, 1, "6162").ok());
  CHECK_FALSE(mysql::parse_hex(1, 1, 0, "0x61").ok());
}

TEST_CASE("xid: to_string escapes what a terminal should not see") {
  xid branch(5, std::string("a:b\n", 4), "\\");
  CHECK(branch.to_string() == "5:a\\x3ab\\x0a:\\x5c");
}

TEST_CASE("gtrid: <tm_id>.<incarnation id>.<seq>[.p3|.cm], and legacy numeric incarnations") {
  auto made = format_gtrid({"orders-1", "k2m4x7qa3cde", 42, commit_protocol::two_phase});
  REQUIRE(made.ok());
  CHECK(made.value() == "orders-1.k2m4x7qa3cde.42");
  CHECK(format_gtrid({"tm", "abcdefghijkl", 2, commit_protocol::three_phase}).value() == "tm.abcdefghijkl.2.p3");
  CHECK(parse_gtrid("orders-1.k2m4x7qa3cde.42").value() == gtrid_parts{"orders-1", "k2m4x7qa3cde", 42, commit_protocol::two_phase});
  // Gtrids of logs written before incarnation ids still parse (their incarnation is a number).
  CHECK(parse_gtrid("orders-1.3.42").value() == gtrid_parts{"orders-1", "3", 42, commit_protocol::two_phase});
  CHECK(parse_gtrid("tm.1.2.p3").value() == gtrid_parts{"tm", "1", 2, commit_protocol::three_phase});
  CHECK(format_gtrid({"tm", "abcdefghijkl", 7, commit_protocol::commit_marker}).value() == "tm.abcdefghijkl.7.cm");
  CHECK(parse_gtrid("tm.abcdefghijkl.7.cm").value() ==
        gtrid_parts{"tm", "abcdefghijkl", 7, commit_protocol::commit_marker});
  CHECK(parse_gtrid("tm.abcdefghijkl.7.cm").value().decided_by_markers());
  CHECK_FALSE(parse_gtrid("tm.abcdefghijkl.7").value().decided_by_markers());
  // The longest tm_id leaves 15 digits of sequence.
  auto longest = format_gtrid({std::string(32, 'x'), "abcdefghijkl", 999'999'999'999'999, commit_protocol::three_phase});
  REQUIRE(longest.ok());
  CHECK(longest.value().size() == max_gtrid_size);
  CHECK(parse_gtrid(longest.value()).value().tm_id == std::string(32, 'x'));
  CHECK_FALSE(format_gtrid({std::string(32, 'x'), "abcdefghijkl", 1'000'000'000'000'000, commit_protocol::three_phase}).ok());

  for (const char* bad :
       {"", "tm", "tm.1", ".1.2", "tm..2", "tm.1.", "tm.01.2", "tm.1.2.p4", "t m.1.2", "tm';DROP.1.2", "tm.1.2.p3.p3", "tm.1.2.cm.cm", "tm.1.2.p3.cm", "tm.1.2.cm.p3", "tm.1.2.cn",
        "tm.-1.2", "tm.1.99999999999999999999999", "tm.abcdefghijk.2", "tm.abcdefghijklm.2", "tm.2bcdefghijkl.2",
        "tm.Abcdefghijkl.2", "tm.abcdefghijk1.2", "tm.abcdefghijk8.2"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_gtrid(bad).ok());
  }
  CHECK_FALSE(format_gtrid({"tm", "abc", 1, commit_protocol::two_phase}).ok());
  CHECK_FALSE(parse_gtrid(std::string(33, 'x') + ".1.2").ok());
  // Well-shaped but longer than a gtrid can be (a fuzzer finding): refused, as format_gtrid does.
  const std::string too_long = "portt299392299939229937933.1729233937293229374.17293729929372933292";
  CHECK(too_long.size() > max_gtrid_size);
  CHECK_FALSE(parse_gtrid(too_long).ok());
}

TEST_CASE("incarnation ids: a letter, then 11 of base32; never all digits") {
  CHECK(is_incarnation_id("abcdefghijkl"));
  CHECK(is_incarnation_id("z234567abcde"));
  CHECK_FALSE(is_incarnation_id("234567abcdef"));
  CHECK_FALSE(is_incarnation_id("123456789012"));
  CHECK(is_legacy_incarnation("12"));
  CHECK_FALSE(is_legacy_incarnation("012"));
}

TEST_CASE("tm_id and RM names: 1..32 / 1..48 of [A-Za-z0-9_-]") {
  CHECK(validate_tm_id("shop_eu-1").ok());
  CHECK(validate_tm_id(std::string(32, 'a')).ok());
  for (std::string bad : {std::string(), std::string(33, 'a'), std::string("a.b"), std::string("a'b"),
                          std::string("a\0b", 3), std::string("';DROP TABLE x;--"), std::string("é")}) {
    CAPTURE(bad);
    auto checked = validate_tm_id(bad);
    CHECK(checked.error().code == xa_code::invalid);
    CHECK_FALSE(format_gtrid({bad, "1", 1, commit_protocol::two_phase}).ok());
  }
  CHECK(validate_rm_name(std::string(48, 'r')).ok());
  CHECK_FALSE(validate_rm_name(std::string(49, 'r')).ok());
}

TEST_CASE("is_ours: our formatID and our tm_id only") {
  CHECK(is_ours(xid(xatm_format_id, "shop.1.1", "1"), "shop"));
  CHECK_FALSE(is_ours(xid(xatm_format_id, "shop.1.1", "1"), "other"));
  CHECK_FALSE(is_ours(xid(1, "shop.1.1", "1"), "shop"));
  CHECK_FALSE(is_ours(xid(xatm_format_id, "shop", "1"), "shop"));
}
