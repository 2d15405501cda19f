#include "net/env_server.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "net/auth.h"

namespace beast {
namespace {

// One line per event, written with one call so lines from connection
// threads do not interleave. Anything unprintable is escaped, so no text in
// a message (a traceback, a name a client chose) can break the line.
void log_line(const std::string& message) {
  std::fprintf(stderr, "beast env server: %s\n", printable(message, "", true).c_str());
}

std::string seconds_text(const Timeout& timeout) {
  if (!timeout) return "none";
  char text[32];
  std::snprintf(text, sizeof(text), "%g s", timeout->count());
  return text;
}

// Runs fn(); a SocketTimeout from it is rethrown naming which bound passed.
template <typename Fn>
auto within(const char* what, const Timeout& timeout, Fn fn) {
  try {
    return fn();
  } catch (const SocketTimeout& e) {
    throw SocketTimeout(std::string(what) + " (" + seconds_text(timeout) + "): " + e.what());
  }
}

// Why `request` is not a valid STEP for `spec`, or "" if it is.
std::string check_step(const ArrayMap& request, const EnvSpec& spec) {
  const auto it = request.find("action");
  if (it == request.end() || request.size() != 1) return "STEP must hold exactly one array, 'action'";
  Shape expected{spec.num_envs};
  expected.insert(expected.end(), spec.action.shape.begin(), spec.action.shape.end());
  const Array& action = it->second;
  if (action.dtype() != spec.action.dtype || action.shape() != expected) {
    return std::string("STEP 'action' must be ") + dtype_name(spec.action.dtype) + " " + shape_string(expected) +
           ", got " + dtype_name(action.dtype()) + " " + shape_string(action.shape());
  }
  return "";
}

bool starts_with(const std::string& text, const char* prefix) { return text.rfind(prefix, 0) == 0; }

std::string check_reset(const ArrayMap& request, const EnvSpec& spec) {
  const Shape per_env{spec.num_envs};
  const auto seed = request.find("seed");
  const bool seed_list = seed != request.end() && seed->second.ndim() == 1;
  for (const auto& [key, array] : request) {
    if (key == "seed") {
      if (array.dtype() != DType::kInt64 || (array.ndim() != 0 && array.shape() != per_env)) {
        return std::string("RESET 'seed' must be int64 [] or ") + shape_string(per_env) + ", got " +
               dtype_name(array.dtype()) + " " + shape_string(array.shape());
      }
    } else if (key == "seeded") {
      if (!seed_list || array.dtype() != DType::kBool || array.shape() != per_env) {
        return "RESET 'seeded' must be bool " + shape_string(per_env) + " next to an int64 " +
               shape_string(per_env) + " 'seed'";
      }
    } else if (!starts_with(key, "option/")) {
      return "RESET may hold only 'seed', 'seeded' and 'option/...' arrays, got '" + printable(key) + "'";
    }
  }
  return "";
}

std::string check_text(const ArrayMap& request, const char* key) {
  const auto it = request.find(key);
  if (it == request.end() || it->second.dtype() != DType::kUInt8 || it->second.ndim() != 1) {
    return std::string("ATTR needs '") + key + "' as uint8[n] (utf-8 text)";
  }
  return "";
}

std::string check_attr(const ArrayMap& request) {
  for (const char* key : {"op", "name"}) {
    const std::string bad = check_text(request, key);
    if (!bad.empty()) return bad;
  }
  for (const auto& entry : request) {
    const std::string& key = entry.first;
    if (key != "op" && key != "name" && !starts_with(key, "arg/") && !starts_with(key, "kwarg/") &&
        !starts_with(key, "value/")) {
      return "ATTR may hold only 'op', 'name', 'arg/...', 'kwarg/...' and 'value/...' arrays, got '" +
             printable(key) + "'";
    }
  }
  return "";
}

// Why a session's result is unusable, or "": every array needs axis 0 == K.
std::string check_result(const ArrayMap& result, const EnvSpec& spec) {
  if (result.find("obs") == result.end()) return "the environment's result has no 'obs'";
  for (const auto& [key, array] : result) {
    if (array.ndim() < 1 || array.shape()[0] != spec.num_envs) {
      return "the environment's '" + printable(key) + "' has shape " + shape_string(array.shape()) +
             ", expected a leading " + std::to_string(spec.num_envs) + " (num_envs)";
    }
  }
  return "";
}

// The largest STEP payload worth reading for `spec`: a correct action's bytes
// plus kMaxControlFrameBytes for the framing (and for a slightly wrong one,
// which is answered with ERROR), never more than `max_frame_bytes`.
std::uint64_t step_limit(const EnvSpec& spec, std::uint64_t max_frame_bytes) {
  std::uint64_t bytes = itemsize(spec.action.dtype);
  bool overflow = __builtin_mul_overflow(bytes, static_cast<std::uint64_t>(spec.num_envs), &bytes);
  for (std::int64_t d : spec.action.shape) {
    overflow = overflow || __builtin_mul_overflow(bytes, static_cast<std::uint64_t>(d), &bytes);
  }
  if (overflow || bytes > max_frame_bytes - std::min(max_frame_bytes, kMaxControlFrameBytes)) return max_frame_bytes;
  return bytes + kMaxControlFrameBytes;
}

// The largest RESET and ATTR payloads worth reading for `spec`, never more
// than `max_frame_bytes` (net/wire.h, "Limits"): K is bounded by the spec
// this server sent, so neither product overflows.
std::uint64_t reset_limit(const EnvSpec& spec, std::uint64_t max_frame_bytes) {
  return std::min(max_frame_bytes, kMaxControlFrameBytes + 9 * static_cast<std::uint64_t>(spec.num_envs) +
                                       kMaxValueBytes);
}

std::uint64_t attr_limit(const EnvSpec& spec, std::uint64_t max_frame_bytes) {
  const auto k = static_cast<std::uint64_t>(spec.num_envs);
  if (k > (max_frame_bytes / kMaxValueBytes)) return max_frame_bytes;
  return std::min(max_frame_bytes, kMaxControlFrameBytes + k * kMaxValueBytes);
}

// Reads one frame that must be `type`, of at most kMaxControlFrameBytes.
ArrayMap expect(Socket& socket, FrameType type, const Deadline& deadline, const char* expected) {
  const FrameHeader header = read_header(socket, deadline);
  if (header.type != type) throw ProtocolError(std::string(expected) + ", got " + frame_type_name(header.type));
  check_frame_length(header, kMaxControlFrameBytes);
  return read_payload(socket, header, deadline);
}

void check_timeout(const Timeout& timeout, const char* name) {
  if (timeout && !(timeout->count() > 0)) {
    throw std::invalid_argument(std::string("EnvServer: ") + name + " must be > 0 seconds (or none), got " +
                                std::to_string(timeout->count()));
  }
}

}  // namespace

ArrayMap EnvSession::attr(const ArrayMap&) {
  throw EnvError("this server's environments do not support get_attr, set_attr or call");
}

EnvServer::EnvServer(const std::string& address, SessionFactory factory, EnvServerOptions options)
    : factory_(std::move(factory)), options_(std::move(options)) {
  if (!factory_) throw std::invalid_argument("EnvServer: factory must be callable");
  if (options_.max_connections < 1) {
    throw std::invalid_argument("EnvServer: max_connections must be >= 1, got " +
                                std::to_string(options_.max_connections));
  }
  check_timeout(options_.handshake_timeout, "handshake_timeout");
  check_timeout(options_.idle_timeout, "idle_timeout");
  check_timeout(options_.send_timeout, "send_timeout");
  const Address where = Address::parse(address);
  if (options_.auth_token.empty() && !is_loopback(where)) {
    throw std::invalid_argument("refusing to serve on " + address +
                                " without an auth token: it is not a loopback address, so set BEAST_AUTH_TOKEN "
                                "(or --auth-token) on the server and its clients");
  }
  listener_ = Listener::listen(where);
  address_ = listener_.address().to_string();
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) throw SocketError("pipe2 failed");
  wake_read_ = fds[0];
  wake_write_ = fds[1];
  accept_thread_ = std::thread([this] { accept_loop(); });
}

