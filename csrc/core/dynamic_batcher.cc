#include "core/dynamic_batcher.h"

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <map>
#include <mutex>
#include <unordered_set>
#include <utility>

#include "core/deadline.h"
#include "core/stack.h"

namespace beast {
namespace detail {

struct Request {
  enum class Status {
    kPending,    // in the pending queue
    kTaken,      // inside a Batch, waiting for it to resolve
    kDone,       // `outputs` holds its row
    kFailed,     // its batch failed; `error` says why
    kClosed,     // close() ended it
    kAbandoned,  // its caller timed out while it was inside a Batch
  };

  ArrayMap inputs;    // moved out when the request is taken into a batch
  ArrayMap outputs;   // set with kDone
  std::string error;  // set with kFailed
  Status status = Status::kPending;
  std::condition_variable resolved;  // its caller waits here, on the state's mutex
};

struct BatcherState {
  std::mutex mu;
  std::condition_variable not_full;   // callers wait here for room
  std::condition_variable not_empty;  // inference threads wait here for requests
  std::deque<std::shared_ptr<Request>> pending;
  // Requests inside Batches that have not resolved yet, so close() can end them.
  std::unordered_set<std::shared_ptr<Request>> in_flight;
  std::map<std::string, ArraySpec> schema;  // empty until the first request
  bool closed = false;
};

}  // namespace detail

namespace {

using detail::Request;
using Status = detail::Request::Status;

bool finished(Status status) {
  return status == Status::kDone || status == Status::kFailed || status == Status::kClosed;
}

std::string key_list(const std::map<std::string, ArraySpec>& schema) {
  std::string s;
  for (const auto& entry : schema) s += (s.empty() ? "'" : ", '") + entry.first + "'";
  return s;
}

// Sets the schema from the first request, checks every later one. Holds the state's mutex.
void check_schema_locked(std::map<std::string, ArraySpec>& schema, const ArrayMap& inputs) {
  if (inputs.empty()) throw std::invalid_argument("DynamicBatcher.compute: the inputs have no arrays");
  if (schema.empty()) {
    for (const auto& [key, array] : inputs) schema.emplace(key, array.spec());
    return;
  }
  const std::string keys = " (the batcher's keys: " + key_list(schema) + ")";
  for (const auto& entry : schema) {
    if (inputs.count(entry.first) == 0) {
      throw SchemaError(entry.first, "DynamicBatcher.compute: the inputs are missing key '" + entry.first + "'" + keys);
    }
  }
  for (const auto& [key, array] : inputs) {
    const auto it = schema.find(key);
    if (it == schema.end()) {
      throw SchemaError(key, "DynamicBatcher.compute: the inputs have unexpected key '" + key + "'" + keys);
    }
    if (array.spec() != it->second) {
      throw SchemaError(key, "DynamicBatcher.compute: key '" + key + "' is " + dtype_name(array.dtype()) + " " +
                                 shape_string(array.shape()) + ", the first request's was " +
                                 dtype_name(it->second.dtype) + " " + shape_string(it->second.shape));
    }
  }
}

}  // namespace

// --- Batch ------------------------------------------------------------------------------

Batch::Batch(std::shared_ptr<detail::BatcherState> state, std::vector<std::shared_ptr<Request>> requests)
    : state_(std::move(state)), requests_(std::move(requests)) {}

Batch::~Batch() {
  bool was_resolved;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    was_resolved = resolved_;
    resolved_ = true;
  }
  if (!was_resolved) finish({}, failure("dropped without outputs (neither set_outputs nor set_error was called)"));
}

bool Batch::resolved() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return resolved_;
}

