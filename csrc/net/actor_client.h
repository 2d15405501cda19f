// ActorClient: a remote actor's end of the actor protocol (net/wire.h,
// frames 12-14; the learner's end is net/actor_server.h).
//
//   ActorClient client("127.0.0.1:4010", 30s, token, K, T, n);  // HELLO .. ACTOR_SPEC
//   auto first = client.poll_weights(std::nullopt);             // wait for the first weights
//   for (;;) {
//     fill an unroll with the policy;  client.send_unroll(unroll);
//     if (auto w = client.poll_weights(Clock::now())) load w;  // newest, if any came
//   }
//
// The constructor checks the learner's ACTOR_SPEC against what this actor
// runs (K envs, unrolls of T, n float32 weights): a mismatch is a SpecMismatch
// naming both values. poll_weights() checks every WEIGHTS frame before using
// it: its length against n floats before anything is allocated, then exactly
// {version int64[], weights float32[n]}, and a version newer than the one
// held; any other frame from the learner than WEIGHTS (an ERROR: its reason)
// fails too. Each failure is thrown (ProtocolError, RemoteError) and leaves
// the client broken: the actor stops with that one line.
//
// Threads: one thread uses a client at a time.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "core/array.h"
#include "core/batching_queue.h"  // Timeout
#include "net/socket.h"
#include "net/wire.h"

namespace beast {

// The learner runs another configuration than this actor.
class SpecMismatch : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

class ActorClient {
 public:
  // Connects and shakes hands within `timeout` (nullopt: no bound), which
  // also bounds each send_unroll().
  ActorClient(const std::string& address, Timeout timeout, const std::string& auth_token, std::int64_t num_envs,
              std::int64_t unroll_length, std::int64_t weights_size);
  ~ActorClient();
  ActorClient(const ActorClient&) = delete;
  ActorClient& operator=(const ActorClient&) = delete;

  std::int64_t actor_id() const { return actor_id_; }
  // The version of the newest weights accepted (-1: none yet).
  std::int64_t version() const { return version_; }
  std::int64_t bytes_received() const { return bytes_received_; }

  // Waits (reading the learner's frames) while max_in_flight unrolls are
  // unacked, then sends this one; the timeout bounds the wait and the send
  // together (a learner that acks nothing for that long is lost).
  void send_unroll(const ArrayMap& unroll);
  // Reads every WEIGHTS frame that has arrived, waiting until `deadline` for
  // the first, and returns the newest (version, float32 [n]); nullopt if none came.
  std::optional<std::pair<std::int64_t, Array>> poll_weights(const Deadline& deadline);
  // Sends CLOSE (best effort) and closes. Idempotent.
  void close();

 private:
  // Reads one frame from the learner: UNROLL_ACK lowers in_flight_, a checked
  // WEIGHTS becomes newest_; anything else throws.
  void read_one(const Deadline& deadline);
  void read_weights(const FrameHeader& header, const Deadline& deadline);

  const std::string address_;
  const Timeout timeout_;
  const std::int64_t num_envs_;
  const std::int64_t unroll_length_;
  const std::int64_t weights_size_;
  Socket socket_;
  std::int64_t actor_id_ = -1;
  std::int64_t version_ = -1;
  std::int64_t bytes_received_ = 0;
  std::int64_t max_in_flight_ = 1;
  std::int64_t in_flight_ = 0;  // unrolls sent and not yet acked
  std::optional<std::pair<std::int64_t, Array>> newest_;  // read, not yet returned
};

}  // namespace beast
