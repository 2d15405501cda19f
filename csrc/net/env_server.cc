#include "net/env_server.h"


#include <algorithm>
#include <cstdio>
#include <utility>

#include "net/handshake.h"

namespace beast {
namespace {

// One line per event, written with one call so lines from connection
// threads do not interleave. Anything unprintable is escaped, so no text in
// a message (a traceback, a name a client chose) can break the line.
void log_line(const std::string& message) {
  std::fprintf(stderr, "beast env server: %s\n", printable(message, "", true).c_str());
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
  Listener listener = Listener::listen(where);
  address_ = listener.address().to_string();
  acceptor_ = std::make_unique<Acceptor>(
      std::move(listener), AcceptorLimits{options_.max_connections, "--max-connections"},
      [this](Socket& socket, const std::string& peer) { serve(socket, peer); }, log_line);
  acceptor_->start();
}

EnvServer::~EnvServer() { close(); }

std::int64_t EnvServer::num_connections() const { return acceptor_->num_connections(); }

void EnvServer::close() { acceptor_->close(); }

bool EnvServer::handshake(Socket& socket, const std::string& peer) {
  return accept_handshake(socket, options_.auth_token, options_.handshake_timeout, options_.send_timeout, peer,
                          log_line);
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

void EnvServer::serve(Socket& socket, const std::string& peer) {
  // Best effort, and never waiting (after a send timeout nothing fits anyway).
  const auto last_word = [&](const std::string& message) {
    try {
      write_frame(socket, FrameType::kError, error_arrays(message), Clock::now());
    } catch (const std::exception&) {  // the client may be gone already
    }
  };
  try {
    converse(socket, peer);
  } catch (const ProtocolError& e) {
    log_line("closing connection from " + peer + ": " + e.what());
    last_word(std::string("protocol error: ") + e.what());
  } catch (const SocketTimeout& e) {
    if (!acceptor_->closing()) log_line("closing connection from " + peer + ": " + e.what());
    last_word(std::string("closing the connection: ") + e.what());
  } catch (const ConnectionClosed& e) {
    if (!e.at_boundary() && !acceptor_->closing()) log_line("connection from " + peer + " lost: " + e.what());
  } catch (const std::exception& e) {
    if (!acceptor_->closing()) log_line("closing connection from " + peer + ": " + e.what());
  }
  socket.shutdown_and_drain(Clock::now() + std::chrono::seconds(1));  // so the last ERROR is read, not reset
}

}  // namespace beast