void Batch::set_outputs(const ArrayMap& outputs) {
  claim("set_outputs");
  std::string problem;
  if (outputs.empty()) problem = "set_outputs got no arrays";
  for (const auto& [key, array] : outputs) {
    if (array.ndim() == 0 || array.shape()[0] != size()) {
      problem = "set_outputs got key '" + key + "' with shape " + shape_string(array.shape()) +
                ", but its axis 0 must be the batch size " + std::to_string(size()) + " (batch size mismatch)";
      break;
    }
  }
  if (!problem.empty()) {
    finish({}, failure(problem));
    throw std::invalid_argument("Batch." + problem + "; the batch's callers were failed");
  }

  std::vector<ArrayMap> rows(requests_.size());
  try {
    for (const auto& [key, array] : outputs) {
      for (std::size_t i = 0; i < rows.size(); ++i) rows[i].emplace(key, copy_row(array, static_cast<std::int64_t>(i)));
    }
  } catch (const std::exception& e) {  // out of memory: the callers must not wait for rows that never come
    finish({}, failure(std::string("copying the outputs failed: ") + e.what()));
    throw;
  }
  finish(std::move(rows), "");
}

void Batch::set_error(const std::string& message) {
  claim("set_error");
  finish({}, failure(message));
}

void Batch::claim(const char* method) {
  std::lock_guard<std::mutex> lock(state_->mu);
  if (resolved_) {
    throw std::logic_error(std::string("Batch.") + method +
                           ": the batch was already resolved (set_outputs or set_error was called before)");
  }
  resolved_ = true;
}

// `rows` (C++-owned copies) outlive `lock`, though destroying them runs no foreign code.
void Batch::finish(std::vector<ArrayMap> rows, const std::string& error) {
  std::lock_guard<std::mutex> lock(state_->mu);
  for (std::size_t i = 0; i < requests_.size(); ++i) {
    Request& request = *requests_[i];
    state_->in_flight.erase(requests_[i]);
    if (request.status != Status::kTaken) continue;  // abandoned by its caller, or ended by close()
    if (rows.empty()) {
      request.error = error;
      request.status = Status::kFailed;
    } else {
      request.outputs = std::move(rows[i]);
      request.status = Status::kDone;
    }
    request.resolved.notify_one();
  }
}

std::string Batch::failure(const std::string& why) const {
  return "DynamicBatcher: batch of " + std::to_string(size()) + " failed: " + why;
}

// --- DynamicBatcher ---------------------------------------------------------------------

DynamicBatcher::DynamicBatcher(std::int64_t max_pending)
    : max_pending_(max_pending), state_(std::make_shared<detail::BatcherState>()) {
  if (max_pending < 1) {
    throw std::invalid_argument("DynamicBatcher: max_pending must be >= 1, got " + std::to_string(max_pending));
  }
}

DynamicBatcher::~DynamicBatcher() { close(); }

// Locals are destroyed in reverse order, so on every exit `lock` is released
// before `request` (and with it any inputs still borrowed) is destroyed; on a
// throw before the inputs were moved, the parameter `inputs` goes later still.
ArrayMap DynamicBatcher::compute(ArrayMap inputs, Timeout timeout) {
  const Deadline deadline = deadline_after(timeout, "DynamicBatcher.compute");
  detail::BatcherState& s = *state_;
  auto request = std::make_shared<Request>();
  std::unique_lock<std::mutex> lock(s.mu);
  if (s.closed) throw QueueClosed("DynamicBatcher.compute: the batcher is closed");
  check_schema_locked(s.schema, inputs);
  wait_until(s.not_full, lock, deadline,
             [&] { return s.closed || static_cast<std::int64_t>(s.pending.size()) < max_pending_; });
  if (s.closed) throw QueueClosed("DynamicBatcher.compute: the batcher was closed while waiting for room");
  if (static_cast<std::int64_t>(s.pending.size()) >= max_pending_) {
    throw QueueTimeout("DynamicBatcher.compute: the pending queue stayed full (max_pending " +
                       std::to_string(max_pending_) + ") until the timeout");
  }
  request->inputs = std::move(inputs);
  s.pending.push_back(request);
  s.not_empty.notify_all();  // inference threads may wait for different min_items

  wait_until(request->resolved, lock, deadline, [&] { return finished(request->status); });
  switch (request->status) {
    case Status::kDone:
      return std::move(request->outputs);
    case Status::kFailed:
      throw BatchFailed(request->error);
    case Status::kClosed:
      throw QueueClosed("DynamicBatcher.compute: the batcher was closed before this request was computed");
    case Status::kPending:  // not taken yet: withdraw it, so no batch ever sees it
      s.pending.erase(std::find(s.pending.begin(), s.pending.end(), request));
      s.not_full.notify_one();
      throw QueueTimeout("DynamicBatcher.compute: no inference thread took the request before the timeout");
    case Status::kTaken:  // its batch will skip it when it resolves
    case Status::kAbandoned:
      request->status = Status::kAbandoned;
      throw QueueTimeout("DynamicBatcher.compute: the request's batch was not computed before the timeout");
  }
  throw std::logic_error("DynamicBatcher.compute: unknown request status");
}

