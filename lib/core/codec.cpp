// Text codecs for XIDs (codec.h).
#include "core/codec.h"

#include <array>
#include <charconv>

namespace xatm::detail {

namespace {

constexpr std::string_view base64_alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view hex_digits = "0123456789abcdef";

}  // namespace

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

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

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

std::optional<std::int32_t> parse_int32(std::string_view text) {
  std::int32_t value = 0;
  if (text.empty() || text.front() == '+') return std::nullopt;
  auto digits = text.front() == '-' ? text.substr(1) : text;
  if (digits.empty() || (digits.size() > 1 && digits.front() == '0')) return std::nullopt;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

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

}  // namespace xatm::detail
