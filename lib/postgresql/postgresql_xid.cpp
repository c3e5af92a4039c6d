// PostgreSQL's spelling of an XID (postgresql_xid.h).
#include "postgresql/postgresql_xid.h"

#include "core/codec.h"

namespace xatm::postgresql {

using detail::base64_decode;
using detail::base64_encode;
using detail::parse_int32;

namespace {

failure invalid(std::string message) { return make_failure(xa_code::invalid, std::move(message)); }

}  // namespace

std::string gid_of(const xid& branch) {
  return std::to_string(branch.format_id()) + "_" + base64_encode(branch.gtrid()) + "_" + base64_encode(branch.bqual());
}

result<xid> parse_gid(std::string_view gid) {
  auto first = gid.find('_');
  auto second = first == std::string_view::npos ? first : gid.find('_', first + 1);
  if (second == std::string_view::npos || gid.find('_', second + 1) != std::string_view::npos) {
    return invalid("not a pgjdbc-style gid (<formatID>_<base64>_<base64>)");
  }
  auto format_id = parse_int32(gid.substr(0, first));
  auto gtrid = base64_decode(gid.substr(first + 1, second - first - 1));
  auto bqual = base64_decode(gid.substr(second + 1));
  if (!format_id || !gtrid || !bqual) return invalid("not a pgjdbc-style gid (<formatID>_<base64>_<base64>)");
  return xid::make(*format_id, *gtrid, *bqual);
}

}  // namespace xatm::postgresql
