// Internal: how PostgreSQL spells an XID. PREPARE TRANSACTION takes one text gid, so xatm uses
// pgjdbc's encoding, `<formatID>_<base64(gtrid)>_<base64(bqual)>` (under 200 bytes), which Java
// TMs use too. A gid not in that encoding belongs to somebody else.
#pragma once

#include <string>
#include <string_view>

#include "xatm/result.h"
#include "xatm/xid.h"

namespace xatm::postgresql {

// The gid of `branch`.
std::string gid_of(const xid& branch);
// Parses a gid from pg_prepared_xacts; xa_code::invalid for one not in pgjdbc's encoding.
result<xid> parse_gid(std::string_view gid);

}  // namespace xatm::postgresql
