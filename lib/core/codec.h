// Internal: the strict text codecs the backends spell XIDs with (lib/postgresql/postgresql_xid.h,
// lib/mysql/mysql_xid.h). Every decoder reads text that came from a database server, which any
// other program may have written, so each is strict: anything not exactly in the expected shape
// answers nullopt, never a guess.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace xatm::detail {

// Standard base64 with padding.
std::string base64_encode(std::string_view bytes);
// Strict: padded, canonical (unused bits zero), so that decode(encode(x)) is the only way in.
std::optional<std::string> base64_decode(std::string_view text);

// Lower-case hex, two digits a byte.
std::string hex_encode(std::string_view bytes);
// Either case; nullopt for an odd length or a non-hex digit.
std::optional<std::string> hex_decode(std::string_view text);

// A decimal int32 as the servers print it: optional '-', digits, no leading zeros.
std::optional<std::int32_t> parse_int32(std::string_view text);
// A canonical unsigned decimal: digits only, no leading zeros, fits 64 bits.
std::optional<std::uint64_t> parse_uint64(std::string_view text);

}  // namespace xatm::detail
