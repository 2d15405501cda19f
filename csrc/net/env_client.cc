#include "net/env_client.h"

#include <utility>

#include "net/handshake.h"

namespace beast {

EnvClient::EnvClient(const std::string& address, Timeout timeout, std::uint64_t max_frame_bytes,
                     const std::string& auth_token)
    : EnvClient(kDeferred, address, timeout, max_frame_bytes, auth_token) {
  connect();
}

EnvClient::EnvClient(Deferred, const std::string& address, Timeout timeout, std::uint64_t max_frame_bytes,
                     const std::string& auth_token)
    : address_(address), timeout_(timeout), max_frame_bytes_(max_frame_bytes), auth_token_(auth_token) {
  deadline_after(timeout_, "EnvClient");  // refuses a negative or NaN timeout now
}

void EnvClient::connect() {
  std::lock_guard<std::mutex> lock(mu_);
  if (connected_) throw std::logic_error("EnvClient(" + address_ + ") is already connected");
  connected_ = true;
  const Deadline deadline = deadline_after(timeout_, "EnvClient");
  Socket socket = Socket::connect(Address::parse(address_), deadline);
  {
    std::lock_guard<std::mutex> guard(abort_mu_);
    if (aborted_) throw ConnectionClosed("EnvClient(" + address_ + ") was aborted", true);
    socket_ = std::move(socket);
  }
  try {
    const Frame frame = open_handshake(socket_, auth_token_, max_frame_bytes_, deadline, "env server " + address_);
    if (frame.type != FrameType::kSpec) {
      throw ProtocolError("env server " + address_ + " answered HELLO with " + frame_type_name(frame.type) +
                          ", expected SPEC");
    }
    spec_ = decode_spec(frame.arrays);
  } catch (const std::exception& e) {
    broken_ = e.what();
    close_socket();
    if (aborted_.load()) throw ConnectionClosed("EnvClient(" + address_ + ") was aborted while connecting", false);
    throw;
  }
}

void EnvClient::abort() {
  std::lock_guard<std::mutex> guard(abort_mu_);
  aborted_ = true;
  socket_.shutdown();
}

void EnvClient::close_socket() {
  std::lock_guard<std::mutex> guard(abort_mu_);
  socket_.close();
}

EnvClient::~EnvClient() { close(); }

bool EnvClient::is_closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return !socket_.is_open();
}

void EnvClient::check_open_locked() const {
  if (aborted_.load()) throw ConnectionClosed("EnvClient(" + address_ + ") was aborted", false);
  if (!socket_.is_open()) {
    const std::string why = !broken_.empty() ? ": " + broken_ : !connected_ ? ": not connected yet" : "";
    throw ConnectionClosed("EnvClient(" + address_ + ") is closed" + why, false);
  }
}

ArrayMap EnvClient::reset(std::optional<std::int64_t> seed) {
  ArrayMap request;
  if (seed) request.emplace("seed", scalar_int64(*seed));
  return reset(request);
}

ArrayMap EnvClient::reset(const ArrayMap& request) {
  std::lock_guard<std::mutex> lock(mu_);
  return request_locked(FrameType::kReset, request);
}

ArrayMap EnvClient::attr(const ArrayMap& request) {
  std::lock_guard<std::mutex> lock(mu_);
  return request_locked(FrameType::kAttr, request, FrameType::kAttrResult);
}

ArrayMap EnvClient::step(const Array& action) {
  Shape expected{spec_.num_envs};
  expected.insert(expected.end(), spec_.action.shape.begin(), spec_.action.shape.end());
  if (action.dtype() != spec_.action.dtype || action.shape() != expected) {
    throw std::invalid_argument(std::string("step: actions must be ") + dtype_name(spec_.action.dtype) + " " +
                                shape_string(expected) + ", got " + dtype_name(action.dtype()) + " " +
                                shape_string(action.shape()));
  }
  std::lock_guard<std::mutex> lock(mu_);
  return request_locked(FrameType::kStep, {{"action", action}});
}

ArrayMap EnvClient::request_locked(FrameType type, const ArrayMap& arrays, FrameType reply_type) {
  check_open_locked();
  Frame reply;
  try {
    const Deadline deadline = deadline_after(timeout_, "EnvClient");
    write_frame(socket_, type, arrays, deadline);
    reply = read_frame(socket_, max_frame_bytes_, deadline);
    if (reply.type != reply_type && reply.type != FrameType::kError) {
      throw ProtocolError(std::string("expected ") + frame_type_name(reply_type) + " or ERROR, got " +
                          frame_type_name(reply.type));
    }
  } catch (const std::exception& e) {
    // A half-read reply (or one still coming after a timeout) would be
    // mistaken for the answer to the next request: drop the connection.
    broken_ = e.what();
    close_socket();
    if (aborted_.load()) throw ConnectionClosed("EnvClient(" + address_ + ") was aborted during a request", false);
    throw;
  }
  if (reply.type == FrameType::kError) throw RemoteError("env server " + address_ + ": " + error_message(reply.arrays));
  return std::move(reply.arrays);
}

void EnvClient::close() {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) {  // a request is in flight: end it rather than wait for its reply
    abort();
    lock.lock();
  }
  if (!socket_.is_open()) return;
  try {
    write_frame(socket_, FrameType::kClose, {}, Clock::now());  // only if it fits at once: never hang here
  } catch (const std::exception&) {  // the server may be gone; closing is all that is left
  }
  close_socket();
}

}  // namespace beast
