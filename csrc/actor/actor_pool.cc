#include "actor/actor_pool.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "net/env_client.h"
#include "net/socket.h"

namespace beast {
namespace {

// A blocked enqueue() wakes this often to see whether close() was called.
constexpr std::chrono::duration<double> kEnqueueSlice{0.1};
// Reconnect backoff: the first wait after a loss, doubling up to the last.
constexpr std::chrono::duration<double> kFirstBackoff{0.05};
constexpr std::chrono::duration<double> kMaxBackoff{2.0};

// No connection has been up for the pool's unreachable_timeout.
class Unreachable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A lost server (reconnect), as opposed to a failure that stops the pool.
bool is_lost_server(const std::exception& e) {
  return dynamic_cast<const SocketError*>(&e) != nullptr || dynamic_cast<const ProtocolError*>(&e) != nullptr;
}

std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f s", seconds);
  return text;
}

// --- dtype casts (the env and the inference side may use other widths) ---

template <typename In, typename Out>
void convert(const void* in, void* out, std::int64_t n) {
  const In* src = static_cast<const In*>(in);
  Out* dst = static_cast<Out*>(out);
  for (std::int64_t i = 0; i < n; ++i) dst[i] = static_cast<Out>(src[i]);
}

template <typename Out>
void convert_from(DType from, const void* in, void* out, std::int64_t n) {
  switch (from) {
    case DType::kBool: return convert<bool, Out>(in, out, n);
    case DType::kInt8: return convert<std::int8_t, Out>(in, out, n);
    case DType::kUInt8: return convert<std::uint8_t, Out>(in, out, n);
    case DType::kInt16: return convert<std::int16_t, Out>(in, out, n);
    case DType::kInt32: return convert<std::int32_t, Out>(in, out, n);
    case DType::kInt64: return convert<std::int64_t, Out>(in, out, n);
    case DType::kFloat32: return convert<float, Out>(in, out, n);
    case DType::kFloat64: return convert<double, Out>(in, out, n);
    case DType::kFloat16: break;
  }
  throw std::invalid_argument("cannot convert float16 data");
}

bool is_floating(DType dtype) {
  return dtype == DType::kFloat16 || dtype == DType::kFloat32 || dtype == DType::kFloat64;
}

// `src` itself if it already has dtype `to`, else a converted copy.
Array cast(const Array& src, DType to) {
  if (src.dtype() == to) return src;
  Array dst = Array::empty(to, src.shape());
  const std::int64_t n = src.numel();
  switch (to) {
    case DType::kBool: convert_from<bool>(src.dtype(), src.data(), dst.data(), n); break;
    case DType::kInt8: convert_from<std::int8_t>(src.dtype(), src.data(), dst.data(), n); break;
    case DType::kUInt8: convert_from<std::uint8_t>(src.dtype(), src.data(), dst.data(), n); break;
    case DType::kInt16: convert_from<std::int16_t>(src.dtype(), src.data(), dst.data(), n); break;
    case DType::kInt32: convert_from<std::int32_t>(src.dtype(), src.data(), dst.data(), n); break;
    case DType::kInt64: convert_from<std::int64_t>(src.dtype(), src.data(), dst.data(), n); break;
    case DType::kFloat32: convert_from<float>(src.dtype(), src.data(), dst.data(), n); break;
    case DType::kFloat64: convert_from<double>(src.dtype(), src.data(), dst.data(), n); break;
    case DType::kFloat16: throw std::invalid_argument("cannot convert to float16");
  }
  return dst;
}

// --- checks on what the env server and the inference side send ---

const Array& require(const ArrayMap& arrays, const std::string& key, const Shape& shape, const char* from) {
  auto it = arrays.find(key);
  if (it == arrays.end()) throw std::invalid_argument(std::string(from) + " has no '" + key + "'");
  if (it->second.shape() != shape) {
    throw std::invalid_argument(std::string(from) + " '" + key + "' must be " + shape_string(shape) + ", got " +
                                shape_string(it->second.shape()));
  }
  return it->second;
}

Shape with_leading(std::int64_t leading, const Shape& shape) {
  Shape out{leading};
  out.insert(out.end(), shape.begin(), shape.end());
  return out;
}

// "KIND: what", KIND being the Python exception the error would map to alone.
std::string describe(const std::exception& e) {
  if (dynamic_cast<const RemoteError*>(&e)) return std::string("env raised: ") + e.what();
  if (dynamic_cast<const Unreachable*>(&e)) return std::string("ConnectionError: ") + e.what();
  if (dynamic_cast<const AuthError*>(&e)) return std::string("PermissionError: ") + e.what();
  if (dynamic_cast<const SocketTimeout*>(&e)) return std::string("TimeoutError: ") + e.what();
  if (dynamic_cast<const SocketError*>(&e)) return std::string("ConnectionError: ") + e.what();
  if (dynamic_cast<const ProtocolError*>(&e)) return std::string("ConnectionError: protocol error: ") + e.what();
  if (dynamic_cast<const BatchFailed*>(&e)) return std::string("inference failed: ") + e.what();
  if (dynamic_cast<const QueueTimeout*>(&e)) return std::string("TimeoutError: ") + e.what();
  if (dynamic_cast<const std::invalid_argument*>(&e)) return std::string("ValueError: ") + e.what();
  return std::string("error: ") + e.what();
}

// The latest env output with its running episode sums: one entry's env half.
struct EnvStep {
  Array obs;             // [K, *obs_shape], the env's dtype
  Array reward;          // [K] f32
  Array terminated;      // [K] bool
  Array truncated;       // [K] bool
  Array episode_return;  // [K] f32
  Array episode_step;    // [K] int32
  Array game_over;       // [K] bool: the running sums restart after it (not written to unrolls)
};

Array filled(DType dtype, std::int64_t k, double value) {
  Array scalar = Array::empty(DType::kFloat64, {k});
  auto* p = static_cast<double*>(scalar.data());
  for (std::int64_t i = 0; i < k; ++i) p[i] = value;
  return cast(scalar, dtype);
}

Array checked_obs(const ArrayMap& out, const EnvSpec& spec) {
  const Array& obs = require(out, "obs", with_leading(spec.num_envs, spec.observation.shape), "env output");
  if (obs.dtype() != spec.observation.dtype) {
    throw std::invalid_argument(std::string("env output 'obs' must be ") + dtype_name(spec.observation.dtype) +
                                " (the spec's), got " + dtype_name(obs.dtype()));
  }
  return obs;
}

EnvStep first_step(const ArrayMap& reset, const EnvSpec& spec) {
  const std::int64_t k = spec.num_envs;
  return {checked_obs(reset, spec),         filled(DType::kFloat32, k, 0), filled(DType::kBool, k, 0),
          filled(DType::kBool, k, 0),       filled(DType::kFloat32, k, 0), filled(DType::kInt32, k, 0),
          filled(DType::kBool, k, 0)};
}

// UnrollWorker._env_step: after an ended episode this step is the reset, and
// the running sums restart at 0; otherwise they add this step's reward / 1.
// "Ended" is the env's optional "game_over" [K] bool (--episodic-life: a lost
// life is terminated, yet the game's return goes on), else terminated|truncated.
EnvStep next_step(const EnvStep& previous, const ArrayMap& out, const EnvSpec& spec) {
  const std::int64_t k = spec.num_envs;
  const Shape per_env{k};
  EnvStep step;
  step.obs = checked_obs(out, spec);
  const Array reward = cast(require(out, "reward", per_env, "env output"), DType::kFloat64);
  step.reward = cast(reward, DType::kFloat32);
  step.terminated = cast(require(out, "terminated", per_env, "env output"), DType::kBool);
  step.truncated = cast(require(out, "truncated", per_env, "env output"), DType::kBool);
  step.episode_return = Array::empty(DType::kFloat32, per_env);
  step.episode_step = Array::empty(DType::kInt32, per_env);
  if (out.count("game_over") != 0) {
    step.game_over = cast(require(out, "game_over", per_env, "env output"), DType::kBool);
  } else {
    step.game_over = Array::empty(DType::kBool, per_env);
    const auto* t = static_cast<const bool*>(step.terminated.data());
    const auto* tr = static_cast<const bool*>(step.truncated.data());
    auto* g = static_cast<bool*>(step.game_over.data());
    for (std::int64_t i = 0; i < k; ++i) g[i] = t[i] || tr[i];
  }
  const auto* r = static_cast<const double*>(reward.data());
  const auto* ended = static_cast<const bool*>(previous.game_over.data());
  const auto* ret0 = static_cast<const float*>(previous.episode_return.data());
  const auto* len0 = static_cast<const std::int32_t*>(previous.episode_step.data());
  auto* ret = static_cast<float*>(step.episode_return.data());
  auto* len = static_cast<std::int32_t*>(step.episode_step.data());
  for (std::int64_t i = 0; i < k; ++i) {
    // float64 sum then float32, as NumPy computes it in UnrollWorker.
    ret[i] = ended[i] ? 0.0f : static_cast<float>(static_cast<double>(ret0[i]) + r[i]);
    len[i] = ended[i] ? 0 : len0[i] + 1;
  }
  return step;
}

// compute()'s outputs, checked against the agent spec (exactly its keys, each
// [K, *shape]) and cast to its dtypes; a float given for an integer field is
// refused, not truncated.
ArrayMap checked_agent(const ArrayMap& out, std::int64_t k, const AgentSpec& agent_spec) {
  for (const auto& [key, array] : out) {
    if (agent_spec.count(key) == 0) {
      std::string expected;
      for (const auto& [name, field] : agent_spec) expected += (expected.empty() ? "" : ", ") + name;
      throw std::invalid_argument("inference output has unexpected key '" + key + "' (the agent spec has " +
                                  expected + ")");
    }
  }
  ArrayMap agent;
  for (const auto& [key, field] : agent_spec) {
    const Array& value = require(out, key, with_leading(k, field.shape), "inference output");
    if (is_floating(value.dtype()) && !is_floating(field.dtype)) {
      throw std::invalid_argument("inference output '" + key + "' must be " + dtype_name(field.dtype) + ", got " +
                                  dtype_name(value.dtype()));
    }
    agent[key] = cast(value, field.dtype);
  }
  return agent;
}

// A new unroll: the env half plus every agent key, [T+1, K, ...]. It is fully
// written before it is enqueued, so it is not poisoned.
ArrayMap allocate_unroll(std::int64_t length, const EnvSpec& spec, const AgentSpec& agent_spec) {
  const std::int64_t k = spec.num_envs;
  auto leading = [&](const Shape& shape) {
    Shape out{length, k};
    out.insert(out.end(), shape.begin(), shape.end());
    return out;
  };
  const Shape per_env{length, k};
  ArrayMap unroll{
      {"obs", Array::empty(spec.observation.dtype, leading(spec.observation.shape))},
      {"reward", Array::empty(DType::kFloat32, per_env)},
      {"terminated", Array::empty(DType::kBool, per_env)},
      {"truncated", Array::empty(DType::kBool, per_env)},
      {"episode_return", Array::empty(DType::kFloat32, per_env)},
      {"episode_step", Array::empty(DType::kInt32, per_env)},
  };
  for (const auto& [key, field] : agent_spec) unroll[key] = Array::empty(field.dtype, leading(field.shape));
  return unroll;
}

void write_entry(ArrayMap& unroll, const std::string& key, std::int64_t t, const Array& value) {
  Array& dst = unroll.at(key);
  if (value.dtype() != dst.dtype() || value.nbytes() * static_cast<std::size_t>(dst.shape()[0]) != dst.nbytes()) {
    throw std::logic_error("ActorPool: entry of '" + key + "' does not fit its unroll");
  }
  std::memcpy(static_cast<std::byte*>(dst.data()) + static_cast<std::size_t>(t) * value.nbytes(), value.data(),
              value.nbytes());
}

void write_entry(ArrayMap& unroll, std::int64_t t, const EnvStep& step, const ArrayMap& agent) {
  write_entry(unroll, "obs", t, step.obs);
  write_entry(unroll, "reward", t, step.reward);
  write_entry(unroll, "terminated", t, step.terminated);
  write_entry(unroll, "truncated", t, step.truncated);
  write_entry(unroll, "episode_return", t, step.episode_return);
  write_entry(unroll, "episode_step", t, step.episode_step);
  for (const auto& [key, value] : agent) write_entry(unroll, key, t, value);
}

}  // namespace

