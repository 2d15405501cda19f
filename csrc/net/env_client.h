// EnvClient: the blocking client side of the env server (net/wire.h).
//
// Call loop (one actor thread per client):
//   EnvClient client("127.0.0.1:4000", timeout);   // connect, HELLO [-> CHALLENGE,
//                                                  // AUTH] -> SPEC
//   client.spec();                                 // obs/action specs, num_envs K
//   ArrayMap first = client.reset(seed);           // {"obs": [K, ...]}
//   for (;;) ArrayMap out = client.step(action);   // action [K, *action_shape]
//                                                  // {"obs", "reward", "terminated", "truncated"}
//                                                  // (+ "game_over" under episodic life, info/...)
//   client.reset(request);                         // RESET's arrays as net/wire.h lists them
//   ArrayMap values = client.attr(request);        // ATTR -> ATTR_RESULT {result/...}
//   client.close();                                // CLOSE, then the socket
//
// With an auth token the client answers the server's CHALLENGE with
// HMAC-SHA256(token, nonce) (net/auth.h); the token itself is never sent.
// Without one it answers with an empty AUTH, so a server that needs a token
// says so. A server without a token sends SPEC at once, whatever the client holds.
//
// Failures throw:
//   AuthError        : the server refused the token (wrong, or none given)
//   RemoteError      : the server answered ERROR (an env raised: what() holds
//                      its traceback, control characters other than newline
//                      and tab escaped); the connection stays usable
//   ConnectionClosed / SocketError : the server is gone or unreachable
//   SocketTimeout    : no reply within the timeout
//   ProtocolError    : the server sent a malformed frame
//   std::invalid_argument : an action that does not fit the spec (not sent)
// After any failure other than RemoteError and invalid_argument, the
// connection is closed (the byte stream can no longer be trusted) and every
// later call throws ConnectionClosed naming the first failure.
//
// Threads: any thread may call any method; calls are serialised by a
// mutex (one request is in flight at a time on the one connection), except
// abort(), which never waits for it: it wakes a call blocked on the socket
// (a hung server), which then throws ConnectionClosed. close() aborts a call
// in flight rather than waiting for its reply. A client made with kDeferred
// connects only in connect(), so an owner can abort a connect that hangs in
// the handshake (a stopped server still completes TCP connects):
//   EnvClient client(EnvClient::kDeferred, address, timeout, max_bytes, token);
//   register(&client);   // another thread may now client.abort()
//   client.connect();
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

#include "core/array.h"
#include "core/batching_queue.h"  // Timeout
#include "net/socket.h"
#include "net/handshake.h"
#include "net/wire.h"

namespace beast {

class EnvClient {
 public:
  // Connects, authenticates with `auth_token` if the server asks (empty: no
  // token) and reads the spec, all within `timeout` (which then bounds each
  // later request, its send and its reply; std::nullopt waits for ever).
  EnvClient(const std::string& address, Timeout timeout, std::uint64_t max_frame_bytes = kDefaultMaxFrameBytes,
            const std::string& auth_token = "");
  // The same, but nothing is sent before connect().
  struct Deferred {};
  static constexpr Deferred kDeferred{};
  EnvClient(Deferred, const std::string& address, Timeout timeout, std::uint64_t max_frame_bytes,
            const std::string& auth_token);
  ~EnvClient();
  EnvClient(const EnvClient&) = delete;
  EnvClient& operator=(const EnvClient&) = delete;

  const EnvSpec& spec() const { return spec_; }
  const std::string& address() const { return address_; }
  bool is_closed() const;

  ArrayMap reset(std::optional<std::int64_t> seed);
  ArrayMap reset(const ArrayMap& request);  // checked by the server (net/wire.h)
  ArrayMap step(const Array& action);
  ArrayMap attr(const ArrayMap& request);   // the ATTR_RESULT's arrays

  // The handshake of a kDeferred client (std::logic_error if already done);
  // throws as the connecting constructor does.
  void connect();

  // Any thread, at once: a call blocked on the socket ends with
  // ConnectionClosed, and so does every later one. Idempotent.
  void abort();

  // Sends CLOSE (best effort) and closes the socket; a call in flight is
  // aborted first. Idempotent.
  void close();

 private:
  // Sends one request and returns the arrays of its reply, which must be
  // `reply_type` (or ERROR). Holds mu_.
  ArrayMap request_locked(FrameType type, const ArrayMap& arrays, FrameType reply_type = FrameType::kStepResult);
  // Throws if the connection was closed or broken earlier. Holds mu_.
  void check_open_locked() const;
  // Closes the socket (holding abort_mu_, so abort() never sees a reused fd).
  void close_socket();

  const std::string address_;
  const Timeout timeout_;
  const std::uint64_t max_frame_bytes_;
  const std::string auth_token_;
  EnvSpec spec_;

  mutable std::mutex mu_;
  std::mutex abort_mu_;  // guards socket_'s fd (not its I/O) and aborted_
  Socket socket_;
  bool connected_ = false;
  std::atomic<bool> aborted_{false};  // set under abort_mu_, read anywhere
  std::string broken_;  // why the connection was dropped; "" while usable
};

}  // namespace beast
