// EnvServer: hosts environments for remote actors over the wire protocol
// (net/wire.h). Each client connection gets its own EnvSession (K envs
// stepped as one batch), made by a factory when the client says HELLO.
//
// What flows through it, per connection:
//   client HELLO        -> (with an auth token: CHALLENGE {nonce}, client AUTH
//                          {mac}, checked; a wrong or missing MAC gets ERROR
//                          and the connection is closed, no session made)
//                       -> factory() -> session; server sends SPEC (session->spec())
//   client RESET {seed, seeded, option/...} -> session->reset(arrays) -> STEP_RESULT {obs[, info/...]}
//   client STEP {action}-> session->step(arrays)  -> STEP_RESULT {obs, reward, terminated, truncated
//                                                                  [, game_over, info/...]}
//   client ATTR {op, name, ...} -> session->attr(arrays) -> ATTR_RESULT {result/...}
//   client CLOSE / EOF  -> the session is destroyed, the connection closed
// A session that throws EnvError (or any std::exception) answers that one
// request with an ERROR frame carrying what() (for Python envs, the
// traceback); the connection and the other clients carry on. A malformed
// frame, or a frame out of order, closes that connection only: the server
// sends an ERROR with the reason (best effort) and logs the reason to stderr.
// STEP actions are checked against the spec (dtype, [K, *action_shape]),
// RESET seeds against K and ATTR's op and name against their types, before
// the session sees them; a mismatch is an ERROR, not a disconnect.
// Frame sizes, the handshake, idle waits and sends are bounded as net/wire.h
// says (EnvServerOptions). At most max_connections are served at once; one
// more is answered with ERROR and closed. Finished connections release their
// fd at once and are joined by the accept thread when they wake it; running
// out of fds (EMFILE) is logged and retried every 100 ms, so the server
// recovers when connections close.
//
// Threads: the constructor starts one accept thread; each accepted
// connection gets one thread that does all of that connection's socket I/O
// and decoding and calls its session. Session methods are called from that
// connection's thread only, one call at a time; sessions of different
// connections run concurrently (a Python session serialises itself on the
// GIL, which it holds only inside its env calls). The factory is called from
// connection threads, concurrently, and only for authenticated clients.
// num_connections() may be called from any thread. close() (or the
// destructor) may be called from any thread except a connection thread: it
// stops accepting, wakes every connection, joins every thread and destroys
// every session; it is idempotent.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/array.h"
#include "core/batching_queue.h"  // Timeout
#include "net/acceptor.h"
#include "net/socket.h"
#include "net/wire.h"

namespace beast {

// An environment failed; what() is sent to the client as an ERROR frame.
class EnvError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// K environments behind one connection. See the file comment for which
// thread calls what. Arrays returned must have a leading axis of num_envs.
class EnvSession {
 public:
  virtual ~EnvSession() = default;
  virtual EnvSpec spec() = 0;
  // request: RESET's arrays (net/wire.h), checked: seed int64[] or int64[K],
  // seeded bool[K], option/<name>:<kind>.
  virtual ArrayMap reset(const ArrayMap& request) = 0;
  virtual ArrayMap step(const ArrayMap& request) = 0;  // request: {"action": [K, ...]}
  // request: ATTR's arrays (op and name checked as uint8[n]); the reply's
  // arrays go back as ATTR_RESULT. Sessions without attributes refuse.
  virtual ArrayMap attr(const ArrayMap& request);
};

using SessionFactory = std::function<std::unique_ptr<EnvSession>()>;

constexpr std::int64_t kDefaultMaxConnections = 128;

// Bounds on what a client may make the server hold (net/wire.h, "Limits" and
// "Deadlines"). A timeout of std::nullopt waits for ever.
struct EnvServerOptions {
  std::uint64_t max_frame_bytes = kDefaultMaxFrameBytes;
  std::int64_t max_connections = kDefaultMaxConnections;
  Timeout handshake_timeout = std::chrono::seconds(10);
  Timeout idle_timeout = std::chrono::seconds(600);
  Timeout send_timeout = std::chrono::seconds(60);
  // The shared secret clients must prove (empty: none). Required to bind a
  // non-loopback address.
  std::string auth_token;
};

class EnvServer {
 public:
  // Binds `address` ("HOST:PORT", port 0 for a free one, or "unix:/path")
  // and starts accepting. Throws SocketError if it cannot bind, and
  // std::invalid_argument for a bad option or a non-loopback address
  // without an auth token.
  EnvServer(const std::string& address, SessionFactory factory, EnvServerOptions options = {});
  ~EnvServer();
  EnvServer(const EnvServer&) = delete;
  EnvServer& operator=(const EnvServer&) = delete;

  // The bound address, e.g. "127.0.0.1:43121" when asked for port 0.
  std::string address() const { return address_; }
  // Connections being served now.
  std::int64_t num_connections() const;
  void close();

 private:
  // Connection threads: serve() runs converse() (handshake, session,
  // requests) and reports how it ended; handshake() is false when the client
  // failed to authenticate and was told so.
  void serve(Socket& socket, const std::string& peer);
  void converse(Socket& socket, const std::string& peer);
  bool handshake(Socket& socket, const std::string& peer);

  const SessionFactory factory_;
  const EnvServerOptions options_;
  std::string address_;
  std::unique_ptr<Acceptor> acceptor_;
};

}  // namespace beast