EnvServer::~EnvServer() {
  close();
  ::close(wake_read_);
  ::close(wake_write_);
}

std::int64_t EnvServer::num_connections() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::int64_t n = 0;
  for (const auto& c : connections_) n += c->done ? 0 : 1;
  return n;
}

void EnvServer::wake() {
  const char byte = 1;
  // A full pipe (EAGAIN) already holds a wakeup; nothing is lost.
  while (::write(wake_write_, &byte, 1) < 0 && errno == EINTR) {
  }
}

void EnvServer::wait_for_wake(int ms) {
  pollfd p{wake_read_, POLLIN, 0};
  ::poll(&p, 1, ms);
  char drain[256];
  while (::read(wake_read_, drain, sizeof(drain)) > 0) {
  }
}

void EnvServer::close() {
  std::call_once(close_once_, [this] {
    closing_ = true;
    wake();
    if (accept_thread_.joinable()) accept_thread_.join();
    listener_.close();
    std::list<std::unique_ptr<Connection>> connections;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& c : connections_) c->socket.shutdown();  // wakes each connection's blocked recv or send
      connections.swap(connections_);
    }
    for (auto& c : connections) c->thread.join();
  });
}

void EnvServer::accept_loop() {
  bool out_of_fds = false;  // logged once per shortage, not once per retry
  while (!closing_) {
    reap_finished();
    Listener::Accepted accepted;
    try {
      accepted = listener_.accept(wake_read_);
    } catch (const std::exception& e) {
      log_line(std::string("stopped accepting connections: ") + e.what());
      return;
    }
    if (accepted.out_of_fds != 0) {
      if (!out_of_fds) {
        log_line(std::string("out of file descriptors (") + std::strerror(accepted.out_of_fds) + ") with " +
                 std::to_string(num_connections()) +
                 " connections open: new ones wait until some close (see --max-connections and ulimit -n)");
      }
      out_of_fds = true;
      wait_for_wake(100);  // the pending connection keeps the listener readable: do not spin
      continue;
    }
    if (!accepted.socket) {  // woken: closing, or a connection finished
      wait_for_wake(0);
      continue;
    }
    if (out_of_fds) log_line("file descriptors available again: accepting connections");
    out_of_fds = false;
    admit(std::move(*accepted.socket));
  }
}

