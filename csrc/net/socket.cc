#include "net/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

namespace beast {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

[[noreturn]] void fail(const std::string& what, int err) {
  throw SocketError(what + ": " + errno_text(err));
}

// Milliseconds left until `deadline` for poll(): -1 waits for ever, 0 means passed.
int poll_timeout_ms(const Deadline& deadline) {
  if (!deadline) return -1;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return left > 1'000'000'000 ? 1'000'000'000 : static_cast<int>(left) + 1;  // +1: never wake just early
}

// Waits until `fd` has `events` or the deadline passes (false).
bool wait_for(int fd, short events, const Deadline& deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, poll_timeout_ms(deadline));
    if (n > 0) return true;
    if (n == 0) {
      if (deadline && Clock::now() >= *deadline) return false;
      continue;
    }
    if (errno != EINTR) fail("poll", errno);
  }
}

sockaddr_un unix_sockaddr(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    throw SocketError("unix socket path must be 1.." + std::to_string(sizeof(addr.sun_path) - 1) +
                      " bytes, got " + std::to_string(path.size()) + ": '" + path + "'");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

void set_nodelay(int fd) {
  int one = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) fail("setsockopt(TCP_NODELAY)", errno);
}

void set_nonblocking(int fd, bool on) {
  const int flags = ::fcntl(fd, F_GETFL, 0);
  if (flags < 0 || ::fcntl(fd, F_SETFL, on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK)) != 0) fail("fcntl", errno);
}

struct AddrInfo {
  addrinfo* list = nullptr;
  ~AddrInfo() {
    if (list) ::freeaddrinfo(list);
  }
};

void resolve(const Address& address, bool passive, AddrInfo& out) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  const std::string port = std::to_string(address.port);
  const int rc = ::getaddrinfo(address.host.c_str(), port.c_str(), &hints, &out.list);
  if (rc != 0) throw SocketError("cannot resolve '" + address.to_string() + "': " + ::gai_strerror(rc));
}

std::string sockaddr_string(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "unix peer";
}

}  // namespace

Address Address::parse(const std::string& text) {
  Address a;
  if (text.rfind("unix:", 0) == 0) {
    a.is_unix = true;
    a.path = text.substr(5);
    unix_sockaddr(a.path);  // checks the length now, with the address in the message
    return a;
  }
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    throw SocketError("bad address '" + text + "': expected HOST:PORT (e.g. 127.0.0.1:4000) or unix:/path");
  }
  a.host = text.substr(0, colon);
  if (a.host.size() >= 2 && a.host.front() == '[' && a.host.back() == ']') a.host = a.host.substr(1, a.host.size() - 2);
  const std::string port = text.substr(colon + 1);
  char* end = nullptr;
  const long value = std::strtol(port.c_str(), &end, 10);
  if (*end != '\0' || value < 0 || value > 65535) {
    throw SocketError("bad address '" + text + "': port must be 0..65535, got '" + port + "'");
  }
  a.port = static_cast<int>(value);
  return a;
}

std::string Address::to_string() const {
  if (is_unix) return "unix:" + path;
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Socket& Socket::operator=(Socket&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    buffer_ = std::move(other.buffer_);
    buffer_begin_ = std::exchange(other.buffer_begin_, 0);
    buffer_end_ = std::exchange(other.buffer_end_, 0);
  }
  return *this;
}

