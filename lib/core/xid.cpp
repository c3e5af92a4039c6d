// XIDs and xatm's gtrids. How each database spells an XID is its backend's (lib/postgresql/
// postgresql_xid.h, lib/mysql/mysql_xid.h); the strict text codecs they share are core/codec.h.
#include "xatm/xid.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "core/codec.h"

namespace xatm {

using detail::parse_uint64;
namespace {

constexpr std::string_view hex_digits = "0123456789abcdef";

failure invalid(std::string message) { return make_failure(xa_code::invalid, std::move(message)); }

bool is_name_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

result<void> validate_name(std::string_view what, std::string_view name, std::size_t max_size) {
  if (name.empty() || name.size() > max_size) {
    return invalid(std::string(what) + " must be 1.." + std::to_string(max_size) + " characters, got " +
                   std::to_string(name.size()));
  }
  for (char c : name) {
    if (!is_name_char(c)) return invalid(std::string(what) + " may only contain [A-Za-z0-9_-]");
  }
  return {};
}

}  // namespace

xid::xid(std::int32_t format_id, std::string_view gtrid, std::string_view bqual) {
  *this = make(format_id, gtrid, bqual).value();
}

result<xid> xid::make(std::int32_t format_id, std::string_view gtrid, std::string_view bqual) {
  // formatID -1 is XA's "null XID"; it names no branch.
  if (format_id == -1) return invalid("formatID -1 is the null XID");
  if (gtrid.empty() || gtrid.size() > max_gtrid_size) {
    return invalid("gtrid must be 1..64 bytes, got " + std::to_string(gtrid.size()));
  }
  if (bqual.empty() || bqual.size() > max_bqual_size) {
    return invalid("bqual must be 1..64 bytes, got " + std::to_string(bqual.size()));
  }
  xid made;
  made.format_id_ = format_id;
  made.gtrid_ = std::string(gtrid);
  made.bqual_ = std::string(bqual);
  return made;
}

std::string xid::to_string() const {
  auto printable = [](const std::string& bytes) {
    std::string out;
    for (char c : bytes) {
      auto byte = std::uint8_t(c);
      if (byte >= 0x21 && byte < 0x7f && c != '\\' && c != ':') {
        out += c;
      } else {
        out += "\\x";
        out += hex_digits[byte >> 4];
        out += hex_digits[byte & 15];
      }
    }
    return out;
  };
  return std::to_string(format_id_) + ":" + printable(gtrid_) + ":" + printable(bqual_);
}

result<void> validate_tm_id(std::string_view tm_id) { return validate_name("tm_id", tm_id, max_tm_id_size); }

result<void> validate_rm_name(std::string_view rm_name) { return validate_name("RM name", rm_name, max_rm_name_size); }

bool is_incarnation_id(std::string_view text) noexcept {
  auto base32 = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '2' && c <= '7'); };
  return text.size() == incarnation_id_size && text.front() >= 'a' && text.front() <= 'z' &&
         std::all_of(text.begin(), text.end(), base32);
}

bool is_legacy_incarnation(std::string_view text) noexcept { return parse_uint64(text).has_value(); }

result<std::string> format_gtrid(const gtrid_parts& parts) {
  if (auto valid = validate_tm_id(parts.tm_id); !valid) return std::move(valid).error();
  if (!is_incarnation_id(parts.incarnation) && !is_legacy_incarnation(parts.incarnation)) {
    return invalid("not an incarnation id: '" + parts.incarnation + "'");
  }
  std::string gtrid = parts.tm_id + "." + parts.incarnation + "." + std::to_string(parts.sequence);
  if (parts.protocol == commit_protocol::three_phase) gtrid += ".p3";
  if (parts.protocol == commit_protocol::commit_marker) gtrid += ".cm";
  // 32 + 1 + 12 + 1 + seq + 3 <= 64: 15 digits of sequence with the longest tm_id.
  if (gtrid.size() > max_gtrid_size) return invalid("gtrid longer than 64 bytes: " + gtrid);
  return gtrid;
}

result<gtrid_parts> parse_gtrid(std::string_view gtrid) {
  // Found by the fuzzer: a well-shaped text longer than any gtrid cannot be one of ours.
  if (gtrid.size() > max_gtrid_size) return invalid("not an xatm gtrid: longer than 64 bytes");
  gtrid_parts parts;
  std::string_view rest = gtrid;
  if (rest.size() >= 3 && rest.substr(rest.size() - 3) == ".p3") {
    parts.protocol = commit_protocol::three_phase;
    rest.remove_suffix(3);
  } else if (rest.size() >= 3 && rest.substr(rest.size() - 3) == ".cm") {
    parts.protocol = commit_protocol::commit_marker;
    rest.remove_suffix(3);
  }
  auto last = rest.rfind('.');
  auto middle = last == std::string_view::npos || last == 0 ? std::string_view::npos : rest.rfind('.', last - 1);
  if (middle == std::string_view::npos) return invalid("not an xatm gtrid (<tm_id>.<incarnation>.<seq>)");
  parts.tm_id = std::string(rest.substr(0, middle));
  auto incarnation = rest.substr(middle + 1, last - middle - 1);
  auto sequence = parse_uint64(rest.substr(last + 1));
  if (!validate_tm_id(parts.tm_id) || !(is_incarnation_id(incarnation) || is_legacy_incarnation(incarnation)) ||
      !sequence) {
    return invalid("not an xatm gtrid (<tm_id>.<incarnation>.<seq>)");
  }
  parts.incarnation = std::string(incarnation);
  parts.sequence = *sequence;
  return parts;
}

bool is_ours(const xid& branch, std::string_view tm_id) {
  if (branch.format_id() != xatm_format_id) return false;
  auto parts = parse_gtrid(branch.gtrid());
  return parts.ok() && parts.value().tm_id == tm_id;
}

}  // namespace xatm