void EnvServer::admit(Socket socket) {
  if (num_connections() >= options_.max_connections) {
    if (!at_limit_) {
      log_line("at the connection limit (" + std::to_string(options_.max_connections) +
               ", --max-connections): refusing new connections");
    }
    at_limit_ = true;
    ++refused_;
    try {  // never blocks the accept thread: a deadline of now sends only what fits at once
      write_frame(socket, FrameType::kError,
                  error_arrays("the server is at its connection limit (" + std::to_string(options_.max_connections) +
                               " connections); try again later"),
                  Clock::now());
    } catch (const std::exception&) {
    }
    return;  // the socket closes here
  }
  if (at_limit_) {
    log_line("below the connection limit again; refused " + std::to_string(refused_) + " connections meanwhile");
    at_limit_ = false;
    refused_ = 0;
  }
  auto connection = std::make_unique<Connection>();
  connection->socket = std::move(socket);
  Connection* c = connection.get();
  std::lock_guard<std::mutex> lock(mu_);
  connections_.push_back(std::move(connection));
  c->thread = std::thread([this, c] { serve(*c); });
}

void EnvServer::reap_finished() {
  std::list<std::unique_ptr<Connection>> finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      if ((*it)->done) {
        finished.push_back(std::move(*it));
        it = connections_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& c : finished) c->thread.join();  // done: returns at once
}

bool EnvServer::handshake(Socket& socket, const std::string& peer) {
  const Deadline deadline = deadline_after(options_.handshake_timeout, "EnvServer");
  const auto send = [&](FrameType type, const ArrayMap& arrays) {
    within("a handshake frame not sent within the send timeout", options_.send_timeout,
           [&] { write_frame(socket, type, arrays, deadline_after(options_.send_timeout, "EnvServer")); });
  };
  const auto read = [&](FrameType type, const char* expected) {
    return within("handshake not complete within the handshake timeout", options_.handshake_timeout,
                  [&] { return expect(socket, type, deadline, expected); });
  };
  read(FrameType::kHello, "expected HELLO as the first frame");
  if (options_.auth_token.empty()) return true;  // a loopback or unix server without a token
  std::uint8_t nonce[kNonceBytes];
  random_bytes(nonce, sizeof(nonce));
  send(FrameType::kChallenge, {{"nonce", bytes_array(nonce, sizeof(nonce))}});
  const ArrayMap auth = read(FrameType::kAuth, "expected AUTH in reply to CHALLENGE");
  for (const auto& entry : auth) {
    if (entry.first != "mac") throw ProtocolError("AUTH may hold only 'mac', got '" + printable(entry.first) + "'");
  }
  const std::uint8_t* mac = fixed_bytes(auth, "mac", kMacBytes, "AUTH");
  const Digest want = auth_mac(options_.auth_token, nonce);
  if (mac != nullptr && constant_time_equal(mac, want.data(), want.size())) return true;
  const std::string why = mac == nullptr ? "the client sent no token, and this server needs one"
                                         : "wrong auth token";
  log_line("refused " + peer + ": authentication failed (" + why + ")");
  send(FrameType::kError, error_arrays("authentication failed: " + why +
                                       " (set the same BEAST_AUTH_TOKEN for the server and its clients)"));
  return false;
}

