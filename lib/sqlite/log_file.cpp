#include "sqlite/log_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <string_view>
#include <system_error>

#include "core/logging.h"

namespace xatm::detail {

namespace {

std::string errno_text(int error) { return std::generic_category().message(error); }

// A failure of a file operation, with errno as the native code.
failure io_failure(xa_code code, std::string message, int error) {
  failure cause = make_failure(code, std::move(message));
  cause.native_code = error;
  return cause;
}

failure stat_failure(const std::string& path, int error) {
  return io_failure(xa_code::rm_error, "cannot stat " + path + ": " + errno_text(error), error);
}

std::string mode_text(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

// true: exists and holds at least one byte; false: does not exist or is empty; failure: cannot tell.
result<bool> file_has_content(const std::string& path) {
  struct stat status {};
  if (::lstat(path.c_str(), &status) == 0) return status.st_size > 0;
  const int error = errno;
  if (error == ENOENT) return false;
  return stat_failure(path, error);
}

// Removes a file that may or may not exist.
result<void> remove_if_present(const std::string& path) {
  if (::unlink(path.c_str()) == 0 || errno == ENOENT) return {};
  const int error = errno;
  return io_failure(xa_code::rm_error, "cannot remove " + path + ": " + errno_text(error), error);
}

result<void> fsync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    return io_failure(xa_code::rm_error, "cannot open " + path + " to fsync it: " + errno_text(error), error);
  }
  const int synced = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  if (synced != 0) return io_failure(xa_code::rm_error, "fsync of " + path + " failed: " + errno_text(error), error);
  return {};
}

std::optional<store_refusal> check_file_mode(const std::string& path) {
  struct stat status {};
  if (::lstat(path.c_str(), &status) != 0) {
    const int error = errno;
    if (error == ENOENT) return std::nullopt;
    return store_refusal{open_refusal::unusable, stat_failure(path, error)};
  }
  if (!S_ISREG(status.st_mode)) {
    return store_refusal{open_refusal::misconfigured,
                         make_failure(xa_code::invalid, path + " is not a regular file; " + never_recreate_advice)};
  }
  if ((status.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return store_refusal{
        open_refusal::misconfigured,
        make_failure(xa_code::invalid, path + " is writable by group or others (mode " + mode_text(status.st_mode) +
                                           "): it may have been tampered with; check it, then "
                                           "chmod 0600 it")};
  }
  if ((status.st_mode & 0077) != 0) {
    if (::chmod(path.c_str(), 0600) != 0) {
      const int error = errno;
      return store_refusal{
          open_refusal::unusable,
          io_failure(xa_code::rm_error, "cannot chmod 0600 " + path + ": " + errno_text(error), error)};
    }
    XATM_LOG(log, info) << "tightened the mode of " << path << " from " << mode_text(status.st_mode) << " to 0600";
  }
  return std::nullopt;
}

std::optional<int> parse_int(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  int value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

std::optional<int> read_lock_pid(int fd) {
  char buffer[32];
  const ssize_t size = ::pread(fd, buffer, sizeof buffer, 0);
  if (size <= 0) return std::nullopt;
  return parse_int(std::string_view(buffer, static_cast<std::size_t>(size)));
}

std::string lock_path_of(const std::string& path) { return path + ".lock"; }

constexpr const char* log_suffixes[] = {"", "-wal", "-shm"};

}  // namespace

std::string directory_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

result<bool> file_exists(const std::string& path) {
  struct stat status {};
  if (::lstat(path.c_str(), &status) == 0) return true;
  const int error = errno;
  if (error == ENOENT) return false;
  return stat_failure(path, error);
}

std::optional<store_refusal> check_directory(const std::string& directory) {
  auto refuse = [](failure cause) { return store_refusal{open_refusal::misconfigured, std::move(cause)}; };
  struct stat status {};
  if (::stat(directory.c_str(), &status) != 0) {
    const int error = errno;
    return refuse(io_failure(xa_code::invalid,
                             "decision log directory " + directory + " is not usable: " + errno_text(error), error));
  }
  if (!S_ISDIR(status.st_mode)) {
    return refuse(make_failure(xa_code::invalid, "decision log directory " + directory + " is not a directory"));
  }
  if ((status.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return refuse(make_failure(xa_code::invalid,
                               "decision log directory " + directory + " is writable by group or others (mode " +
                                   mode_text(status.st_mode) +
                                   "): another user could delete or replace the log; use a directory only the TM's "
                                   "user can write (chmod go-w " +
                                   directory + ")"));
  }
  return std::nullopt;
}

std::optional<store_refusal> check_file_modes(const std::string& path) {
  for (const char* suffix : log_suffixes) {
    if (auto refused = check_file_mode(path + suffix)) return refused;
  }
  return std::nullopt;
}

result<void> verify_file_modes(const std::string& path) {
  for (const char* suffix : log_suffixes) {
    struct stat status {};
    const std::string file = path + suffix;
    if (::stat(file.c_str(), &status) == 0 && (status.st_mode & 0077) != 0) {
      return make_failure(xa_code::rm_error,
                          file + " has mode " + mode_text(status.st_mode) + " instead of 0600; chmod 0600 it");
    }
  }
  return {};
}

result<void> create_by_rename(const std::string& path, const std::function<result<void>(const std::string&)>& build) {
  const std::string building = path + ".new";
  // Leftovers of a creation that crashed; they never held a decision (only `path` ever does).
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    if (auto removed = remove_if_present(building + suffix); !removed) return removed;
  }
  // Created here, not by SQLite, so the mode is 0600 whatever the umask; SQLite gives the -wal and
  // -shm files the mode of the database file.
  const int fd = ::open(building.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    const int error = errno;
    return io_failure(xa_code::rm_error, "cannot create " + building + ": " + errno_text(error), error);
  }
  const int chmodded = ::fchmod(fd, 0600);
  const int error = errno;
  ::close(fd);
  if (chmodded != 0) return io_failure(xa_code::rm_error, "cannot chmod " + building + ": " + errno_text(error), error);

  if (auto built = build(building); !built) return built;
  auto wal_left = file_exists(building + "-wal");
  if (!wal_left) return std::move(wal_left).error();
  if (wal_left.value()) {
    return make_failure(xa_code::rm_error, "SQLite left " + building + "-wal behind after closing; not using it");
  }
  if (auto synced = fsync_path(building, O_RDONLY); !synced) return synced;
  // RENAME_NOREPLACE: never clobber a log that appeared meanwhile (nothing else should create one).
  if (::renameat2(AT_FDCWD, building.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) != 0) {
    const int rename_error = errno;
    return io_failure(xa_code::rm_error, "cannot rename " + building + " to " + path + ": " + errno_text(rename_error),
                      rename_error);
  }
  // The rename is durable only once the directory is.
  return fsync_path(directory_of(path), O_RDONLY | O_DIRECTORY);
}

result<side_files> side_files::note(const std::string& path) {
  side_files noted;
  noted.path_ = path;
  auto wal_existed = file_exists(path + "-wal");
  if (!wal_existed) return std::move(wal_existed).error();
  // An empty -wal holds no decision. SQLite creates one for any reader of a log whose -wal is
  // missing (an operator's sqlite3 shell, stored_tm_id()).
  auto wal_had_content = file_has_content(path + "-wal");
  if (!wal_had_content) return std::move(wal_had_content).error();
  auto shm_existed = file_exists(path + "-shm");
  if (!shm_existed) return std::move(shm_existed).error();
  noted.wal_existed_ = wal_existed.value();
  noted.wal_had_content_ = wal_had_content.value();
  noted.shm_existed_ = shm_existed.value();
  return noted;
}

void side_files::remove_new_empty() const noexcept {
  if (wal_existed_) return;
  const std::string wal = path_ + "-wal";
  auto content = file_has_content(wal);
  if (!content || content.value()) return;  // cannot tell, or it holds something: leave it
  if (::unlink(wal.c_str()) != 0) return;
  if (!shm_existed_) (void)remove_if_present(path_ + "-shm");  // best effort: it holds nothing either
}

open_result<log_lock> log_lock::acquire(const std::string& path) {
  const std::string lock_path = lock_path_of(path);
  // flock, not fcntl locks: an flock belongs to the open file description, so a second open in
  // the same process is refused too, and SQLite's own fcntl locks on the database are not disturbed.
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    const int error = errno;
    return {open_refusal::unusable,
            io_failure(xa_code::rm_error, "cannot open lock file " + lock_path + ": " + errno_text(error), error)};
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    const auto holder = read_lock_pid(fd);
    ::close(fd);
    if (error == EWOULDBLOCK) {
      return {open_refusal::in_use,
              make_failure(xa_code::invalid,
                           "decision log " + path + " is in use by process " +
                               (holder ? std::to_string(*holder) : std::string("(pid not yet written)")) +
                               ": only one TM or recovery tool may use a log at a time; stop that process first")};
    }
    return {open_refusal::unusable,
            io_failure(xa_code::rm_error, "cannot lock " + lock_path + ": " + errno_text(error), error)};
  }
  // The pid is a hint for other processes' messages; the lock itself is the flock.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int error = errno;
    ::close(fd);
    return {open_refusal::unusable,
            io_failure(xa_code::rm_error, "cannot write the pid into " + lock_path + ": " + errno_text(error), error)};
  }
  return log_lock(fd);
}

result<std::optional<int>> log_lock::holder(const std::string& path) {
  const std::string lock_path = lock_path_of(path);
  const int fd = ::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    const int error = errno;
    if (error == ENOENT) return std::optional<int>();
    return io_failure(xa_code::rm_error, "cannot open lock file " + lock_path + ": " + errno_text(error), error);
  }
  // Taking a shared lock for an instant is the only way flock() answers "is it held?".
  std::optional<int> holder;
  std::optional<failure> problem;
  // (An open() racing with that instant may be refused as "in use"; it names this pid then.)
  if (::flock(fd, LOCK_SH | LOCK_NB) == 0) {
    (void)::flock(fd, LOCK_UN);  // close() below releases it anyway
  } else if (errno == EWOULDBLOCK) {
    holder = read_lock_pid(fd);
    if (!holder) {
      problem = make_failure(xa_code::rm_error, lock_path + " is locked by a process that has not written its pid yet");
    }
  } else {
    const int error = errno;
    problem = io_failure(xa_code::rm_error, "cannot test the lock on " + lock_path + ": " + errno_text(error), error);
  }
  ::close(fd);
  if (problem) return std::move(*problem);
  return holder;
}

log_lock::~log_lock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

}  // namespace xatm::detail
