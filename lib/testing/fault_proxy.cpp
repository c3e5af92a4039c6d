// testing/fault_proxy.cpp: the relay loop of fault_proxy.h. One poll() loop on one thread, every
// socket non-blocking; bytes a peer cannot take yet wait in their link's buffer. The armed fault
// is looked at under the mutex for every chunk a client sends, so arm() takes effect at once.
#include "testing/fault_proxy.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>  // mkdtemp
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <system_error>
#include <vector>

namespace xatm::testing {

// One client connection and the proxy's connection to the server for it.
struct fault_proxy::link {
  int client = -1;
  int server = -1;               // -1 for a connection accepted during a black hole
  std::string to_server;         // bytes the server has not taken yet
  std::string to_client;         // bytes the client has not taken yet
  std::string recent;            // the client's last bytes: a pattern split across reads is seen
  bool close_on_answer = false;  // cut_after_forwarding fired on this connection
  bool held = false;             // frozen by a black hole: not read, not written, not closed

  void close() noexcept {
    for (int* fd : {&client, &server}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }
  }
  bool closed() const noexcept { return client < 0; }
};

namespace {

constexpr std::size_t recent_bytes_kept = 256;

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error("fault_proxy: " + what + ": " + std::strerror(errno));
}

sockaddr_un address_of(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) throw std::runtime_error("fault_proxy: socket path too long: " + path);
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  return address;
}

// A new connection to the server's socket, non-blocking once connected; -1 when it fails.
int connect_to(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un address = address_of(path);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0 ||
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Reads what has arrived into `chunk` (empty: nothing yet). False at end of stream or on error.
bool read_some(int fd, std::string& chunk) {
  std::array<char, 16384> buffer{};
  ssize_t got = ::read(fd, buffer.data(), buffer.size());
  chunk.clear();
  if (got > 0) {
    chunk.assign(buffer.data(), static_cast<std::size_t>(got));
    return true;
  }
  return got < 0 && (errno == EAGAIN || errno == EINTR);
}

// Writes as much of `pending` as the peer takes now. False on error (the peer is gone).
bool write_some(int fd, std::string& pending) {
  while (!pending.empty()) {
    ssize_t sent = ::send(fd, pending.data(), pending.size(), MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN;
    }
    pending.erase(0, static_cast<std::size_t>(sent));
  }
  return true;
}

}  // namespace

fault_proxy::fault_proxy(std::string target_socket, const std::string& socket_name)
    : target_socket_(std::move(target_socket)) {
  std::string dir = (std::filesystem::temp_directory_path() / "xatm-proxy-XXXXXX").string();
  if (::mkdtemp(dir.data()) == nullptr) fail("mkdtemp " + dir);
  directory_ = dir;
  socket_path_ = directory_ + "/" + socket_name;
  sockaddr_un address = address_of(socket_path_);
  listener_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listener_ < 0 || ::bind(listener_, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0 ||
      ::listen(listener_, 64) != 0 || ::pipe2(wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
    int saved = errno;
    for (int fd : {listener_, wake_pipe_[0], wake_pipe_[1]}) {
      if (fd >= 0) ::close(fd);
    }
    std::error_code ignored;
    std::filesystem::remove_all(directory_, ignored);
    errno = saved;
    fail("cannot listen on " + socket_path_);
  }
  thread_ = std::thread([this] { run(); });
}

fault_proxy::~fault_proxy() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake();
  thread_.join();
  for (int fd : {listener_, wake_pipe_[0], wake_pipe_[1]}) ::close(fd);
  std::error_code ignored;  // best effort: a leftover temp dir is not worth failing a test over
  std::filesystem::remove_all(directory_, ignored);
}

void fault_proxy::arm(fault what, std::string pattern) {
  std::lock_guard lock(mutex_);
  armed_ = true;
  fault_ = what;
  pattern_ = std::move(pattern);
  fired_ = false;
}

void fault_proxy::black_hole() {
  {
    std::lock_guard lock(mutex_);
    armed_ = false;
    fired_ = true;
    black_hole_ = true;
  }
  wake();
}

void fault_proxy::restore() {
  std::unique_lock lock(mutex_);
  armed_ = false;
  std::uint64_t wanted = ++restores_requested_;
  lock.unlock();
  wake();
  lock.lock();
  restored_.wait(lock, [&] { return restores_done_ >= wanted || stopping_; });
}

bool fault_proxy::fired() const {
  std::lock_guard lock(mutex_);
  return fired_;
}

void fault_proxy::wake() const noexcept {
  char byte = 1;
  // Ignored: a full pipe already holds a wake-up.
  (void)!::write(wake_pipe_[1], &byte, 1);
}

