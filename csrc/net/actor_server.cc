#include "net/actor_server.h"

#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <utility>

#include "net/handshake.h"

namespace beast {
namespace {

void log_line(const std::string& message) {
  std::fprintf(stderr, "beast actor server: %s\n", printable(message, "", true).c_str());
}

void check_positive(std::int64_t value, const char* name) {
  if (value < 1) throw std::invalid_argument(std::string("ActorServer: ") + name + " must be >= 1, got " +
                                             std::to_string(value));
}

// [T+1, K, *per_env]
Shape unroll_shape(std::int64_t t, std::int64_t k, const Shape& per_env) {
  Shape shape{t + 1, k};
  shape.insert(shape.end(), per_env.begin(), per_env.end());
  return shape;
}

// The payload bytes of a correct UNROLL (net/wire.h's array layout), or
// nullopt when it does not fit in 64 bits.
std::optional<std::uint64_t> unroll_payload_bytes(const RolloutSchema& schema, std::int64_t t, std::int64_t k) {
  std::uint64_t total = 4;
  for (const auto& [key, spec] : schema) {
    std::uint64_t bytes = itemsize(spec.dtype);
    bool overflow = false;
    for (std::int64_t d : unroll_shape(t, k, spec.shape)) {
      overflow = overflow || __builtin_mul_overflow(bytes, static_cast<std::uint64_t>(d), &bytes);
    }
    const std::uint64_t framing = 2 + key.size() + 2 + 8 * (spec.shape.size() + 2) + 8;
    overflow = overflow || __builtin_add_overflow(total, bytes + framing, &total);
    if (overflow) return std::nullopt;
  }
  return total;
}

}  // namespace

ActorServer::ActorServer(const std::string& address, RolloutSchema schema, std::int64_t unroll_length,
                         std::int64_t num_envs, std::int64_t weights_size, std::int64_t max_actors,
                         BatchingQueue* queue, ActorServerOptions options)
    : schema_(std::move(schema)),
      unroll_length_(unroll_length),
      num_envs_(num_envs),
      weights_size_(weights_size),
      queue_(queue),
      options_(std::move(options)),
      slots_(static_cast<std::size_t>(std::max<std::int64_t>(max_actors, 0))),
      bytes_by_actor_(slots_.size(), 0) {
  check_positive(unroll_length, "unroll_length");
  check_positive(num_envs, "num_envs");
  check_positive(weights_size, "weights_size");
  check_positive(max_actors, "max_actors");
  if (queue_ == nullptr) throw std::invalid_argument("ActorServer: queue must be given");
  if (schema_.empty()) throw std::invalid_argument("ActorServer: the rollout schema is empty");
  if (schema_.count(kActorIdKey) != 0) {
    throw std::invalid_argument(std::string("ActorServer: '") + kActorIdKey + "' is the server's own key");
  }
  if (schema_.size() + 1 > kMaxArraysPerFrame) {
    throw std::invalid_argument("ActorServer: the schema has more keys than a frame can hold");
  }
  const auto bytes = unroll_payload_bytes(schema_, unroll_length_, num_envs_);
  if (!bytes || *bytes > (1ull << 40)) throw std::invalid_argument("ActorServer: an unroll would exceed 1 TiB");
  unroll_bytes_ = *bytes;
  const Address where = Address::parse(address);
  if (options_.auth_token.empty() && !is_loopback(where)) {
    throw std::invalid_argument("refusing to accept actors on " + address +
                                " without an auth token: it is not a loopback address, so set BEAST_AUTH_TOKEN "
                                "for the learner and its actors");
  }
  Listener listener = Listener::listen(where);
  address_ = listener.address().to_string();
  // Room for every actor plus a few still in their handshake (a full server
  // still answers them, with the reason).
  acceptor_ = std::make_unique<Acceptor>(
      std::move(listener), AcceptorLimits{max_actors + 8, "--num-actors"},
      [this](Socket& socket, const std::string& peer) { serve(socket, peer); }, log_line);
  acceptor_->start();
}

ActorServer::~ActorServer() { close(); }

void ActorServer::close() { acceptor_->close(); }

std::int64_t ActorServer::num_connected() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::int64_t n = 0;
  for (const auto& slot : slots_) n += slot ? 1 : 0;
  return n;
}

void ActorServer::event(const std::string& line) {
  std::lock_guard<std::mutex> lock(mu_);
  if (events_.size() < 1000) events_.push_back(printable(line, "", true));
}

std::int64_t ActorServer::bytes_sent() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::int64_t total = 0;
  for (std::int64_t bytes : bytes_by_actor_) total += bytes;
  return total;
}

std::vector<std::int64_t> ActorServer::bytes_sent_per_actor() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_by_actor_;
}

