// Internal: reads the transaction list of MariaDB's SHOW ENGINE INNODB STATUS, to learn whether
// InnoDB still has a transaction attached to a given session. InnoDB prints every transaction it
// knows (lock_print_info_all_transactions), and under one that a session holds the line
// "MariaDB thread id <id>, OS thread handle ..." (trx_print_low); a prepared transaction whose
// session has ended is printed without that line, as a "recovered trx". The listing is read live,
// unlike information_schema.innodb_trx, which InnoDB serves from a cache (trx0i_s.cc). Pure
// function: call it from any thread.
#pragma once

#include <cstdint>
#include <string_view>

namespace xatm::mysql_detail {

enum class session_transaction : std::uint8_t {
  attached,  // InnoDB lists a transaction that the session still holds
  none,      // the whole list was read and no transaction names the session
  unknown,   // the list is not whole (the server cuts its output at 1 MiB) or not in a known form
};

// What the Status column of SHOW ENGINE INNODB STATUS says about `session` (CONNECTION_ID()).
session_transaction innodb_transaction_of(std::string_view monitor_output, std::uint64_t session) noexcept;

}  // namespace xatm::mysql_detail
