#include "net/actor_client.h"

#include <cstring>

#include "net/handshake.h"

namespace beast {
namespace {

std::int64_t scalar_value(const ArrayMap& arrays, const char* key, const char* frame) {
  const auto it = arrays.find(key);
  if (it == arrays.end() || it->second.dtype() != DType::kInt64 || it->second.ndim() != 0) {
    throw ProtocolError(std::string(frame) + " frame: '" + key + "' must be an int64 scalar");
  }
  std::int64_t value = 0;
  std::memcpy(&value, it->second.data(), sizeof(value));
  return value;
}

}  // namespace

ActorClient::ActorClient(const std::string& address, Timeout timeout, const std::string& auth_token,
                         std::int64_t num_envs, std::int64_t unroll_length, std::int64_t weights_size)
    : address_(address),
      timeout_(timeout),
      num_envs_(num_envs),
      unroll_length_(unroll_length),
      weights_size_(weights_size) {
  if (num_envs < 1 || unroll_length < 1 || weights_size < 1) {
    throw std::invalid_argument("ActorClient: num_envs, unroll_length and weights_size must be >= 1");
  }
  const Deadline deadline = deadline_after(timeout_, "ActorClient");
  socket_ = Socket::connect(Address::parse(address_), deadline);
  const std::string learner = "learner " + address_;
  const Frame frame = open_handshake(socket_, auth_token, kMaxControlFrameBytes, deadline, learner);
  if (frame.type != FrameType::kActorSpec) {
    throw ProtocolError(learner + " answered HELLO with " + frame_type_name(frame.type) + ", expected ACTOR_SPEC");
  }
  actor_id_ = scalar_value(frame.arrays, "actor_id", "ACTOR_SPEC");
  const auto check = [&](const char* key, std::int64_t mine, const char* what) {
    const std::int64_t theirs = scalar_value(frame.arrays, key, "ACTOR_SPEC");
    if (theirs != mine) {
      throw SpecMismatch(learner + " expects " + std::to_string(theirs) + " " + what + ", this actor has " +
                         std::to_string(mine) + ": start it with the learner's flags");
    }
  };
  check("num_envs", num_envs_, "envs per actor (--num-envs)");
  check("unroll_length", unroll_length_, "steps per unroll (--unroll-length)");
  check("weights_size", weights_size_, "policy parameters (the model flags)");
  max_in_flight_ = scalar_value(frame.arrays, "max_in_flight", "ACTOR_SPEC");
  if (max_in_flight_ < 1 || max_in_flight_ > 1024) {
    throw ProtocolError("ACTOR_SPEC frame: max_in_flight must be 1..1024, got " + std::to_string(max_in_flight_));
  }
}

ActorClient::~ActorClient() { close(); }

void ActorClient::close() {
  if (!socket_.is_open()) return;
  try {
    write_frame(socket_, FrameType::kClose, {}, Clock::now() + std::chrono::milliseconds(100));
  } catch (const std::exception&) {
  }
  socket_.close();
}

void ActorClient::send_unroll(const ArrayMap& unroll) {
  if (!socket_.is_open()) throw ConnectionClosed("ActorClient(" + address_ + ") is closed", true);
  // A slow learner holds us back, within the timeout: a learner that acks nothing for that long
  // (stopped, or hung) is treated as lost, as one that cannot take the frame is.
  const Deadline deadline = deadline_after(timeout_, "ActorClient");
  while (in_flight_ >= max_in_flight_) read_one(deadline);
  write_frame(socket_, FrameType::kUnroll, unroll, deadline);
  ++in_flight_;
}

void ActorClient::read_one(const Deadline& deadline) {
  const FrameHeader header = read_header(socket_, deadline);
  if (header.type == FrameType::kError) {
    check_frame_length(header, kMaxControlFrameBytes);
    throw RemoteError("learner " + address_ + ": " + error_message(read_payload(socket_, header, deadline)));
  }
  if (header.type == FrameType::kUnrollAck) {
    check_frame_length(header, kMaxControlFrameBytes);
    const std::int64_t count = scalar_value(read_payload(socket_, header, deadline), "count", "UNROLL_ACK");
    if (count < 1 || count > in_flight_) {
      throw ProtocolError("UNROLL_ACK acks " + std::to_string(count) + " unrolls, " + std::to_string(in_flight_) +
                          " are in flight");
    }
    in_flight_ -= count;
    return;
  }
  if (header.type != FrameType::kWeights) {
    throw ProtocolError(std::string("expected WEIGHTS or UNROLL_ACK from the learner, got ") +
                        frame_type_name(header.type));
  }
  read_weights(header, deadline);
}

void ActorClient::read_weights(const FrameHeader& header, const Deadline& deadline) {
  const std::uint64_t limit = 4 * static_cast<std::uint64_t>(weights_size_) + kMaxControlFrameBytes;
  if (header.length > limit) {
    throw ProtocolError("refused a WEIGHTS frame of " + std::to_string(header.length) +
                        " bytes: this actor's policy has " + std::to_string(weights_size_) + " float32 parameters");
  }
  ArrayMap arrays = read_payload(socket_, header, deadline);
  bytes_received_ += static_cast<std::int64_t>(kFrameHeaderBytes + header.length);
  const auto version = arrays.find("version");
  const auto weights = arrays.find("weights");
  if (arrays.size() != 2 || version == arrays.end() || weights == arrays.end()) {
    throw ProtocolError("refused a WEIGHTS frame: it must hold exactly 'version' and 'weights'");
  }
  if (weights->second.dtype() != DType::kFloat32 || weights->second.shape() != Shape{weights_size_}) {
    throw ProtocolError("refused a WEIGHTS frame: 'weights' is " + std::string(dtype_name(weights->second.dtype())) +
                        " " + shape_string(weights->second.shape()) + ", this actor's policy has float32 [" +
                        std::to_string(weights_size_) + "]");
  }
  const std::int64_t v = scalar_value(arrays, "version", "WEIGHTS");
  if (v <= version_) {
    throw ProtocolError("refused a WEIGHTS frame: version " + std::to_string(v) +
                        " is not newer than the version this actor holds (" + std::to_string(version_) + ")");
  }
  version_ = v;
  newest_.emplace(v, std::move(weights->second));
}

std::optional<std::pair<std::int64_t, Array>> ActorClient::poll_weights(const Deadline& deadline) {
  if (!socket_.is_open()) throw ConnectionClosed("ActorClient(" + address_ + ") is closed", true);
  Deadline wait = newest_ ? Deadline(Clock::now()) : deadline;
  // A frame that has begun arriving is read whole, within the client's timeout; once weights
  // came, only what is already there.
  while (socket_.readable(wait)) {
    read_one(deadline_after(timeout_, "ActorClient"));
    if (newest_) wait = Clock::now();
  }
  return std::exchange(newest_, std::nullopt);
}

}  // namespace beast
