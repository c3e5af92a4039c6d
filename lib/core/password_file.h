// Internal: `password_file=PATH`, the connection keyword both SQL backends take so that a
// password need not stand in a connection string, a command line or a configuration file that
// others read (docs/connections.md). The file holds the password on its first line; it must be a
// regular file that neither its group nor others may read or write (as libpq's passfile, whose
// reader only warns and skips it: xatm refuses instead, so a mistake shows up at once). Read at
// registration (to refuse a bad file early) and again at every connect (a changed password is
// picked up). Functions of no state: any thread.
#pragma once

#include "xatm/connection_settings.h"
#include "xatm/result.h"

namespace xatm::detail {

// The connection keyword.
inline constexpr std::string_view password_file_keyword = "password_file";

// `settings` with password_file replaced by the password read from that file; unchanged without
// password_file. Fails (xa_code::invalid) when both password and password_file are given, or the
// file cannot be read, is not a regular file, is readable by group or others, or holds no
// password. Messages name the path, never the file's content.
[[nodiscard]] result<connection_settings> with_password_from_file(const connection_settings& settings);

}  // namespace xatm::detail
