// ActorPool: C++ actor threads that step remote envs with central inference
// and write [T+1, K] unrolls (the rollout layout of beast/rollout.py).
//
// What flows through it, one thread per env server address (connection):
//   EnvClient(address) -> reset(seed + index * K)
//   loop:
//     DynamicBatcher.compute({"obs": [K, *obs_shape], "reward": [K] f32,
//                             "terminated": [K] bool, "truncated": [K] bool,
//                             each state key: [K, *shape]})
//       -> exactly the agent spec's keys, each [K, *shape] (cast to its dtype)
//     write entry t of the unroll (env output o_t + agent output at o_t)
//     EnvClient.step(agent[action_key]) -> the next env output
//     after T+1 entries: BatchingQueue.enqueue(unroll); the last entry is
//     entry 0 of the next unroll (its action is the one executed next)
// The agent half of the rollout is data, not code: the caller passes the agent
// spec (key -> dtype and per-env shape, from beast.rollout.RolloutSpec), which
// key is the action sent to the env, and which keys are state fed back to the
// next compute() (a recurrent model's core state: zeros at first; unrolls
// record the value entering each step). No agent key is named in this code.
// An unroll holds the env half, [T+1, K, ...]: obs (the env's dtype), reward
// f32, terminated bool, truncated bool, episode_return f32, episode_step int32,
// and every agent key. The inference side stamps policy_version (an agent key
// like any other) with the weights it used. A float output for an integer
// field is refused, not truncated; the action is cast to the env's dtype.
// episode_return / episode_step are running sums that restart at the step
// after an episode ended (next-step autoreset), as in beast.acting's
// UnrollWorker; when the env sends "game_over" (episodic life), only after a
// game ended. The learner queue is meant to be BatchingQueue(capacity, 1,
// stack = false), so a batch of n unrolls is [T+1, n*K, ...]. Every
// connection must serve the same K and the same specs.
//
// Reconnection: a connection whose server is lost (the connection drops,
// the server dies, or it sends no reply within `reply_timeout`, as a hung or
// SIGSTOPped one does) drops its unfinished unroll (num_dropped_unrolls;
// every completed one is already queued), logs an event, and reconnects with
// exponential backoff (50 ms doubling to 2 s) to the connection's current
// address: the same server restarted, or the replacement that
// replace_address() names. A new session resets its envs with a fresh seed
// (seed + (session * N + i) * K for connection i of N, session s = 0, 1, ...),
// restarts the episode sums and zeroes the state keys. The pool fails only
// when no connection has been up for `unreachable_timeout` (0: fail at the
// first loss, the old fail-stop). What is not a lost server still fails the
// pool at once: an env that raised, a spec that differs, bad inference
// outputs; and every connection's first connect must succeed (a wrong
// address or token is a mistake to report, not to wait out). While
// reconnecting, a refused token counts as a failed attempt (another run's
// server may briefly hold the port).
//
// Threads: start(), close(), error(), replace_address(), drain_events() and
// the counters may be called from any thread. The connection threads are
// pure C++ (no Python, no GIL). The first failure in any of them is kept
// (error(), naming the address) and stops the others at once (a request in
// flight is aborted); the pool never closes the batcher or the queue, which
// belong to the caller.
//
// Shutdown: close() asks every thread to stop and joins them. A thread
// notices between calls: a blocked enqueue() is retried in short slices, so
// a full queue never holds close() up; an env request or a connect in flight
// is aborted (EnvClient::abort); a backoff wait is woken; a compute() ends
// when inference answers it. So close() returns promptly while inference is being
// served; if the inference thread may already be gone, close the batcher
// before (or concurrently with) close(). A thread whose compute() or
// enqueue() raises QueueClosed stops quietly (closing the pipeline is how an
// owner stops it); that is not an error. Safe order for an owner:
//   pool.close(); batcher.close(); queue.close();   // inference still running
//   batcher.close(); pool.close(); queue.close();   // always
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/batching_queue.h"
#include "core/dynamic_batcher.h"
#include "net/env_client.h"
#include "net/wire.h"

namespace beast {

// key -> dtype and per-env shape of each agent output (ordered, so unrolls are too).
using AgentSpec = std::map<std::string, ArraySpec>;

class ActorPool {
 public:
  // unroll_length T >= 1; at least one address. `learner_queue` and
  // `inference_batcher` must outlive the pool. Connection i resets its K
  // envs with seed + i * K (env j gets seed + i * K + j). `reply_timeout`
  // bounds the connect and every env reply (std::nullopt: for ever).
  // `agent_spec` must hold `action_key` and every key of `state_keys` (see the
  // file comment); std::invalid_argument otherwise. `auth_token` (empty: none)
  // answers servers that ask for one (EnvClient). `unreachable_timeout` (>= 0
  // seconds, may be infinite) is how long the pool may go without any
  // connection up before it fails (see the file comment).
  ActorPool(std::int64_t unroll_length, BatchingQueue* learner_queue, DynamicBatcher* inference_batcher,
            std::vector<std::string> env_server_addresses, std::int64_t seed, Timeout reply_timeout,
            AgentSpec agent_spec, std::string action_key, std::vector<std::string> state_keys = {},
            std::string auth_token = {}, double unreachable_timeout = kDefaultUnreachableSeconds);
  static constexpr double kDefaultUnreachableSeconds = 60.0;
  // close()
  ~ActorPool();

