// DynamicBatcher: central inference (as in SEED RL). Many caller threads
// each submit one request and block until it has been computed; inference
// threads take the pending requests as one batch, run the model once on it,
// and hand every caller its own row of the result.
//
// What flows through it:
//   caller i:  compute({"obs": [4, 84, 84]})                      (one row, no batch axis)
//                -> pending requests, oldest first, at most max_pending
//   inference: get_batch() -> Batch, inputs {"obs": [n, 4, 84, 84]} (rows stacked on a new axis 0)
//              batch.set_outputs({"action": [n], "logits": [n, A]})
//                -> caller i returns {"action": [], "logits": [A]}    (row i, copied)
// The batcher copies each request's arrays once, into the stacked inputs,
// and copies each output row once, into a buffer its caller then owns; it
// keeps no reference to the arrays passed to set_outputs() after it returns.
//
// Every request ends exactly once: with its outputs; with BatchFailed (the
// batch's outputs were unusable, set_error() was called, or the Batch was
// destroyed unresolved); with QueueClosed (close()); or with QueueTimeout
// (its caller's own bound ran out). A request that times out before it is
// taken leaves the queue; one that times out inside a batch is discarded
// when that batch resolves, which stays harmless for the other rows.
//
// Schema: the first request fixes the key set and each key's dtype and
// shape; a later request that differs is refused with a SchemaError naming
// the key, before it waits, and leaves the batcher as it was.
//
// Threads: every DynamicBatcher method may be called from any thread,
// concurrently. compute() is for the (many) callers: it blocks while
// max_pending requests are pending, then until its row is computed.
// get_batch() is for the (one or more) inference threads: it blocks until
// min_items requests are pending. close() is for whoever shuts the pipeline
// down: it fails every unfinished request at once (pending ones and those
// inside batches), so every compute() returns; get_batch() then throws
// QueueClosed. A Batch belongs to the thread that got it, but its methods
// are safe against each other and against close(), and it may outlive the
// DynamicBatcher.
//
// No request's borrowed arrays are destroyed while the internal mutex is
// held, because destroying a borrowed buffer may run foreign code (a NumPy
// owner takes the GIL).
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/array.h"
#include "core/batching_queue.h"  // Timeout and the error types shared by the core's queues

namespace beast {

// A request whose batch ended without usable outputs; what() says why.
class BatchFailed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
struct BatcherState;  // the mutex, the pending queue and the schema; shared with Batches
struct Request;       // one caller's row: its inputs, then its outputs or error
}  // namespace detail

// n requests taken together by get_batch(). Resolve it exactly once, with
// set_outputs() or set_error(); destroying it unresolved fails its callers.
class Batch {
 public:
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;
  ~Batch();

  // The n requests' arrays stacked along a new axis 0, in request order.
  const ArrayMap& inputs() const { return inputs_; }
  std::int64_t size() const { return static_cast<std::int64_t>(requests_.size()); }
  bool resolved() const;

  // Hands request i the row outputs[key][i] of every key. Every array needs
  // an axis 0 of length size(); otherwise the callers fail at once with
  // BatchFailed and this throws std::invalid_argument. Throws
  // std::logic_error if the batch was already resolved.
  void set_outputs(const ArrayMap& outputs);

  // Fails every request of the batch with BatchFailed carrying `message`
  // (the model raised, say). Throws std::logic_error if already resolved.
  void set_error(const std::string& message);

 private:
  friend class DynamicBatcher;
  Batch(std::shared_ptr<detail::BatcherState> state, std::vector<std::shared_ptr<detail::Request>> requests);

  // Marks the batch resolved (std::logic_error if it was), by `method`.
  void claim(const char* method);
  // Ends the requests: with rows[i] each, or, if rows is empty, with BatchFailed(error).
  void finish(std::vector<ArrayMap> rows, const std::string& error);
  std::string failure(const std::string& why) const;

  std::shared_ptr<detail::BatcherState> state_;
  std::vector<std::shared_ptr<detail::Request>> requests_;
  ArrayMap inputs_;
  bool resolved_ = false;  // guarded by the state's mutex
};

class DynamicBatcher {
 public:
  // max_pending >= 1: the most requests waiting to be batched (backpressure
  // on the callers; requests inside batches do not count).
  explicit DynamicBatcher(std::int64_t max_pending = 1024);
  // Fails whatever is unfinished, like close().
  ~DynamicBatcher();

  DynamicBatcher(const DynamicBatcher&) = delete;
  DynamicBatcher& operator=(const DynamicBatcher&) = delete;

  // Callers. Checks `inputs` against the schema (SchemaError), waits while
  // the queue is full, then until the row is computed, and returns it.
  // Throws BatchFailed if its batch failed, QueueClosed if the batcher is or
  // gets closed first, QueueTimeout if `timeout` (for the whole call) runs out.
  ArrayMap compute(ArrayMap inputs, Timeout timeout = std::nullopt);

  // Inference threads. Waits until at least min_items requests are pending,
  // then takes up to max_items of them (oldest first) as one Batch. After
  // `timeout` it takes whatever is pending (fewer than min_items) if
  // anything, else throws QueueTimeout. Throws QueueClosed once closed.
  // Requires 1 <= min_items <= max_pending and max_items >= min_items.
  std::unique_ptr<Batch> get_batch(std::int64_t min_items, std::int64_t max_items, Timeout timeout = std::nullopt);

  // Idempotent; fails every unfinished request with QueueClosed and wakes
  // every blocked compute() and get_batch().
  void close();

  std::int64_t pending() const;  // requests not yet taken into a batch
  bool is_closed() const;
  std::int64_t max_pending() const { return max_pending_; }

 private:
  const std::int64_t max_pending_;
  std::shared_ptr<detail::BatcherState> state_;
};

}  // namespace beast
