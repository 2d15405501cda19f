// ActorServer: the learner's end of the actor protocol (net/wire.h, frames
// 12-14). Remote actors (`python -m beast.poly.actor`) step their own envs
// with a local policy copy and send whole unrolls; the learner sends each one
// weights only when its sync controller says so.
//
// What flows through it, per connection:
//   actor HELLO [-> CHALLENGE -> AUTH]  -> server: takes the lowest free actor
//                                          id (none free: ERROR, closed) and
//                                          sends ACTOR_SPEC {actor_id, num_envs,
//                                          unroll_length, weights_size}
//   actor UNROLL {key: [T+1, K, ...]}   -> checked against the schema (exactly
//                                          its keys, dtypes and shapes), given
//                                          "actor_id" int64 [1, K] and enqueued
//                                          into the learner's BatchingQueue
//                                          (batch_dim 1, stack false)
//   send_weights(id, version, blob)     -> WEIGHTS {version, weights} to that
//                                          actor, from its own writer thread
//                                       -> UNROLL_ACK {count} once queued (the
//                                          actor keeps at most kMaxInFlight unacked)
//   actor CLOSE / EOF                   -> the id is free again
// A malformed frame, an unroll off the schema, or any frame other than UNROLL
// and CLOSE after the handshake closes that connection only, with an ERROR
// saying why (best effort) and an event line; the other actors carry on.
// Limits: before the handshake ends, control frames of at most 4 KiB; an
// UNROLL's length is checked against the schema's exact byte count (plus
// 4 KiB for its framing) before anything is allocated. Deadlines as for the
// env server (handshake, idle, send). A non-loopback address needs a token.
//
// Weights: send_weights() only hands the message to the actor's writer and
// returns; a message not yet written when the next one comes is replaced by
// it, so an actor behind a slow link receives the newest weights, never a
// backlog. bytes_sent() counts whole WEIGHTS frames written, header included.
// UNROLL_ACKs go out from the same writer thread (one socket writer).
//
// Threads: one accept thread; per connection a reader (handshake, unrolls)
// and a writer (weights). Every public method may be called from any thread;
// close() (idempotent, also the destructor) stops accepting, wakes and joins
// every thread. It never closes the queue: the caller owns it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/array.h"
#include "core/batching_queue.h"
#include "net/acceptor.h"
#include "net/socket.h"
#include "net/wire.h"

namespace beast {

// The per-env shape and dtype of each rollout key (no [T+1, K] in front).
using RolloutSchema = std::map<std::string, ArraySpec>;

// Unrolls an actor may have sent and not yet seen acked (ACTOR_SPEC's
// max_in_flight): one queued while it fills the next, one crossing the network.
constexpr std::int64_t kMaxInFlight = 2;

// The key the server adds to each unroll: which actor sent it.
constexpr const char* kActorIdKey = "actor_id";

struct ActorServerOptions {
  Timeout handshake_timeout = std::chrono::seconds(10);
  Timeout idle_timeout = std::chrono::seconds(600);
  Timeout send_timeout = std::chrono::seconds(60);
  std::string auth_token;  // required for a non-loopback address
};

class ActorServer {
 public:
  // Binds `address` and starts accepting up to `max_actors` actors. Throws
  // std::invalid_argument for a bad argument or a non-loopback address
  // without a token, SocketError if it cannot bind.
  ActorServer(const std::string& address, RolloutSchema schema, std::int64_t unroll_length, std::int64_t num_envs,
              std::int64_t weights_size, std::int64_t max_actors, BatchingQueue* queue,
              ActorServerOptions options = {});
  ~ActorServer();
  ActorServer(const ActorServer&) = delete;
  ActorServer& operator=(const ActorServer&) = delete;

  std::string address() const { return address_; }

  // Queues WEIGHTS {version, weights} (float32 [weights_size]) for actor
  // `actor_id`; false if no actor holds that id now. invalid_argument for a
  // blob of another dtype or size.
  bool send_weights(std::int64_t actor_id, std::int64_t version, std::shared_ptr<const Array> weights);

  // Ids that actors took since the last call, in order (a reconnected actor's
  // id comes again): each holds no weights until sent some.
  std::vector<std::int64_t> take_joined();
  // Event lines since the last call (joined, left and why), oldest first.
  std::vector<std::string> drain_events();

  std::int64_t num_connected() const;
  std::int64_t num_sessions() const { return sessions_; }  // actors admitted, ever
  std::int64_t num_unrolls() const { return unrolls_; }
  std::int64_t bytes_sent() const;  // the sum over bytes_sent_per_actor()
  std::int64_t weight_messages() const { return weight_messages_; }
  // Messages replaced by a newer one before they were written.
  std::int64_t weights_replaced() const { return weights_replaced_; }
  // WEIGHTS bytes written to each actor id, over all its sessions.
  std::vector<std::int64_t> bytes_sent_per_actor() const;
  std::int64_t max_actors() const { return static_cast<std::int64_t>(slots_.size()); }

  void close();

 private:
  struct Outbox {  // one actor's writer side
    std::mutex mu;
    std::condition_variable cv;
    std::optional<std::pair<std::int64_t, std::shared_ptr<const Array>>> pending;
    std::int64_t acks = 0;  // unrolls queued and not yet acked
    bool stop = false;
  };
  void serve(Socket& socket, const std::string& peer);
  void converse(Socket& socket, const std::string& peer, std::int64_t& actor_id);
  void write_weights(Socket& socket, Outbox& outbox, std::int64_t actor_id, const std::string& who);
  void send_weights_frame(Socket& socket, std::int64_t version, const std::shared_ptr<const Array>& blob,
                          std::int64_t actor_id);
  std::int64_t take_slot(const std::shared_ptr<Outbox>& outbox);
  void free_slot(std::int64_t actor_id);
  void event(const std::string& line);
  ArrayMap check_unroll(ArrayMap arrays, std::int64_t actor_id) const;

  const RolloutSchema schema_;
  const std::int64_t unroll_length_;
  const std::int64_t num_envs_;
  const std::int64_t weights_size_;
  BatchingQueue* const queue_;
  const ActorServerOptions options_;
  std::uint64_t unroll_bytes_ = 0;  // an exact UNROLL payload's size

  mutable std::mutex mu_;  // guards slots_, joined_, events_
  std::vector<std::shared_ptr<Outbox>> slots_;  // by actor id; null: free
  std::vector<std::int64_t> joined_;
  std::vector<std::string> events_;
  std::atomic<std::int64_t> sessions_{0};
  std::atomic<std::int64_t> unrolls_{0};
  std::atomic<std::int64_t> weight_messages_{0};  // counted with bytes_by_actor_, under mu_
  std::atomic<std::int64_t> weights_replaced_{0};
  std::vector<std::int64_t> bytes_by_actor_;  // guarded by mu_
  std::string address_;
  std::unique_ptr<Acceptor> acceptor_;
};

}  // namespace beast