ActorPool::ActorPool(std::int64_t unroll_length, BatchingQueue* learner_queue, DynamicBatcher* inference_batcher,
                     std::vector<std::string> env_server_addresses, std::int64_t seed, Timeout reply_timeout,
                     AgentSpec agent_spec, std::string action_key, std::vector<std::string> state_keys,
                     std::string auth_token, double unreachable_timeout)
    : unroll_length_(unroll_length),
      queue_(learner_queue),
      batcher_(inference_batcher),
      addresses_(std::move(env_server_addresses)),
      seed_(seed),
      reply_timeout_(reply_timeout),
      agent_spec_(std::move(agent_spec)),
      action_key_(std::move(action_key)),
      state_keys_(std::move(state_keys)),
      auth_token_(std::move(auth_token)),
      unreachable_timeout_(unreachable_timeout),
      current_(addresses_),
      clients_(addresses_.size(), nullptr) {
  if (!(unreachable_timeout_ >= 0)) {  // NaN too
    throw std::invalid_argument("ActorPool: unreachable_timeout must be >= 0 seconds");
  }
  if (unroll_length_ < 1) {
    throw std::invalid_argument("ActorPool: unroll_length must be >= 1, got " + std::to_string(unroll_length_));
  }
  if (addresses_.empty()) throw std::invalid_argument("ActorPool: needs at least one env server address");
  if (queue_ == nullptr || batcher_ == nullptr) throw std::invalid_argument("ActorPool: queue and batcher required");
  if (agent_spec_.count(action_key_) == 0) {
    throw std::invalid_argument("ActorPool: the agent spec has no action key '" + action_key_ + "'");
  }
  for (const std::string& key : state_keys_) {
    if (agent_spec_.count(key) == 0) {
      throw std::invalid_argument("ActorPool: state key '" + key + "' is not in the agent spec");
    }
    if (key == action_key_) throw std::invalid_argument("ActorPool: the action cannot be a state key");
  }
  for (const auto& [key, field] : agent_spec_) {
    for (const char* env_key : {"obs", "reward", "terminated", "truncated", "episode_return", "episode_step"}) {
      if (key == env_key) throw std::invalid_argument("ActorPool: agent key '" + key + "' clashes with an env key");
    }
    for (std::int64_t dim : field.shape) {
      if (dim < 0) throw std::invalid_argument("ActorPool: agent key '" + key + "' has a negative dim");
    }
  }
  deadline_after(reply_timeout_, "ActorPool");  // refuses a negative or NaN timeout now
}