Socket Socket::connect(const Address& address, const Deadline& deadline) {
  const std::string target = address.to_string();
  auto attempt = [&](int family, const sockaddr* addr, socklen_t len) -> Socket {
    Socket s(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s.is_open()) fail("socket", errno);
    // Non-blocking connect, so the deadline bounds it (a blocking one can
    // hang for minutes on an unreachable host).
    set_nonblocking(s.fd_, true);
    if (::connect(s.fd_, addr, len) != 0) {
      if (errno != EINPROGRESS && errno != EINTR) fail("cannot connect to " + target, errno);
      if (!wait_for(s.fd_, POLLOUT, deadline)) throw SocketTimeout("timed out connecting to " + target);
      int err = 0;
      socklen_t err_len = sizeof(err);
      ::getsockopt(s.fd_, SOL_SOCKET, SO_ERROR, &err, &err_len);
      if (err != 0) fail("cannot connect to " + target, err);
    }
    set_nonblocking(s.fd_, false);
    if (family != AF_UNIX) set_nodelay(s.fd_);
    return s;
  };
  if (address.is_unix) {
    const sockaddr_un addr = unix_sockaddr(address.path);
    return attempt(AF_UNIX, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  }
  AddrInfo info;
  resolve(address, false, info);
  std::string last_error = "no addresses";
  for (addrinfo* ai = info.list; ai != nullptr; ai = ai->ai_next) {
    try {
      return attempt(ai->ai_family, ai->ai_addr, ai->ai_addrlen);
    } catch (const SocketTimeout&) {
      throw;
    } catch (const SocketError& e) {
      last_error = e.what();
    }
  }
  throw SocketError(last_error);
}

void Socket::send_all(const void* data, std::size_t size, const Deadline& deadline, const char* what) {
  const auto* p = static_cast<const char*>(data);
  const std::size_t total = size;
  // With a deadline the sends do not block (MSG_DONTWAIT) and poll waits for
  // room instead, so the deadline bounds the whole frame, however slowly the
  // peer drains it. MSG_NOSIGNAL: EPIPE, not a process-killing SIGPIPE.
  const int flags = MSG_NOSIGNAL | (deadline ? MSG_DONTWAIT : 0);
  while (size > 0) {
    const ssize_t n = ::send(fd_, p, size, flags);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (deadline && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!wait_for(fd_, POLLOUT, deadline)) {
          throw SocketTimeout(std::string("timed out sending ") + what + " (" + std::to_string(total - size) +
                              " of " + std::to_string(total) + " bytes sent; the peer is not reading)");
        }
        continue;
      }
      if (errno == EPIPE || errno == ECONNRESET) {
        throw ConnectionClosed("connection closed by peer while sending", false);
      }
      fail("send", errno);
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

std::chrono::microseconds recv_spin() {
  static const std::chrono::microseconds spin = [] {
    const char* text = std::getenv("BEAST_NET_SPIN_US");
    if (text == nullptr || *text == '\0') return std::chrono::microseconds(kDefaultRecvSpinMicros);
    char* end = nullptr;
    const long value = std::strtol(text, &end, 10);
    if (*end != '\0' || value < 0) return std::chrono::microseconds(kDefaultRecvSpinMicros);
    return std::chrono::microseconds(value);
  }();
  return spin;
}

ssize_t Socket::recv_some(void* data, std::size_t size, const Deadline& deadline, std::chrono::microseconds spin,
                          const char* what, std::size_t got, std::size_t want) {
  ssize_t n = -1;
  errno = EAGAIN;
  if (spin.count() > 0) {  // busy-poll first (see recv_all in socket.h), bounded by `spin` and the deadline
    auto until = Clock::now() + spin;
    if (deadline && *deadline < until) until = *deadline;
    for (;;) {
      n = ::recv(fd_, data, size, MSG_DONTWAIT);
      if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) || Clock::now() >= until) break;
    }
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {  // nothing yet: block
    if (deadline && !wait_for(fd_, POLLIN, deadline)) {
      throw SocketTimeout(std::string("timed out waiting for ") + what + " (" + std::to_string(got) + " of " +
                          std::to_string(want) + " bytes received)");
    }
    n = ::recv(fd_, data, size, 0);
  }
  return n;
}

bool Socket::readable(const Deadline& deadline) {
  return buffer_end_ > buffer_begin_ || wait_for(fd_, POLLIN, deadline);
}

void Socket::recv_all(void* data, std::size_t size, const Deadline& deadline, const char* what) {
  auto* p = static_cast<char*>(data);
  std::size_t got = std::min(size, buffer_end_ - buffer_begin_);  // read ahead last time
  if (got > 0) {
    std::memcpy(p, buffer_.get() + buffer_begin_, got);
    buffer_begin_ += got;
  }
  const auto spin = recv_spin();
  while (got < size) {
    // Small reads fill the buffer (taking whatever else has come too); large
    // ones go straight to `data`.
    const bool buffered = size - got < kReadBufferBytes;
    if (buffered && !buffer_) buffer_.reset(new char[kReadBufferBytes]);
    const ssize_t n = buffered ? recv_some(buffer_.get(), kReadBufferBytes, deadline, spin, what, got, size)
                               : recv_some(p + got, size - got, deadline, spin, what, got, size);
    if (n > 0) {
      if (buffered) {
        const std::size_t take = std::min(size - got, static_cast<std::size_t>(n));
        std::memcpy(p + got, buffer_.get(), take);
        buffer_begin_ = take;
        buffer_end_ = static_cast<std::size_t>(n);
        got += take;
      } else {
        got += static_cast<std::size_t>(n);
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    const bool reset = n < 0 && errno == ECONNRESET;
    if (n < 0 && !reset) fail(std::string("recv ") + what, errno);
    throw ConnectionClosed(std::string(reset ? "connection reset by peer" : "connection closed by peer") +
                               " while reading " + what + " (" + std::to_string(got) + " of " +
                               std::to_string(size) + " bytes received)",
                           got == 0);
  }
}

void Socket::shutdown() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
}

void Socket::shutdown_and_drain(const Deadline& deadline) {
  if (fd_ < 0) return;
  ::shutdown(fd_, SHUT_WR);
  char scratch[4096];
  for (;;) {  // never throws: this runs while a connection is being torn down
    pollfd p{fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, poll_timeout_ms(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return;  // the deadline passed (or poll failed)
    const ssize_t n = ::recv(fd_, scratch, sizeof(scratch), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) return;
  }
}

void Socket::close() {
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  buffer_begin_ = buffer_end_ = 0;
}

std::string Socket::peer_name() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "unknown peer";
  return sockaddr_string(ss);
}

bool is_loopback(const Address& address) {
  if (address.is_unix) return true;
  AddrInfo info;
  resolve(address, true, info);
  bool any = false;
  for (addrinfo* ai = info.list; ai != nullptr; ai = ai->ai_next) {
    any = true;
    if (ai->ai_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(ai->ai_addr);
      if ((ntohl(in->sin_addr.s_addr) >> 24) != 127) return false;
    } else if (ai->ai_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(ai->ai_addr);
      const bool mapped_loopback = IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
      if (!IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) && !mapped_loopback) return false;
    } else {
      return false;
    }
  }
  return any;
}

Listener::Listener(Listener&& other) noexcept : fd_(std::exchange(other.fd_, -1)), bound_(std::move(other.bound_)) {}

Listener& Listener::operator=(Listener&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    bound_ = std::move(other.bound_);
  }
  return *this;
}

Listener Listener::listen(const Address& address, int backlog) {
  Listener l;
  l.bound_ = address;
  const std::string where = address.to_string();
  if (address.is_unix) {
    const sockaddr_un addr = unix_sockaddr(address.path);
    struct stat st {};
    if (::lstat(address.path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        throw SocketError("cannot listen on " + where + ": the path exists and is not a socket");
      }
      ::unlink(address.path.c_str());  // a stale socket from a server that died
    }
    l.fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l.fd_ < 0) fail("socket", errno);
    if (::bind(l.fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) fail("cannot bind " + where, errno);
  } else {
    AddrInfo info;
    resolve(address, true, info);
    int err = 0;
    for (addrinfo* ai = info.list; ai != nullptr && l.fd_ < 0; ai = ai->ai_next) {
      const int fd = ::socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) continue;
      int one = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));  // restart without TIME_WAIT trouble
      if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
        l.fd_ = fd;
      } else {
        err = errno;
        ::close(fd);
      }
    }
    if (l.fd_ < 0) fail("cannot bind " + where, err);
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    if (::getsockname(l.fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) fail("getsockname", errno);
    l.bound_ = Address::parse(sockaddr_string(ss));
  }
  if (::listen(l.fd_, backlog) != 0) fail("cannot listen on " + where, errno);
  return l;
}

Listener::Accepted Listener::accept(int wake_fd) {
  for (;;) {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_fd, POLLIN, 0}};
    const int n = ::poll(fds, wake_fd >= 0 ? 2 : 1, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("poll", errno);
    }
    if (wake_fd >= 0 && fds[1].revents != 0) return {};
    if (fds[0].revents == 0) continue;
    const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      // The client gave up between poll and accept, or a transient shortage: keep serving.
      if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN) continue;
      if (errno == EMFILE || errno == ENFILE) return {std::nullopt, errno};
      fail("accept", errno);
    }
    Socket s(fd);
    if (!bound_.is_unix) set_nodelay(fd);
    return {std::move(s), 0};
  }
}

void Listener::close() {
  if (fd_ < 0) return;
  ::close(std::exchange(fd_, -1));
  if (bound_.is_unix) ::unlink(bound_.path.c_str());
}

}  // namespace beast
