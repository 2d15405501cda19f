// The opening of every Beast connection (net/wire.h, "A session"), shared by
// the env server and client and the actor server and client:
//
//   client HELLO -> [server CHALLENGE {nonce} -> client AUTH {mac}] -> the
//   server's first reply (SPEC for an env server, ACTOR_SPEC for a learner)
//
// A server without a token skips the challenge (loopback and unix only: the
// servers refuse to bind elsewhere without one).
//
// Threads: pure functions of the one socket they are given, used from the
// calling thread.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>

#include "core/batching_queue.h"  // Timeout
#include "net/socket.h"
#include "net/wire.h"

namespace beast {

// The server answered ERROR (for an env server: an env raised; what() holds
// its message).
class RemoteError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The server refused this client's token (wrong, or none given).
class AuthError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "2.5 s", or "none" for no bound.
std::string seconds_text(const Timeout& timeout);

// Runs fn(); a SocketTimeout from it is rethrown naming which bound passed.
template <typename Fn>
auto within(const char* what, const Timeout& timeout, Fn fn) {
  try {
    return fn();
  } catch (const SocketTimeout& e) {
    throw SocketTimeout(std::string(what) + " (" + seconds_text(timeout) + "): " + e.what());
  }
}

// Reads one frame that must be `type`, of at most kMaxControlFrameBytes;
// ProtocolError "<expected>, got <TYPE>" otherwise.
ArrayMap expect_frame(Socket& socket, FrameType type, const Deadline& deadline, const char* expected);

// Server side. Reads HELLO and, when `token` is set, challenges the client.
// Returns false when the client failed to authenticate: it was told with an
// ERROR and `log` got one line. Throws ProtocolError / SocketTimeout (naming
// the bound) / ConnectionClosed for a broken handshake.
bool accept_handshake(Socket& socket, const std::string& token, const Timeout& handshake_timeout,
                      const Timeout& send_timeout, const std::string& peer,
                      const std::function<void(const std::string&)>& log);

// Client side. Sends HELLO, answers a CHALLENGE with `token` (none: an empty
// AUTH, which the server refuses) and returns the server's first reply, which
// is never ERROR: that is thrown as AuthError (after AUTH) or RemoteError,
// each naming `server` ("env server HOST:PORT", "learner HOST:PORT").
Frame open_handshake(Socket& socket, const std::string& token, std::uint64_t max_frame_bytes,
                     const Deadline& deadline, const std::string& server);

}  // namespace beast