  ActorPool(const ActorPool&) = delete;
  ActorPool& operator=(const ActorPool&) = delete;

  // Spawns one thread per address. Idempotent; std::logic_error after close().
  void start();

  // Idempotent; stops and joins every thread (see the file comment).
  void close();

  // The first failure of any thread ("connection i (ADDRESS): KIND: what"),
  // or "" while there is none.
  std::string error() const;
  // Env transitions so far: each env step of a connection adds its K.
  std::int64_t num_steps() const { return num_steps_.load(); }
  // Unrolls enqueued so far.
  std::int64_t num_unrolls() const { return num_unrolls_.load(); }
  // Whether any connection thread is still running.
  bool running() const { return live_threads_.load() > 0; }
  // Sessions opened after a lost one, over all connections.
  std::int64_t num_reconnects() const { return num_reconnects_.load(); }
  // Unfinished unrolls dropped with a lost connection.
  std::int64_t num_dropped_unrolls() const { return num_dropped_unrolls_.load(); }
  // Connections up now.
  std::int64_t num_connected() const { return num_connected_.load(); }
  std::int64_t unroll_length() const { return unroll_length_; }
  // Each connection's current address (replace_address changes them).
  std::vector<std::string> addresses() const;

  // Points every connection now at `old_address` to `new_address` (a
  // replacement server), waking those waiting to reconnect; a connection
  // still up on the old address moves when it next loses it. Returns how
  // many connections were pointed over.
  std::int64_t replace_address(const std::string& old_address, const std::string& new_address);

  // The event lines since the last call (lost, reconnected, replaced), oldest
  // first; at most kMaxEvents are kept, and a line says how many were dropped.
  std::vector<std::string> drain_events();
  static constexpr std::size_t kMaxEvents = 256;

 private:
  void run(std::size_t index);
  void loop(std::size_t index);
  // One session on `client`: reset, then unrolls until stopped (returns) or
  // failed (throws). `filling` says whether an unroll was being written.
  void run_session(std::size_t index, EnvClient& client, std::int64_t session, bool& filling);
  // A connected client to `address`, registered so that stop_all() can abort
  // it (also mid-connect); nullptr if the pool is stopping.
  std::unique_ptr<EnvClient> open(std::size_t index, const std::string& address);
  void unregister(std::size_t index);
  // Backoff until a new session is up (nullptr: stopping); throws when no
  // connection has been up for unreachable_timeout_.
  std::unique_ptr<EnvClient> reconnect(std::size_t index, std::string last_failure);
  // A session came up / went down: num_connected_ and all_down_since_.
  void connected(bool up);
  void event(std::string line);
  // Records `message` as the error unless one is already kept; stops all.
  void fail(const std::string& message);
  // stop_, abort every client, wake every backoff wait.
  void stop_all();
  // Checks that every connection serves the same K and specs.
  void check_spec(const std::string& address, const EnvSpec& spec);

  const std::int64_t unroll_length_;
  BatchingQueue* const queue_;
  DynamicBatcher* const batcher_;
  const std::vector<std::string> addresses_;  // as given (current_ holds them now)
  const std::int64_t seed_;
  const Timeout reply_timeout_;
  const AgentSpec agent_spec_;
  const std::string action_key_;
  const std::vector<std::string> state_keys_;
  const std::string auth_token_;
  const double unreachable_timeout_;

  std::mutex join_mu_;     // held by close() while it joins, so a second close() waits too
  mutable std::mutex mu_;  // guards everything below but the atomics
  std::condition_variable wake_;  // backoff waits: stop, or a replaced address
  std::vector<std::string> current_;  // each connection's address now
  std::vector<EnvClient*> clients_;   // each connection's client, while it exists
  std::deque<std::string> events_;
  std::int64_t dropped_events_ = 0;
  std::chrono::steady_clock::time_point all_down_since_;  // when num_connected_ last became 0
  std::vector<std::thread> threads_;
  bool started_ = false;
  bool closed_ = false;
  std::string error_;
  std::optional<EnvSpec> first_spec_;
  std::string first_spec_address_;

  std::atomic<bool> stop_{false};
  std::atomic<std::int64_t> num_steps_{0};
  std::atomic<std::int64_t> num_unrolls_{0};
  std::atomic<std::int64_t> live_threads_{0};
  std::atomic<std::int64_t> num_reconnects_{0};
  std::atomic<std::int64_t> num_dropped_unrolls_{0};
  std::atomic<std::int64_t> num_connected_{0};
};

}  // namespace beast