std::vector<std::string> ActorServer::drain_events() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(events_, {});
}

std::vector<std::int64_t> ActorServer::take_joined() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(joined_, {});
}

std::int64_t ActorServer::take_slot(const std::shared_ptr<Outbox>& outbox) {
  std::lock_guard<std::mutex> lock(mu_);
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    if (!slots_[i]) {
      slots_[i] = outbox;
      joined_.push_back(static_cast<std::int64_t>(i));
      return static_cast<std::int64_t>(i);
    }
  }
  return -1;
}

void ActorServer::free_slot(std::int64_t actor_id) {
  std::lock_guard<std::mutex> lock(mu_);
  slots_[static_cast<std::size_t>(actor_id)].reset();
}

bool ActorServer::send_weights(std::int64_t actor_id, std::int64_t version, std::shared_ptr<const Array> weights) {
  if (!weights || weights->dtype() != DType::kFloat32 || weights->shape() != Shape{weights_size_}) {
    throw std::invalid_argument("ActorServer.send_weights: weights must be float32 [" +
                                std::to_string(weights_size_) + "]");
  }
  std::shared_ptr<Outbox> outbox;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (actor_id < 0 || actor_id >= max_actors()) return false;
    outbox = slots_[static_cast<std::size_t>(actor_id)];
  }
  if (!outbox) return false;
  {
    std::lock_guard<std::mutex> lock(outbox->mu);
    if (outbox->pending) ++weights_replaced_;
    outbox->pending.emplace(version, std::move(weights));  // replaces one not yet written
  }
  outbox->cv.notify_one();
  return true;
}

void ActorServer::write_weights(Socket& socket, Outbox& outbox, std::int64_t actor_id, const std::string& who) {
  for (;;) {
    std::optional<std::pair<std::int64_t, std::shared_ptr<const Array>>> pending;
    std::int64_t acks = 0;
    {
      std::unique_lock<std::mutex> lock(outbox.mu);
      outbox.cv.wait(lock, [&] { return outbox.stop || outbox.pending.has_value() || outbox.acks > 0; });
      if (outbox.stop) return;
      pending = std::exchange(outbox.pending, std::nullopt);
      acks = std::exchange(outbox.acks, 0);
    }
    // One try for both frames: a send that fails or times out closes the connection.
    try {
      if (acks > 0) {
        within("an ack not sent within the send timeout", options_.send_timeout, [&] {
          write_frame(socket, FrameType::kUnrollAck, {{"count", scalar_int64(acks)}},
                      deadline_after(options_.send_timeout, "ActorServer"));
        });
      }
      if (pending) send_weights_frame(socket, pending->first, pending->second, actor_id);
    } catch (const std::exception& e) {
      if (!acceptor_->closing()) event(who + ": " + e.what() + "; closing it");
      socket.shutdown();  // the reader sees EOF and frees the id
      return;
    }
  }
}

void ActorServer::send_weights_frame(Socket& socket, std::int64_t version, const std::shared_ptr<const Array>& blob,
                                     std::int64_t actor_id) {
  // The frame's encoder reads the shared blob in place.
  const Array weights(blob->dtype(), blob->shape(), std::shared_ptr<void>(blob, blob->data()), blob->data());
  const std::vector<std::uint8_t> frame =
      encode_frame(FrameType::kWeights, {{"version", scalar_int64(version)}, {"weights", weights}});
  within("weights not sent within the send timeout", options_.send_timeout, [&] {
    socket.send_all(frame.data(), frame.size(), deadline_after(options_.send_timeout, "ActorServer"), "WEIGHTS");
  });
  std::lock_guard<std::mutex> lock(mu_);
  bytes_by_actor_[static_cast<std::size_t>(actor_id)] += static_cast<std::int64_t>(frame.size());
  ++weight_messages_;
}

ArrayMap ActorServer::check_unroll(ArrayMap arrays, std::int64_t actor_id) const {
  for (const auto& entry : arrays) {
    if (schema_.count(entry.first) == 0) {
      throw ProtocolError("UNROLL holds '" + printable(entry.first) + "', which is not a rollout key");
    }
  }
  for (const auto& [key, spec] : schema_) {
    const auto it = arrays.find(key);
    if (it == arrays.end()) throw ProtocolError("UNROLL lacks the rollout key '" + key + "'");
    const Shape want = unroll_shape(unroll_length_, num_envs_, spec.shape);
    if (it->second.dtype() != spec.dtype || it->second.shape() != want) {
      throw ProtocolError("UNROLL '" + key + "' must be " + dtype_name(spec.dtype) + " " + shape_string(want) +
                          ", got " + dtype_name(it->second.dtype()) + " " + shape_string(it->second.shape()));
    }
  }
  Array ids = Array::empty(DType::kInt64, {1, num_envs_});
  auto* id = static_cast<std::int64_t*>(ids.data());
  for (std::int64_t i = 0; i < num_envs_; ++i) id[i] = actor_id;
  arrays.emplace(kActorIdKey, std::move(ids));
  return arrays;
}

