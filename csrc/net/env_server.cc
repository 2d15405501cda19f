#include "net/env_server.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <utility>

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

std::string check_reset(const ArrayMap& request) {
  for (const auto& [key, array] : request) {
    if (key != "seed") return "RESET may hold only 'seed', got '" + printable(key) + "'";
    if (array.dtype() != DType::kInt64 || array.ndim() != 0) {
      return std::string("RESET 'seed' must be an int64 scalar, got ") + dtype_name(array.dtype()) + " " +
             shape_string(array.shape());
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

}  // namespace

EnvServer::EnvServer(const std::string& address, SessionFactory factory, std::uint64_t max_frame_bytes)
    : factory_(std::move(factory)), max_frame_bytes_(max_frame_bytes) {
  if (!factory_) throw std::invalid_argument("EnvServer: factory must be callable");
  listener_ = Listener::listen(Address::parse(address));
  address_ = listener_.address().to_string();
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw SocketError("pipe2 failed");
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

void EnvServer::close() {
  std::call_once(close_once_, [this] {
    closing_ = true;
    const char byte = 1;
    while (::write(wake_write_, &byte, 1) < 0 && errno == EINTR) {
    }
    if (accept_thread_.joinable()) accept_thread_.join();
    listener_.close();
    std::list<std::unique_ptr<Connection>> connections;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& c : connections_) c->socket.shutdown();  // wakes each connection's blocked recv
      connections.swap(connections_);
    }
    for (auto& c : connections) c->thread.join();
  });
}

void EnvServer::accept_loop() {
  for (;;) {
    std::optional<Socket> socket;
    try {
      socket = listener_.accept(wake_read_);
    } catch (const std::exception& e) {
      log_line(std::string("stopped accepting connections: ") + e.what());
      return;
    }
    if (!socket || closing_) return;
    reap_finished();
    auto connection = std::make_unique<Connection>();
    connection->socket = std::move(*socket);
    Connection* c = connection.get();
    std::lock_guard<std::mutex> lock(mu_);
    connections_.push_back(std::move(connection));
    c->thread = std::thread([this, c] { serve(*c); });
  }
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

void EnvServer::serve(Connection& c) {
  const std::string peer = c.socket.peer_name();
  std::unique_ptr<EnvSession> session;
  EnvSpec spec;
  std::uint64_t max_step_bytes = 0;
  auto send_error = [&](const std::string& message) {
    write_frame(c.socket, FrameType::kError, error_arrays(message));
  };
  // Runs one env call; its exception becomes the client's ERROR, not ours.
  auto answer = [&](ArrayMap (EnvSession::*method)(const ArrayMap&), const ArrayMap& request) {
    ArrayMap result;
    std::string error;
    try {
      result = (session.get()->*method)(request);
      error = check_result(result, spec);
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (error.empty()) {
      write_frame(c.socket, FrameType::kStepResult, result);
    } else {
      send_error(error);
    }
  };
  try {
    for (bool open = true; open;) {
      // Each frame type has its own bound, checked from the header alone.
      const FrameHeader header = read_header(c.socket, std::nullopt);
      const std::string type = frame_type_name(header.type);
      if (!session) {
        if (header.type != FrameType::kHello) throw ProtocolError("expected HELLO as the first frame, got " + type);
        check_frame_length(header, kMaxControlFrameBytes);
        read_payload(c.socket, header, std::nullopt);
        try {
          session = factory_();
          spec = session->spec();
        } catch (const std::exception& e) {
          log_line("cannot create environments for " + peer + ": " + e.what());
          send_error(std::string("the server could not create environments: ") + e.what());
          break;
        }
        write_frame(c.socket, FrameType::kSpec, encode_spec(spec));
        max_step_bytes = step_limit(spec, max_frame_bytes_);
        continue;
      }
      if (header.type != FrameType::kReset && header.type != FrameType::kStep && header.type != FrameType::kClose) {
        throw ProtocolError("unexpected " + type + " frame from a client");
      }
      check_frame_length(header, header.type == FrameType::kStep ? max_step_bytes : kMaxControlFrameBytes);
      Frame frame{header.type, read_payload(c.socket, header, std::nullopt)};
      switch (frame.type) {
        case FrameType::kReset: {
          const std::string bad = check_reset(frame.arrays);
          bad.empty() ? answer(&EnvSession::reset, frame.arrays) : send_error(bad);
          break;
        }
        case FrameType::kStep: {
          const std::string bad = check_step(frame.arrays, spec);
          bad.empty() ? answer(&EnvSession::step, frame.arrays) : send_error(bad);
          break;
        }
        default:  // CLOSE
          open = false;
          break;
      }
    }
  } catch (const ProtocolError& e) {
    log_line("closing connection from " + peer + ": " + e.what());
    try {
      send_error(std::string("protocol error: ") + e.what());
    } catch (const std::exception&) {  // the client may be gone already
    }
  } catch (const ConnectionClosed& e) {
    if (!e.at_boundary() && !closing_) log_line("connection from " + peer + " lost: " + e.what());
  } catch (const std::exception& e) {
    if (!closing_) log_line("closing connection from " + peer + ": " + e.what());
  }
  session.reset();  // closes the envs, on this thread
  c.socket.shutdown_and_drain(Clock::now() + std::chrono::seconds(1));  // so the last ERROR is read, not reset
  c.socket.shutdown();  // the client sees EOF now; close() or reap_finished() closes the fd
  c.done = true;
}

}  // namespace beast