void fault_proxy::run() noexcept {
  std::vector<std::unique_ptr<link>> links;
  std::vector<pollfd> fds;
  std::vector<std::pair<link*, bool>> polled;  // for fds[2...]: the link, and whether it is the client side
  std::string chunk;

  // A black hole freezes every connection where it stands.
  auto hold_all = [&] {
    for (auto& l : links) l->held = true;
  };
  // The client sent `chunk`: forward it, unless it carries the armed pattern.
  auto from_client = [&](link& l) {
    std::string seen = l.recent + chunk;
    bool hit = false;
    fault what = fault::cut_before_forwarding;
    {
      std::lock_guard lock(mutex_);
      if (armed_ && !pattern_.empty()) {
        // Only a match that ends in the new bytes counts: older bytes went past before arm().
        std::size_t from = l.recent.size() >= pattern_.size() ? l.recent.size() - pattern_.size() + 1 : 0;
        hit = seen.find(pattern_, from) != std::string::npos;
      }
      if (hit) {
        what = fault_;
        armed_ = false;
        fired_ = true;
        if (what == fault::black_hole) black_hole_ = true;
      }
    }
    l.recent = seen.substr(seen.size() - std::min(seen.size(), recent_bytes_kept));
    if (hit && what == fault::cut_before_forwarding) {
      l.close();
      return;
    }
    if (hit && what == fault::black_hole) {
      hold_all();  // the bytes that carried the pattern are dropped
      return;
    }
    l.close_on_answer = hit;  // cut_after_forwarding: the server does it, its answer is lost
    l.to_server += chunk;
    if (!write_some(l.server, l.to_server)) l.close();
  };
  auto from_server = [&](link& l) {
    if (l.close_on_answer) {
      l.close();
      return;
    }
    l.to_client += chunk;
    if (!write_some(l.client, l.to_client)) l.close();
  };

  while (true) {
    bool black_hole_on = false;
    {
      std::lock_guard lock(mutex_);
      if (stopping_) break;
      if (restores_done_ != restores_requested_) {
        for (auto& l : links) {
          if (l->held) l->close();
        }
        black_hole_ = false;
        restores_done_ = restores_requested_;
        restored_.notify_all();
      }
      black_hole_on = black_hole_;
    }
    if (black_hole_on) hold_all();
    std::erase_if(links, [](const std::unique_ptr<link>& l) { return l->closed(); });

    fds.assign({pollfd{wake_pipe_[0], POLLIN, 0}, pollfd{listener_, POLLIN, 0}});
    polled.clear();
    for (auto& l : links) {
      if (l->held) continue;
      fds.push_back(pollfd{l->client, static_cast<short>(POLLIN | (l->to_client.empty() ? 0 : POLLOUT)), 0});
      polled.emplace_back(l.get(), true);
      fds.push_back(pollfd{l->server, static_cast<short>(POLLIN | (l->to_server.empty() ? 0 : POLLOUT)), 0});
      polled.emplace_back(l.get(), false);
    }
    if (::poll(fds.data(), fds.size(), -1) < 0) continue;  // EINTR: look again

    if (fds[0].revents != 0) {
      char drain[64];
      while (::read(wake_pipe_[0], drain, sizeof(drain)) > 0) {
      }
    }
    if (fds[1].revents != 0) {
      int fd = -1;
      while ((fd = ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        auto l = std::make_unique<link>();
        l->client = fd;
        {
          std::lock_guard lock(mutex_);
          black_hole_on = black_hole_;
        }
        if (black_hole_on) {
          l->held = true;  // accepted, never answered
        } else if ((l->server = connect_to(target_socket_)) < 0) {
          l->close();  // the server is down: the client sees the connection close
        }
        links.push_back(std::move(l));
      }
    }
    for (std::size_t i = 2; i < fds.size(); ++i) {
      auto [l, client_side] = polled[i - 2];
      short events = fds[i].revents;
      if (events == 0 || l->closed() || l->held) continue;
      int fd = client_side ? l->client : l->server;
      if ((events & POLLOUT) != 0 && !write_some(fd, client_side ? l->to_client : l->to_server)) {
        l->close();
        continue;
      }
      if ((events & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      if (!read_some(fd, chunk)) {
        l->close();  // one side ended: end the other too
        continue;
      }
      if (chunk.empty()) continue;
      if (client_side) {
        from_client(*l);
      } else {
        from_server(*l);
      }
    }
  }
  for (auto& l : links) l->close();
  std::lock_guard lock(mutex_);
  restored_.notify_all();
}

}  // namespace xatm::testing