void EnvServer::converse(Socket& socket, const std::string& peer) {
  if (!handshake(socket, peer)) return;  // refused: logged and told already
  std::unique_ptr<EnvSession> session;   // destroyed (its envs closed) on this thread, however this ends
  EnvSpec spec;
  const auto send = [&](FrameType type, const ArrayMap& arrays) {
    within("a reply not sent within the send timeout", options_.send_timeout,
           [&] { write_frame(socket, type, arrays, deadline_after(options_.send_timeout, "EnvServer")); });
  };
  const auto send_error = [&](const std::string& message) { send(FrameType::kError, error_arrays(message)); };
  // Runs one env call; its exception becomes the client's ERROR, not ours.
  const auto answer = [&](ArrayMap (EnvSession::*method)(const ArrayMap&), const ArrayMap& request) {
    ArrayMap result;
    std::string error;
    const bool attr = method == &EnvSession::attr;
    try {
      result = (session.get()->*method)(request);
      if (!attr) error = check_result(result, spec);
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (!error.empty()) return send_error(error);
    send(attr ? FrameType::kAttrResult : FrameType::kStepResult, result);
  };
  try {
    session = factory_();
    spec = session->spec();
  } catch (const std::exception& e) {
    log_line("cannot create environments for " + peer + ": " + e.what());
    send_error(std::string("the server could not create environments: ") + e.what());
    return;
  }
  send(FrameType::kSpec, encode_spec(spec));
  const std::uint64_t max_step_bytes = step_limit(spec, options_.max_frame_bytes);
  const std::uint64_t max_reset_bytes = reset_limit(spec, options_.max_frame_bytes);
  const std::uint64_t max_attr_bytes = attr_limit(spec, options_.max_frame_bytes);
  const auto limit_for = [&](FrameType type) -> std::uint64_t {
    switch (type) {
      case FrameType::kStep: return max_step_bytes;
      case FrameType::kReset: return max_reset_bytes;
      case FrameType::kAttr: return max_attr_bytes;
      case FrameType::kClose: return kMaxControlFrameBytes;
      default: throw ProtocolError(std::string("unexpected ") + frame_type_name(type) + " frame from a client");
    }
  };
  for (;;) {
    const Deadline idle = deadline_after(options_.idle_timeout, "EnvServer");
    const Frame request = within("no complete request within the idle timeout", options_.idle_timeout, [&] {
      const FrameHeader header = read_header(socket, idle);
      check_frame_length(header, limit_for(header.type));
      return Frame{header.type, read_payload(socket, header, idle)};
    });
    if (request.type == FrameType::kClose) return;
    std::string bad;
    ArrayMap (EnvSession::*method)(const ArrayMap&) = &EnvSession::step;
    if (request.type == FrameType::kReset) {
      bad = check_reset(request.arrays, spec);
      method = &EnvSession::reset;
    } else if (request.type == FrameType::kAttr) {
      bad = check_attr(request.arrays);
      method = &EnvSession::attr;
    } else {
      bad = check_step(request.arrays, spec);
    }
    bad.empty() ? answer(method, request.arrays) : send_error(bad);
  }
}

void EnvServer::serve(Connection& c) {
  const std::string peer = c.socket.peer_name();
  // Best effort, and never waiting (after a send timeout nothing fits anyway).
  const auto last_word = [&](const std::string& message) {
    try {
      write_frame(c.socket, FrameType::kError, error_arrays(message), Clock::now());
    } catch (const std::exception&) {  // the client may be gone already
    }
  };
  try {
    converse(c.socket, peer);
  } catch (const ProtocolError& e) {
    log_line("closing connection from " + peer + ": " + e.what());
    last_word(std::string("protocol error: ") + e.what());
  } catch (const SocketTimeout& e) {
    if (!closing_) log_line("closing connection from " + peer + ": " + e.what());
    last_word(std::string("closing the connection: ") + e.what());
  } catch (const ConnectionClosed& e) {
    if (!e.at_boundary() && !closing_) log_line("connection from " + peer + " lost: " + e.what());
  } catch (const std::exception& e) {
    if (!closing_) log_line("closing connection from " + peer + ": " + e.what());
  }
  c.socket.shutdown_and_drain(Clock::now() + std::chrono::seconds(1));  // so the last ERROR is read, not reset
  {
    // The fd goes back now, not when the accept thread next runs; under mu_
    // so close() never shuts down a number the kernel has reused.
    std::lock_guard<std::mutex> lock(mu_);
    c.socket.close();
    c.done = true;
  }
  wake();  // the accept thread joins this thread
}

}  // namespace beast
