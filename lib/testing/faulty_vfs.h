// A fault-injecting SQLite VFS for tests, in the spirit of SQLite's own test VFS: "xatm-faulty"
// wraps the default (unix) VFS and, on command, answers every xSync with SQLITE_IOERR_FSYNC or
// every xWrite with SQLITE_FULL, without doing the operation. Open a database with it by passing
// faulty_vfs_name as the VFS name. The switches are process-wide atomics: any thread may flip
// them, and they apply to every file opened through the VFS.
#pragma once

#include <cstdint>

namespace xatm::testing {

inline constexpr const char* faulty_vfs_name = "xatm-faulty";

// Registers the VFS (not as the default). Idempotent and thread-safe.
void register_faulty_vfs();

// While on, every xSync fails with SQLITE_IOERR_FSYNC and syncs nothing.
void set_sync_failure(bool fail);
// While on, every xWrite fails with SQLITE_FULL and writes nothing.
void set_disk_full(bool full);
// Turns both faults off.
void clear_faults();
// xSync calls that went through to the real VFS since the process started.
std::uint64_t synced_count();

}  // namespace xatm::testing