ActorPool::~ActorPool() { close(); }

void ActorPool::start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) throw std::logic_error("ActorPool: start() after close()");
  if (started_) return;
  started_ = true;
  all_down_since_ = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < addresses_.size(); ++i) {
    live_threads_.fetch_add(1);
    threads_.emplace_back(&ActorPool::run, this, i);
  }
}

void ActorPool::close() {
  std::lock_guard<std::mutex> join(join_mu_);
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    threads.swap(threads_);
  }
  stop_all();
  for (std::thread& thread : threads) thread.join();
}

void ActorPool::stop_all() {
  stop_.store(true);  // before the sweep: open() registers only while it is false
  std::lock_guard<std::mutex> lock(mu_);
  for (EnvClient* client : clients_) {
    if (client != nullptr) client->abort();
  }
  wake_.notify_all();
}

std::string ActorPool::error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

std::vector<std::string> ActorPool::addresses() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

std::int64_t ActorPool::replace_address(const std::string& old_address, const std::string& new_address) {
  Address::parse(new_address);  // a SocketError now rather than in every reconnect
  std::int64_t moved = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (std::size_t i = 0; i < current_.size(); ++i) {
      if (current_[i] == old_address) {
        current_[i] = new_address;
        ++moved;
      }
    }
  }
  if (moved > 0) {
    event("env server " + old_address + " replaced by " + new_address + " (" + std::to_string(moved) +
          " connection" + (moved == 1 ? "" : "s") + ")");
    wake_.notify_all();
  }
  return moved;
}

