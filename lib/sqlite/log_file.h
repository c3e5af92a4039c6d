// Internal: custody of the decision log's files (docs/design.md section 5): the process lock
// "<path>.lock" holding the owner's pid, the modes of the directory and of the files, building a
// new log beside the real path and renaming it into place durably, and leaving a log that is
// only read (or refused) as it was found. Nothing here knows SQLite's tables (log_format.h).
// Pure functions and a lock object owned by one thread at a time.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "core/decision_store.h"
#include "xatm/result.h"

namespace xatm::detail {

// What an operator must read when a damaged or foreign log is refused.
inline constexpr const char* never_recreate_advice =
    "never delete or recreate a decision log: the commit decisions in it would be presumed aborted. "
    "Restore it from a copy, or resolve this TM's prepared transactions by hand before moving it aside";

// The directory that holds `path` ("." for a bare name).
[[nodiscard]] std::string directory_of(const std::string& path);

// true: exists; false: does not; failure: cannot tell (permissions, I/O).
[[nodiscard]] result<bool> file_exists(const std::string& path);

// Another user who can write the directory could delete or replace the log: refused as
// misconfigured, like a directory that does not exist. nullopt: fine.
[[nodiscard]] std::optional<store_refusal> check_directory(const std::string& directory);

// The log's files (`path`, its -wal and -shm) must be private to the TM's user. Not a regular
// file, or writable by others: refused as misconfigured (they may have been tampered with).
// Readable by others: tightened to 0600, they hold no secrets anyway. nullopt: fine.
[[nodiscard]] std::optional<store_refusal> check_file_modes(const std::string& path);

// After an open: each of the log's files is 0600. Verifies rather than trusts that SQLite gave
// the -wal and -shm files it created the mode of the database file.
[[nodiscard]] result<void> verify_file_modes(const std::string& path);

// A new log is built under "<path>.new" by `build` (given that path; the file exists, empty and
// 0600) and renamed into place only once complete, so a file at `path` is always a whole log: an
// empty or half-built one can only mean damage. The rename never replaces a file, and is durable
// (directory fsync) before this returns.
[[nodiscard]] result<void> create_by_rename(const std::string& path,
                                            const std::function<result<void>(const std::string&)>& build);

// The -wal and -shm files SQLite makes for any connection where they are missing (an empty -wal,
// a -shm). A reader that must leave a log as it found it notes what existed before it connects,
// and removes afterwards what its connection made.
class side_files {
 public:
  [[nodiscard]] static result<side_files> note(const std::string& path);

  bool wal_existed() const noexcept { return wal_existed_; }
  // The -wal held at least one byte: an empty one holds no decision.
  bool wal_had_content() const noexcept { return wal_had_content_; }
  // Removes a -wal that did not exist before and is empty, and then a -shm that did not exist
  // before. Best effort: both hold nothing.
  void remove_new_empty() const noexcept;

 private:
  std::string path_;
  bool wal_existed_ = false;
  bool wal_had_content_ = false;
  bool shm_existed_ = false;
};

// The flock on "<path>.lock", held for the object's life: one user of a log at a time, across
// processes too, and a second open in the same process is refused as well.
class log_lock {
 public:
  // Takes the lock and writes this process's pid into the file (a hint for others' messages).
  // A lock another holds is refused as in_use, naming its pid; anything else as unusable.
  [[nodiscard]] static open_result<log_lock> acquire(const std::string& path);

  // The pid written by the process that holds the lock, or nullopt when nobody holds it (or the
  // lock file does not exist).
  [[nodiscard]] static result<std::optional<int>> holder(const std::string& path);

  log_lock(log_lock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  log_lock& operator=(log_lock&&) = delete;
  ~log_lock();  // releases the flock

 private:
  explicit log_lock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace xatm::detail
