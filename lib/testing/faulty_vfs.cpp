#include "testing/faulty_vfs.h"

#include <sqlite3.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <stdexcept>

namespace xatm::testing {

namespace {

std::atomic<bool> sync_fails{false};
std::atomic<bool> disk_full{false};
std::atomic<std::uint64_t> syncs{0};

sqlite3_vfs* real_vfs = nullptr;  // set once by register_faulty_vfs()

// Our file handle, followed in the same allocation by the real VFS's handle (szOsFile covers both).
struct faulty_file {
  sqlite3_file base;
  sqlite3_file* real;
};

sqlite3_file* real_of(sqlite3_file* file) { return reinterpret_cast<faulty_file*>(file)->real; }

int file_close(sqlite3_file* file) { return real_of(file)->pMethods->xClose(real_of(file)); }
int file_read(sqlite3_file* file, void* buffer, int amount, sqlite3_int64 offset) {
  return real_of(file)->pMethods->xRead(real_of(file), buffer, amount, offset);
}
int file_write(sqlite3_file* file, const void* buffer, int amount, sqlite3_int64 offset) {
  if (disk_full.load()) return SQLITE_FULL;
  return real_of(file)->pMethods->xWrite(real_of(file), buffer, amount, offset);
}
int file_truncate(sqlite3_file* file, sqlite3_int64 size) {
  return real_of(file)->pMethods->xTruncate(real_of(file), size);
}
int file_sync(sqlite3_file* file, int flags) {
  if (sync_fails.load()) return SQLITE_IOERR_FSYNC;
  syncs.fetch_add(1);
  return real_of(file)->pMethods->xSync(real_of(file), flags);
}
int file_size(sqlite3_file* file, sqlite3_int64* size) {
  return real_of(file)->pMethods->xFileSize(real_of(file), size);
}
int file_lock(sqlite3_file* file, int level) { return real_of(file)->pMethods->xLock(real_of(file), level); }
int file_unlock(sqlite3_file* file, int level) { return real_of(file)->pMethods->xUnlock(real_of(file), level); }
int file_check_reserved_lock(sqlite3_file* file, int* reserved) {
  return real_of(file)->pMethods->xCheckReservedLock(real_of(file), reserved);
}
int file_control(sqlite3_file* file, int operation, void* argument) {
  return real_of(file)->pMethods->xFileControl(real_of(file), operation, argument);
}
int file_sector_size(sqlite3_file* file) { return real_of(file)->pMethods->xSectorSize(real_of(file)); }
int file_device_characteristics(sqlite3_file* file) {
  return real_of(file)->pMethods->xDeviceCharacteristics(real_of(file));
}
int file_shm_map(sqlite3_file* file, int region, int size, int extend, void volatile** memory) {
  return real_of(file)->pMethods->xShmMap(real_of(file), region, size, extend, memory);
}
int file_shm_lock(sqlite3_file* file, int offset, int count, int flags) {
  return real_of(file)->pMethods->xShmLock(real_of(file), offset, count, flags);
}
void file_shm_barrier(sqlite3_file* file) { real_of(file)->pMethods->xShmBarrier(real_of(file)); }
int file_shm_unmap(sqlite3_file* file, int delete_flag) {
  return real_of(file)->pMethods->xShmUnmap(real_of(file), delete_flag);
}
int file_fetch(sqlite3_file* file, sqlite3_int64 offset, int amount, void** pointer) {
  return real_of(file)->pMethods->xFetch(real_of(file), offset, amount, pointer);
}
int file_unfetch(sqlite3_file* file, sqlite3_int64 offset, void* pointer) {
  return real_of(file)->pMethods->xUnfetch(real_of(file), offset, pointer);
}

// Version 3 (WAL needs the xShm* methods); the unix VFS's files are version 3 too.
const sqlite3_io_methods faulty_methods = {
    3,
    file_close,
    file_read,
    file_write,
    file_truncate,
    file_sync,
    file_size,
    file_lock,
    file_unlock,
    file_check_reserved_lock,
    file_control,
    file_sector_size,
    file_device_characteristics,
    file_shm_map,
    file_shm_lock,
    file_shm_barrier,
    file_shm_unmap,
    file_fetch,
    file_unfetch,
};

int vfs_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  auto* faulty = reinterpret_cast<faulty_file*>(file);
  faulty->real = reinterpret_cast<sqlite3_file*>(faulty + 1);
  const int code = real_vfs->xOpen(real_vfs, name, faulty->real, flags, out_flags);
  // SQLite calls xClose only when pMethods is set: mirror the real handle's.
  if (faulty->real->pMethods == nullptr) {
    faulty->base.pMethods = nullptr;
  } else {
    if (faulty->real->pMethods->iVersion < 3) std::abort();  // cannot forward xFetch/xUnfetch
    faulty->base.pMethods = &faulty_methods;
  }
  return code;
}
// The rest forwards to the real VFS, passing the real VFS (its methods may read their own pAppData).
int vfs_delete(sqlite3_vfs*, const char* name, int sync_directory) {
  return real_vfs->xDelete(real_vfs, name, sync_directory);
}
int vfs_access(sqlite3_vfs*, const char* name, int flags, int* result) {
  return real_vfs->xAccess(real_vfs, name, flags, result);
}
int vfs_full_pathname(sqlite3_vfs*, const char* name, int size, char* out) {
  return real_vfs->xFullPathname(real_vfs, name, size, out);
}
void* vfs_dl_open(sqlite3_vfs*, const char* name) { return real_vfs->xDlOpen(real_vfs, name); }
void vfs_dl_error(sqlite3_vfs*, int size, char* message) { real_vfs->xDlError(real_vfs, size, message); }
void (*vfs_dl_sym(sqlite3_vfs*, void* handle, const char* symbol))(void) {
  return real_vfs->xDlSym(real_vfs, handle, symbol);
}
void vfs_dl_close(sqlite3_vfs*, void* handle) { real_vfs->xDlClose(real_vfs, handle); }
int vfs_randomness(sqlite3_vfs*, int size, char* out) { return real_vfs->xRandomness(real_vfs, size, out); }
int vfs_sleep(sqlite3_vfs*, int microseconds) { return real_vfs->xSleep(real_vfs, microseconds); }
int vfs_current_time(sqlite3_vfs*, double* now) { return real_vfs->xCurrentTime(real_vfs, now); }
int vfs_get_last_error(sqlite3_vfs*, int size, char* out) { return real_vfs->xGetLastError(real_vfs, size, out); }
int vfs_current_time_int64(sqlite3_vfs*, sqlite3_int64* now) { return real_vfs->xCurrentTimeInt64(real_vfs, now); }

sqlite3_vfs faulty_vfs{};

}  // namespace