std::vector<std::string> ActorPool::drain_events() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> lines;
  if (dropped_events_ > 0) {
    lines.push_back(std::to_string(dropped_events_) + " older pool events were dropped");
    dropped_events_ = 0;
  }
  lines.insert(lines.end(), events_.begin(), events_.end());
  events_.clear();
  return lines;
}

void ActorPool::event(std::string line) {
  std::lock_guard<std::mutex> lock(mu_);
  if (events_.size() == kMaxEvents) {
    events_.pop_front();
    ++dropped_events_;
  }
  events_.push_back(std::move(line));
}

void ActorPool::fail(const std::string& message) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (error_.empty()) error_ = message;
  }
  stop_all();
}

void ActorPool::connected(bool up) {
  std::lock_guard<std::mutex> lock(mu_);
  if (up) {
    num_connected_.fetch_add(1);
  } else if (num_connected_.fetch_sub(1) == 1) {
    all_down_since_ = std::chrono::steady_clock::now();
  }
}

void ActorPool::check_spec(const std::string& address, const EnvSpec& spec) {
  const ArraySpec& action = agent_spec_.at(action_key_);
  if (action.shape != spec.action.shape) {
    throw std::invalid_argument("serves actions of shape " + shape_string(spec.action.shape) +
                                " but the agent spec's '" + action_key_ + "' is " + shape_string(action.shape));
  }
  if (is_floating(action.dtype) && !is_floating(spec.action.dtype)) {
    throw std::invalid_argument(std::string("serves ") + dtype_name(spec.action.dtype) + " actions but the agent's '" +
                                action_key_ + "' is " + dtype_name(action.dtype));
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!first_spec_) {
    first_spec_ = spec;
    first_spec_address_ = address;
    return;
  }
  const EnvSpec& first = *first_spec_;
  if (first.num_envs != spec.num_envs || first.num_actions != spec.num_actions ||
      first.observation != spec.observation || first.action != spec.action) {
    auto text = [](const EnvSpec& s) {
      return "num_envs " + std::to_string(s.num_envs) + ", obs " + dtype_name(s.observation.dtype) + " " +
             shape_string(s.observation.shape) + ", action " + dtype_name(s.action.dtype) + " " +
             shape_string(s.action.shape);
    };
    throw std::invalid_argument("serves " + text(spec) + " but " + first_spec_address_ + " serves " + text(first) +
                                "; every env server must serve the same");
  }
}

