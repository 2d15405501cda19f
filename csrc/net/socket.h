// RAII stream sockets (TCP and unix-domain) for the env server and client.
//
// Addresses are strings: "HOST:PORT" (TCP; "[::1]:PORT" for IPv6 literals)
// or "unix:/path/to/socket". Listening on port 0 picks a free port; the
// Listener reports the address it actually bound. Servers are meant to bind
// 127.0.0.1 unless told otherwise (callers choose the default string).
//
// Every TCP socket has TCP_NODELAY set: frames are small request/response
// pairs, and Nagle's algorithm would hold each one back waiting for an ACK.
//
// Failures throw:
//   ConnectionClosed : the peer closed (EOF) or reset the connection; what()
//                      says how many bytes of how many had arrived
//   SocketTimeout    : a deadline passed before connect/recv completed
//   SocketError      : anything else (bad address, bind, refused, ...)
// ConnectionClosed and SocketTimeout derive from SocketError.
//
// Threads: a Socket is used by one thread at a time, except shutdown(),
// which any thread may call to wake a thread blocked in recv or send on it.
// Listener::accept() belongs to one thread; wake it with the `wake_fd`
// it polls (the server's self-pipe). Sends never raise SIGPIPE.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <sys/types.h>
#include <utility>

#include "core/deadline.h"

namespace beast {

class SocketError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ConnectionClosed : public SocketError {
 public:
  // at_boundary: nothing of the message being read had arrived (a clean
  // end between frames, rather than one cut short).
  ConnectionClosed(const std::string& message, bool at_boundary)
      : SocketError(message), at_boundary_(at_boundary) {}
  bool at_boundary() const { return at_boundary_; }

 private:
  bool at_boundary_;
};

class SocketTimeout : public SocketError {
 public:
  using SocketError::SocketError;
};

// How long recv_all busy-polls before blocking: BEAST_NET_SPIN_US (microseconds,
// 0 turns spinning off) if set when first asked, else kDefaultRecvSpinMicros.
// 100 us covers a CartPole step plus the round trip on a loopback (50 us
// did not: the client then slept through most replies); each message costs
// at most that much CPU spinning on each side.
constexpr int kDefaultRecvSpinMicros = 100;
std::chrono::microseconds recv_spin();

struct Address {
  bool is_unix = false;
  std::string host;  // TCP only
  int port = 0;      // TCP only
  std::string path;  // unix only

  // "HOST:PORT" or "unix:/path"; throws SocketError saying what is wrong.
  static Address parse(const std::string& text);
  std::string to_string() const;
};

class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() { close(); }
  Socket(Socket&& other) noexcept
      : fd_(std::exchange(other.fd_, -1)),
        buffer_(std::move(other.buffer_)),
        buffer_begin_(std::exchange(other.buffer_begin_, 0)),
        buffer_end_(std::exchange(other.buffer_end_, 0)) {}
  Socket& operator=(Socket&& other) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  // Connects within `deadline` (std::nullopt: the OS's own connect timeout).
  // A refused connection fails at once.
  static Socket connect(const Address& address, const Deadline& deadline);

  // Sends every byte (retrying short writes and EINTR) by `deadline`
  // (std::nullopt: however long it takes); SocketTimeout when it passes with
  // bytes unsent (a peer that stopped reading). `what` names the thing sent.
  void send_all(const void* data, std::size_t size, const Deadline& deadline = std::nullopt,
                const char* what = "a frame");

  // Reads exactly `size` bytes, waiting until `deadline`. Throws
  // ConnectionClosed on EOF/reset, SocketTimeout when the deadline passes.
  // `what` names the thing being read, for the error message.
  //
  // Before it blocks, it busy-polls (non-blocking reads) for up to
  // recv_spin(): a reply that comes within that time is read without the
  // scheduler putting this thread to sleep and waking it again, which on a
  // loopback round trip costs more than the message itself. The spin is
  // bounded, so an idle connection still sleeps in poll/recv.
  //
  // Small reads go through a read buffer owned by the socket (a frame's
  // header and its payload usually arrive in one recv, not two); bytes read
  // ahead stay there for the next recv_all, so nothing is lost.
  void recv_all(void* data, std::size_t size, const Deadline& deadline, const char* what);

  // Whether something can be read now (bytes read ahead, bytes on the
  // socket, or EOF), waiting until `deadline` for it; consumes nothing.
  bool readable(const Deadline& deadline);

  // Wakes any thread blocked on this socket (its recv sees EOF) without
  // releasing the fd, so the owner still closes it exactly once.
  void shutdown();
  // Half-closes (the peer reads what was sent, then EOF), then reads and
  // drops whatever the peer still sends until it closes too or `deadline`
  // passes. Closing with unread bytes makes the kernel reset the connection,
  // and a reset can beat the last frame sent (an ERROR saying why) to the
  // peer's reader; this is the way to close after an error. Owner only.
  void shutdown_and_drain(const Deadline& deadline);
  void close();
  bool is_open() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  // The other end, for log lines ("127.0.0.1:50123", "unix peer").
  std::string peer_name() const;

 private:
  // One recv (after a bounded busy-poll, then blocking until `deadline`);
  // returns what recv returned, errno set on -1. Throws SocketTimeout.
  ssize_t recv_some(void* data, std::size_t size, const Deadline& deadline, std::chrono::microseconds spin,
                    const char* what, std::size_t got, std::size_t want);

  static constexpr std::size_t kReadBufferBytes = 16 << 10;
  int fd_ = -1;
  std::unique_ptr<char[]> buffer_;  // read-ahead; allocated on the first read
  std::size_t buffer_begin_ = 0;    // unread bytes are [begin, end)
  std::size_t buffer_end_ = 0;
};

// Whether every address `address` names is a loopback one (127.0.0.0/8,
// ::1, ::ffff:127.0.0.0/104) or a unix socket: what only this machine can
// reach. 0.0.0.0 and :: are not. Throws SocketError if it cannot resolve.
bool is_loopback(const Address& address);

class Listener {
 public:
  // Binds and listens. A unix path that exists as a stale socket file is
  // replaced; any other existing file is an error.
  static Listener listen(const Address& address, int backlog = 64);
  Listener() = default;
  ~Listener() { close(); }
  Listener(Listener&& other) noexcept;
  Listener& operator=(Listener&& other) noexcept;
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // The bound address (the real port when asked for port 0).
  const Address& address() const { return bound_; }

  struct Accepted {
    std::optional<Socket> socket;  // the new connection, if one was taken
    int out_of_fds = 0;            // EMFILE or ENFILE: no fd to take it with
  };
  // Waits for a connection and takes it. Returns with no socket once
  // `wake_fd` becomes readable (or -1: never woken), or with `out_of_fds`
  // set, at once, when the process or system has no fd left (the connection
  // stays queued; the caller decides how to back off and what to log).
  Accepted accept(int wake_fd);

  // Closes the socket and removes a unix socket file this Listener created.
  void close();

 private:
  int fd_ = -1;
  Address bound_;
};

}  // namespace beast