void register_faulty_vfs() {
  static std::once_flag once;
  std::call_once(once, [] {
    real_vfs = sqlite3_vfs_find(nullptr);
    if (real_vfs == nullptr || real_vfs->iVersion < 2) throw std::runtime_error("no usable default SQLite VFS");
    faulty_vfs.iVersion = 2;
    faulty_vfs.szOsFile = static_cast<int>(sizeof(faulty_file)) + real_vfs->szOsFile;
    faulty_vfs.mxPathname = real_vfs->mxPathname;
    faulty_vfs.zName = faulty_vfs_name;
    faulty_vfs.xOpen = vfs_open;
    faulty_vfs.xDelete = vfs_delete;
    faulty_vfs.xAccess = vfs_access;
    faulty_vfs.xFullPathname = vfs_full_pathname;
    faulty_vfs.xDlOpen = vfs_dl_open;
    faulty_vfs.xDlError = vfs_dl_error;
    faulty_vfs.xDlSym = vfs_dl_sym;
    faulty_vfs.xDlClose = vfs_dl_close;
    faulty_vfs.xRandomness = vfs_randomness;
    faulty_vfs.xSleep = vfs_sleep;
    faulty_vfs.xCurrentTime = vfs_current_time;
    faulty_vfs.xGetLastError = vfs_get_last_error;
    faulty_vfs.xCurrentTimeInt64 = vfs_current_time_int64;
    if (sqlite3_vfs_register(&faulty_vfs, 0) != SQLITE_OK) throw std::runtime_error("cannot register the faulty VFS");
  });
}

void set_sync_failure(bool fail) { sync_fails.store(fail); }
void set_disk_full(bool full) { disk_full.store(full); }
void clear_faults() {
  sync_fails.store(false);
  disk_full.store(false);
}
std::uint64_t synced_count() { return syncs.load(); }

}  // namespace xatm::testing