std::unique_ptr<Batch> DynamicBatcher::get_batch(std::int64_t min_items, std::int64_t max_items, Timeout timeout) {
  if (min_items < 1 || min_items > max_pending_) {
    throw std::invalid_argument("DynamicBatcher.get_batch: min_items must be in [1, max_pending=" +
                                std::to_string(max_pending_) + "], got " + std::to_string(min_items));
  }
  if (max_items < min_items) {
    throw std::invalid_argument("DynamicBatcher.get_batch: max_items (" + std::to_string(max_items) +
                                ") must be >= min_items (" + std::to_string(min_items) + ")");
  }
  const Deadline deadline = deadline_after(timeout, "DynamicBatcher.get_batch");
  detail::BatcherState& s = *state_;
  std::vector<std::shared_ptr<Request>> taken;
  std::vector<ArrayMap> rows;
  {
    std::unique_lock<std::mutex> lock(s.mu);
    wait_until(s.not_empty, lock, deadline,
               [&] { return s.closed || static_cast<std::int64_t>(s.pending.size()) >= min_items; });
    if (s.closed) throw QueueClosed("DynamicBatcher.get_batch: the batcher is closed");
    if (s.pending.empty()) throw QueueTimeout("DynamicBatcher.get_batch: no request arrived before the timeout");
    const auto n = std::min(static_cast<std::int64_t>(s.pending.size()), max_items);
    for (std::int64_t i = 0; i < n; ++i) {
      std::shared_ptr<Request> request = std::move(s.pending.front());
      s.pending.pop_front();
      request->status = Status::kTaken;
      rows.push_back(std::move(request->inputs));
      s.in_flight.insert(request);
      taken.push_back(std::move(request));
    }
  }
  s.not_full.notify_all();

  // From here the Batch owns the requests: should stacking throw, destroying
  // it fails them rather than leaving their callers waiting.
  std::unique_ptr<Batch> batch(new Batch(state_, std::move(taken)));
  // Stacking copies every byte; done outside the lock so callers and other
  // inference threads are not held up.
  for (const auto& entry : rows.front()) batch->inputs_.emplace(entry.first, join_arrays(rows, entry.first, 0, true));
  return batch;
}

void DynamicBatcher::close() {
  detail::BatcherState& s = *state_;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.closed = true;
    // No request is destroyed here: each pending one is still held by its
    // waiting caller, each in-flight one by its Batch.
    for (const auto& request : s.pending) {
      request->status = Status::kClosed;
      request->resolved.notify_one();
    }
    for (const auto& request : s.in_flight) {
      if (request->status != Status::kTaken) continue;
      request->status = Status::kClosed;
      request->resolved.notify_one();
    }
    s.pending.clear();
    s.in_flight.clear();
  }
  s.not_full.notify_all();
  s.not_empty.notify_all();
}

std::int64_t DynamicBatcher::pending() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return static_cast<std::int64_t>(state_->pending.size());
}

bool DynamicBatcher::is_closed() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->closed;
}

}  // namespace beast
