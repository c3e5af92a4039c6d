// testing/fault_proxy.h: a unix-socket proxy between xatm and a real server that breaks the
// connection on cue (the connection-fault tests, tests/fault/connection_fault_test.cpp).
//
// The proxy listens on a socket in a temp dir of its own and relays every connection, byte for
// byte, to the real server's socket. Point an RM at it instead of the server (PostgreSQL:
// host=<directory()> with the socket named `.s.PGSQL.<port>`; MariaDB: unix_socket=<socket_path()>)
// and arm a fault that fires when the client sends bytes containing a pattern (an SQL verb): cut
// the connection before the server sees them, cut it after the server answered (the answer is
// dropped), or black-hole everything. The proxy runs on a thread of its own; its methods may be
// called from any one test thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace xatm::testing {

class fault_proxy {
 public:
  enum class fault : std::uint8_t {
    // Close the connection instead of forwarding the bytes: the server never sees the verb.
    cut_before_forwarding,
    // Forward the bytes, then close the connection when the server's answer arrives, dropping
    // it: the server did the verb, the client never hears.
    cut_after_forwarding,
    // Drop the bytes and stop forwarding anything, both ways, on every connection, new ones too
    // (they are accepted and then ignored). Sockets stay open, nothing is closed: a silent
    // server, as behind a dead network path. restore() lifts it.
    black_hole,
  };

  // Listens on `<new temp dir>/<socket_name>` and relays to the server's socket `target_socket`.
  // Throws std::runtime_error when the socket cannot be created.
  fault_proxy(std::string target_socket, const std::string& socket_name);
  ~fault_proxy();
  fault_proxy(const fault_proxy&) = delete;
  fault_proxy& operator=(const fault_proxy&) = delete;

  const std::string& directory() const noexcept { return directory_; }
  const std::string& socket_path() const noexcept { return socket_path_; }

  // Arms `what` for the first client bytes (on any connection) that contain `pattern`. One fault
  // at a time; it fires once. Arming replaces a fault that has not fired yet.
  void arm(fault what, std::string pattern);
  // Black hole from now on, whatever is sent.
  void black_hole();
  // Ends a black hole: every connection it held is closed (both sides, so the server ends those
  // sessions) and new connections are relayed again. Disarms a fault that has not fired. Returns
  // once the proxy has done it.
  void restore();
  // The armed fault has fired (or black_hole() was called) since the last arm().
  bool fired() const;

 private:
  struct link;
  void run() noexcept;
  void wake() const noexcept;

  std::string target_socket_;
  std::string directory_;
  std::string socket_path_;
  int listener_ = -1;
  int wake_pipe_[2] = {-1, -1};

  // Shared with the proxy thread.
  mutable std::mutex mutex_;
  std::condition_variable restored_;
  bool armed_ = false;
  fault fault_ = fault::cut_before_forwarding;
  std::string pattern_;
  bool fired_ = false;
  bool black_hole_ = false;
  std::uint64_t restores_requested_ = 0;
  std::uint64_t restores_done_ = 0;
  bool stopping_ = false;

  std::thread thread_;
};

}  // namespace xatm::testing
