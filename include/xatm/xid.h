// xatm/xid.h: the XA transaction identifier and its encodings for PostgreSQL and MariaDB/MySQL.
//
// An xid is (formatID, gtrid, bqual): gtrid and bqual are 1..64 arbitrary bytes. xatm's own
// XIDs use formatID 0x78617431 ("xat1") and gtrids `<tm_id>.<incarnation id>.<seq>[.p3|.cm]`;
// anything else is foreign and never touched. Every constructor and parser validates its input first, so
// an xid that exists is always safe to encode into SQL. Plain value type: use from any thread.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "xatm/export.h"
#include "xatm/result.h"

namespace xatm {

// "xat1": the formatID of every branch xatm creates.
inline constexpr std::int32_t xatm_format_id = 0x78617431;
inline constexpr std::size_t max_gtrid_size = 64;
inline constexpr std::size_t max_bqual_size = 64;
inline constexpr std::size_t max_tm_id_size = 32;
inline constexpr std::size_t max_rm_name_size = 48;
inline constexpr std::size_t incarnation_id_size = 12;

// How a global transaction is committed; its gtrid says which, so that recovery anywhere knows.
enum class commit_protocol : std::uint8_t {
  two_phase,      // presumed-abort 2PC with the decision in the TM's log (docs/design.md section 4)
  three_phase,    // 2PC plus a pre-commit marker on the RMs (docs/three-phase.md): another xatm
                  // instance can finish the transaction without this TM or its log; gtrid ".p3"
  commit_marker,  // the decision is a marker row written inside one branch's own one-phase
                  // commit (docs/commit-marker.md): no write to the TM's log, fewer forced
                  // writes than 2PC, and any instance finishes it from the databases; gtrid ".cm"
};

class XATM_EXPORT xid {
 public:
  // Validates sizes (1..64 bytes each); throws invalid_argument_error on bad input.
  xid(std::int32_t format_id, std::string_view gtrid, std::string_view bqual);

  // The same checks without throwing.
  static result<xid> make(std::int32_t format_id, std::string_view gtrid, std::string_view bqual);

  std::int32_t format_id() const noexcept { return format_id_; }
  const std::string& gtrid() const noexcept { return gtrid_; }
  const std::string& bqual() const noexcept { return bqual_; }

  // For logs and tool output: printable bytes as is, others as \xNN: `2019914801:gtrid:bqual`.
  std::string to_string() const;

  friend bool operator==(const xid&, const xid&) = default;
  friend auto operator<=>(const xid&, const xid&) = default;

 private:
  xid() = default;
  std::int32_t format_id_ = 0;
  std::string gtrid_;
  std::string bqual_;
};

// The parts of one of xatm's gtrids.
struct gtrid_parts {
  std::string tm_id;
  // The incarnation id: 12 characters drawn at random each time a decision log is opened
  // (is_incarnation_id), so that a gtrid never repeats, whatever happens to the log: lost,
  // restored from a copy, or one tm_id given to two hosts. Gtrids made before logs had ids
  // carry the incarnation number in decimal here ("legacy"; still parsed, never made).
  std::string incarnation;
  std::uint64_t sequence = 0;
  commit_protocol protocol = commit_protocol::two_phase;  // ".p3": three_phase, ".cm": commit_marker

  // Whether recovery decides the gtrid's branches by marker rows in the RMs (three-phase and
  // commit-marker transactions) rather than by the TM's log alone.
  bool decided_by_markers() const noexcept { return protocol != commit_protocol::two_phase; }

  friend bool operator==(const gtrid_parts&, const gtrid_parts&) = default;
};

// A tm_id is 1..32 characters of [A-Za-z0-9_-].
XATM_EXPORT result<void> validate_tm_id(std::string_view tm_id);
// An RM name is 1..48 characters of [A-Za-z0-9_-].
XATM_EXPORT result<void> validate_rm_name(std::string_view rm_name);
// An incarnation id: a letter then 11 of [a-z2-7] (base32, about 59 random bits); never all
// digits, so it cannot be mistaken for a legacy incarnation number.
XATM_EXPORT bool is_incarnation_id(std::string_view text) noexcept;
// A legacy incarnation number: canonical decimal digits (no leading zero).
XATM_EXPORT bool is_legacy_incarnation(std::string_view text) noexcept;
// `<tm_id>.<incarnation>.<seq>[.p3|.cm]`; fails on a bad tm_id or incarnation, or when it would be
// longer than 64 bytes.
XATM_EXPORT result<std::string> format_gtrid(const gtrid_parts& parts);
// The inverse; fails (xa_code::invalid) for any gtrid that is not exactly of that shape.
XATM_EXPORT result<gtrid_parts> parse_gtrid(std::string_view gtrid);

// True when the xid is xatm's (our formatID and a well-formed gtrid) and carries this tm_id.
XATM_EXPORT bool is_ours(const xid& branch, std::string_view tm_id);

}  // namespace xatm