void ActorPool::run(std::size_t index) {
  auto name = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    return "connection " + std::to_string(index) + " (" + current_[index] + "): ";
  };
  try {
    loop(index);
  } catch (const QueueClosed&) {
    // The owner closed the batcher or the queue: a stop, not a failure.
  } catch (const std::exception& e) {
    if (!stop_.load()) fail(name() + describe(e));
  } catch (...) {
    if (!stop_.load()) fail(name() + "unknown error");
  }
  live_threads_.fetch_sub(1);
}

std::unique_ptr<EnvClient> ActorPool::open(std::size_t index, const std::string& address) {
  auto client = std::make_unique<EnvClient>(EnvClient::kDeferred, address, reply_timeout_, kDefaultMaxFrameBytes,
                                            auth_token_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_.load()) return nullptr;
    clients_[index] = client.get();
  }
  try {
    client->connect();
  } catch (...) {
    unregister(index);
    throw;
  }
  return client;
}

void ActorPool::unregister(std::size_t index) {
  std::lock_guard<std::mutex> lock(mu_);
  clients_[index] = nullptr;
}

void ActorPool::loop(std::size_t index) {
  const std::string prefix = "connection " + std::to_string(index);
  std::unique_ptr<EnvClient> client = open(index, addresses_[index]);  // the first connect must succeed
  for (std::int64_t session = 0; client != nullptr; ++session) {
    connected(true);
    bool filling = false;
    try {
      run_session(index, *client, session, filling);
      connected(false);
      break;  // stopping
    } catch (const std::exception& e) {
      connected(false);
      if (stop_.load() || unreachable_timeout_ == 0 || !is_lost_server(e)) {
        unregister(index);
        throw;
      }
      if (filling) num_dropped_unrolls_.fetch_add(1);
      const std::string failure = describe(e);
      event(prefix + " (" + client->address() + ") lost: " + failure +
            (filling ? "; its unfinished unroll is dropped" : "") + "; reconnecting");
      unregister(index);
      client.reset();  // says CLOSE if it still can
      client = reconnect(index, failure);
    }
  }
  unregister(index);
}

