// XIDs and their two SQL encodings. Every parser here reads text that came from a database
// server (pg_prepared_xacts, XA RECOVER), which may have been written by any other program, so
// each one is strict: anything not exactly in the expected shape is reported as foreign
// (xa_code::invalid), never guessed at.
#include "xatm/xid.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>

namespace xatm {
namespace {

constexpr std::string_view base64_alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view hex_digits = "0123456789abcdef";

failure invalid(std::string message) { return make_failure(xa_code::invalid, std::move(message)); }

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    auto chunk = std::uint32_t(std::uint8_t(bytes[i])) << 16 | std::uint32_t(std::uint8_t(bytes[i + 1])) << 8 |
                 std::uint32_t(std::uint8_t(bytes[i + 2]));
    out += base64_alphabet[chunk >> 18 & 63];
    out += base64_alphabet[chunk >> 12 & 63];
    out += base64_alphabet[chunk >> 6 & 63];
    out += base64_alphabet[chunk & 63];
  }
  if (std::size_t rest = bytes.size() - i; rest > 0) {
    std::uint32_t chunk = std::uint32_t(std::uint8_t(bytes[i])) << 16;
    if (rest == 2) chunk |= std::uint32_t(std::uint8_t(bytes[i + 1])) << 8;
    out += base64_alphabet[chunk >> 18 & 63];
    out += base64_alphabet[chunk >> 12 & 63];
    out += rest == 2 ? base64_alphabet[chunk >> 6 & 63] : '=';
    out += '=';
  }
  return out;
}

// Strict: padded, canonical (unused bits zero), so that decode(encode(x)) is the only way in.
std::optional<std::string> base64_decode(std::string_view text) {
  if (text.empty() || text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    std::array<std::uint32_t, 4> sextets{};
    int padding = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      char c = text[i + k];
      if (c == '=') {
        // '=' only in the last group, only at its end.
        if (i + 4 != text.size() || k < 2) return std::nullopt;
        ++padding;
        continue;
      }
      if (padding > 0) return std::nullopt;
      auto pos = base64_alphabet.find(c);
      if (pos == std::string_view::npos) return std::nullopt;
      sextets[k] = std::uint32_t(pos);
    }
    std::uint32_t chunk = sextets[0] << 18 | sextets[1] << 12 | sextets[2] << 6 | sextets[3];
    out += char(chunk >> 16 & 0xff);
    if (padding < 2) out += char(chunk >> 8 & 0xff);
    if (padding < 1) out += char(chunk & 0xff);
    if ((padding == 1 && (chunk & 0xff) != 0) || (padding == 2 && (chunk & 0xffff) != 0)) return std::nullopt;
  }
  return out;
}

std::string hex_encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    auto byte = std::uint8_t(c);
    out += hex_digits[byte >> 4];
    out += hex_digits[byte & 15];
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> hex_decode(std::string_view text) {
  if (text.size() % 2 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 2);
  for (std::size_t i = 0; i < text.size(); i += 2) {
    int high = hex_value(text[i]);
    int low = hex_value(text[i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    out += char(high << 4 | low);
  }
  return out;
}

// A decimal int32 as the servers print it: optional '-', digits, no leading zeros.
std::optional<std::int32_t> parse_int32(std::string_view text) {
  std::int32_t value = 0;
  if (text.empty() || text.front() == '+') return std::nullopt;
  auto digits = text.front() == '-' ? text.substr(1) : text;
  if (digits.empty() || (digits.size() > 1 && digits.front() == '0')) return std::nullopt;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// A canonical unsigned decimal: digits only, no leading zeros, fits 64 bits.
std::optional<std::uint64_t> parse_uint64(std::string_view text) {
  std::uint64_t value = 0;
  if (text.empty() || (text.size() > 1 && text.front() == '0')) return std::nullopt;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

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

// Reads `X'<hex>'` at the front of `text` and removes it.
std::optional<std::string> take_hex_literal(std::string_view& text) {
  if (text.size() < 3 || (text[0] != 'X' && text[0] != 'x') || text[1] != '\'') return std::nullopt;
  auto close = text.find('\'', 2);
  if (close == std::string_view::npos) return std::nullopt;
  auto bytes = hex_decode(text.substr(2, close - 2));
  text.remove_prefix(close + 1);
  return bytes;
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

std::string xid::postgresql_gid() const {
  return std::to_string(format_id_) + "_" + base64_encode(gtrid_) + "_" + base64_encode(bqual_);
}

std::string xid::mysql_literal() const {
  return "X'" + hex_encode(gtrid_) + "',X'" + hex_encode(bqual_) + "'," + std::to_string(format_id_);
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

result<xid> xid::from_postgresql_gid(std::string_view gid) {
  auto first = gid.find('_');
  auto second = first == std::string_view::npos ? first : gid.find('_', first + 1);
  if (second == std::string_view::npos || gid.find('_', second + 1) != std::string_view::npos) {
    return invalid("not a pgjdbc-style gid (<formatID>_<base64>_<base64>)");
  }
  auto format_id = parse_int32(gid.substr(0, first));
  auto gtrid = base64_decode(gid.substr(first + 1, second - first - 1));
  auto bqual = base64_decode(gid.substr(second + 1));
  if (!format_id || !gtrid || !bqual) return invalid("not a pgjdbc-style gid (<formatID>_<base64>_<base64>)");
  return make(*format_id, *gtrid, *bqual);
}

result<xid> xid::from_mysql_sql_literal(std::string_view data) {
  auto rest = data;
  auto gtrid = take_hex_literal(rest);
  if (!gtrid || rest.empty() || rest.front() != ',') return invalid("not an XA RECOVER FORMAT='SQL' literal");
  rest.remove_prefix(1);
  auto bqual = take_hex_literal(rest);
  if (!bqual || rest.empty() || rest.front() != ',') return invalid("not an XA RECOVER FORMAT='SQL' literal");
  rest.remove_prefix(1);
  auto format_id = parse_int32(rest);
  if (!format_id) return invalid("not an XA RECOVER FORMAT='SQL' literal");
  return make(*format_id, *gtrid, *bqual);
}

result<xid> xid::from_mysql_hex(std::int32_t format_id, std::size_t gtrid_length, std::size_t bqual_length,
                                std::string_view data) {
  if (data.size() < 2 || data[0] != '0' || (data[1] != 'x' && data[1] != 'X')) {
    return invalid("not an XA RECOVER CONVERT XID value (0x...)");
  }
  auto bytes = hex_decode(data.substr(2));
  if (!bytes || bytes->size() != gtrid_length + bqual_length) {
    return invalid("XA RECOVER CONVERT XID value does not match gtrid_length + bqual_length");
  }
  return make(format_id, std::string_view(*bytes).substr(0, gtrid_length),
              std::string_view(*bytes).substr(gtrid_length));
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
  if (parts.three_phase) gtrid += ".p3";
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
    parts.three_phase = true;
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