void ActorServer::converse(Socket& socket, const std::string& peer, std::int64_t& actor_id) {
  if (!accept_handshake(socket, options_.auth_token, options_.handshake_timeout, options_.send_timeout, peer,
                        [this](const std::string& line) { event(line); })) {
    return;
  }
  const auto send = [&](FrameType type, const ArrayMap& arrays) {
    within("a frame not sent within the send timeout", options_.send_timeout,
           [&] { write_frame(socket, type, arrays, deadline_after(options_.send_timeout, "ActorServer")); });
  };
  auto outbox = std::make_shared<Outbox>();
  actor_id = take_slot(outbox);
  if (actor_id < 0) {
    event("refused " + peer + ": all " + std::to_string(max_actors()) + " actor ids are taken");
    send(FrameType::kError, error_arrays("the learner already has its " + std::to_string(max_actors()) +
                                         " actors (--num-actors)"));
    return;
  }
  const std::string who = "actor " + std::to_string(actor_id) + " (" + peer + ")";
  ++sessions_;
  send(FrameType::kActorSpec, {{"actor_id", scalar_int64(actor_id)},
                               {"num_envs", scalar_int64(num_envs_)},
                               {"unroll_length", scalar_int64(unroll_length_)},
                               {"weights_size", scalar_int64(weights_size_)},
                               {"max_in_flight", scalar_int64(kMaxInFlight)}});
  event(who + " joined");
  std::thread writer([&] { write_weights(socket, *outbox, actor_id, who); });
  const auto stop_writer = [&] {
    {
      std::lock_guard<std::mutex> lock(outbox->mu);
      outbox->stop = true;
    }
    outbox->cv.notify_one();
    writer.join();
  };
  try {
    for (;;) {
      const Deadline idle = deadline_after(options_.idle_timeout, "ActorServer");
      const Frame frame = within("no unroll within the idle timeout", options_.idle_timeout, [&] {
        const FrameHeader header = read_header(socket, idle);
        if (header.type == FrameType::kClose) {
          check_frame_length(header, kMaxControlFrameBytes);
        } else if (header.type == FrameType::kUnroll) {
          check_frame_length(header, unroll_bytes_ + kMaxControlFrameBytes);
        } else {
          throw ProtocolError(std::string("unexpected ") + frame_type_name(header.type) + " frame from an actor");
        }
        return Frame{header.type, read_payload(socket, header, idle)};
      });
      if (frame.type == FrameType::kClose) break;
      Item item = check_unroll(frame.arrays, actor_id);
      for (;;) {  // wait for room, but notice close() within 0.1 s
        try {
          // A copy per try (it shares the arrays' buffers): a timed-out enqueue has taken
          // the Item it was given.
          queue_->enqueue(item, std::chrono::duration<double>(0.1));
          {
            std::lock_guard<std::mutex> lock(outbox->mu);
            ++outbox->acks;
          }
          outbox->cv.notify_one();
          break;
        } catch (const QueueTimeout&) {
          if (acceptor_->closing()) throw QueueClosed("the server is closing");
        }
      }
      ++unrolls_;
    }
  } catch (...) {
    stop_writer();
    throw;
  }
  stop_writer();
  event(who + " left");
}

void ActorServer::serve(Socket& socket, const std::string& peer) {
  std::int64_t actor_id = -1;
  const auto last_word = [&](const std::string& message) {
    try {
      write_frame(socket, FrameType::kError, error_arrays(message), Clock::now());
    } catch (const std::exception&) {
    }
  };
  const auto who = [&] { return actor_id < 0 ? peer : "actor " + std::to_string(actor_id) + " (" + peer + ")"; };
  try {
    converse(socket, peer, actor_id);
  } catch (const ProtocolError& e) {
    event(who() + ": protocol error: " + e.what() + "; closing it");
    last_word(std::string("protocol error: ") + e.what());
  } catch (const SocketTimeout& e) {
    if (!acceptor_->closing()) event(who() + ": " + e.what() + "; closing it");
    last_word(std::string("closing the connection: ") + e.what());
  } catch (const QueueClosed&) {
    // the learner is shutting down
  } catch (const std::exception& e) {
    if (!acceptor_->closing()) event(who() + " lost: " + e.what());
  }
  if (actor_id >= 0) free_slot(actor_id);  // now: the actor may already be reconnecting
  socket.shutdown_and_drain(Clock::now() + std::chrono::seconds(1));
}

}  // namespace beast