std::unique_ptr<EnvClient> ActorPool::reconnect(std::size_t index, std::string last_failure) {
  const auto lost_at = std::chrono::steady_clock::now();
  auto delay = std::chrono::duration_cast<std::chrono::steady_clock::duration>(kFirstBackoff);
  const auto max_delay = std::chrono::duration_cast<std::chrono::steady_clock::duration>(kMaxBackoff);
  for (std::int64_t attempt = 1;; ++attempt) {
    std::string address;
    {
      std::unique_lock<std::mutex> lock(mu_);
      const std::string before = current_[index];
      wake_.wait_for(lock, delay, [&] { return stop_.load() || current_[index] != before; });
      if (stop_.load()) return nullptr;
      const double down = std::chrono::duration<double>(std::chrono::steady_clock::now() - all_down_since_).count();
      if (num_connected_.load() == 0 && down >= unreachable_timeout_) {
        throw Unreachable("no env server has been reachable for " + seconds_text(down) + " (unreachable_timeout " +
                          seconds_text(unreachable_timeout_) + "); last failure: " + last_failure);
      }
      address = current_[index];
    }
    try {
      std::unique_ptr<EnvClient> client = open(index, address);
      if (client != nullptr) {
        num_reconnects_.fetch_add(1);
        const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - lost_at).count();
        event("connection " + std::to_string(index) + " reconnected to " + address + " after " +
              std::to_string(attempt) + (attempt == 1 ? " attempt" : " attempts") + " (" + seconds_text(took) + ")");
      }
      return client;
    } catch (const std::exception& e) {
      if (!is_lost_server(e) && dynamic_cast<const AuthError*>(&e) == nullptr) throw;
      last_failure = describe(e);
    }
    delay = std::min(2 * delay, max_delay);
  }
}

void ActorPool::run_session(std::size_t index, EnvClient& client, std::int64_t session, bool& filling) {
  const EnvSpec spec = client.spec();
  check_spec(client.address(), spec);
  const std::int64_t k = spec.num_envs;
  const auto n = static_cast<std::int64_t>(addresses_.size());
  if (stop_.load()) return;
  EnvStep step = first_step(client.reset(seed_ + (session * n + static_cast<std::int64_t>(index)) * k), spec);
  // Agent outputs fed back as inputs (a recurrent model's core state): the value entering
  // the current step, zeros at first; unrolls record the entering value.
  ArrayMap state;
  for (const std::string& key : state_keys_) {
    const ArraySpec& field = agent_spec_.at(key);
    Array zeros = Array::empty(field.dtype, with_leading(k, field.shape));
    std::memset(zeros.data(), 0, zeros.nbytes());
    state[key] = std::move(zeros);
  }
  auto act = [&] {
    ArrayMap inputs{{"obs", step.obs}, {"reward", step.reward}, {"terminated", step.terminated},
                    {"truncated", step.truncated}};
    for (const auto& [key, value] : state) inputs[key] = value;
    ArrayMap agent = checked_agent(batcher_->compute(std::move(inputs)), k, agent_spec_);
    for (auto& [key, value] : state) std::swap(agent.at(key), value);  // record the entering value
    return agent;
  };
  if (stop_.load()) return;
  ArrayMap agent = act();
  for (;;) {
    ArrayMap unroll = allocate_unroll(unroll_length_ + 1, spec, agent_spec_);
    filling = true;
    write_entry(unroll, 0, step, agent);  // the previous unroll's last entry
    for (std::int64_t t = 1; t <= unroll_length_; ++t) {
      if (stop_.load()) return;
      ArrayMap out = client.step(cast(agent.at(action_key_), spec.action.dtype));
      num_steps_.fetch_add(k);
      step = next_step(step, out, spec);
      if (stop_.load()) return;
      agent = act();
      write_entry(unroll, t, step, agent);
    }
    for (;;) {  // in slices, so that close() is seen while the queue is full
      if (stop_.load()) return;
      try {
        queue_->enqueue(unroll, kEnqueueSlice);
        break;
      } catch (const QueueTimeout&) {
      }
    }
    filling = false;
    num_unrolls_.fetch_add(1);
  }
}

}  // namespace beast
