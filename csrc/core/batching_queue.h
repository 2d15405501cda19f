// BatchingQueue: a bounded many-producer / many-consumer queue of named
// arrays whose consumers take whole batches.
//
// What flows through it: an Item is a set of named Arrays (one rollout, say:
// "obs" [T+1, B, ...], "reward" [T+1, B], ...). Producers enqueue Items one at
// a time; a consumer dequeues n of them at once and receives one Item whose
// arrays are the n items' arrays joined along `batch_dim`:
//   stack = true : a new axis is inserted at batch_dim, so n items of shape
//                  S give S[:d] + [n] + S[d:]. All items have equal shapes.
//   stack = false: items are concatenated along their existing axis
//                  batch_dim, so [T, B_i, ...] items with batch_dim = 1 give
//                  [T, sum B_i, ...]. Shapes may differ only on that axis.
// The joined arrays are new, C-contiguous buffers; the queue itself copies
// nothing on enqueue and keeps the producers' Arrays (and so their buffers)
// alive until they are joined.
//
// Schema: the first Item enqueued fixes the key set and each key's dtype and
// shape (except the batch_dim axis when concatenating). Any later Item that
// differs is refused with a SchemaError naming the key, before it waits.
//
// Threads: every public method may be called from any thread, concurrently.
// enqueue() blocks producers while the queue holds `capacity` Items;
// dequeue() blocks consumers until `min_items` are there. close() is meant
// for whoever shuts the pipeline down: it wakes every waiter, refuses further
// enqueues, and lets consumers drain what is left (see dequeue()).
//
// No Item is destroyed while the internal mutex is held, because destroying a
// borrowed buffer may run foreign code (a NumPy owner takes the GIL).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "core/array.h"

namespace beast {

using Item = ArrayMap;

// A wait bound in seconds; std::nullopt waits for ever.
using Timeout = std::optional<std::chrono::duration<double>>;

// enqueue() after close(), or dequeue() once closed and drained.
class QueueClosed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The wait bound passed before the call could complete.
class QueueTimeout : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An Item that does not match the queue's schema; key() names the culprit.
class SchemaError : public std::invalid_argument {
 public:
  SchemaError(std::string key, const std::string& message)
      : std::invalid_argument(message), key_(std::move(key)) {}
  const std::string& key() const { return key_; }

 private:
  std::string key_;
};

class BatchingQueue {
 public:
  // capacity >= 1 Items; batch_dim >= 0; see the file comment for `stack`.
  BatchingQueue(std::int64_t capacity, std::int64_t batch_dim = 0, bool stack = true);

  BatchingQueue(const BatchingQueue&) = delete;
  BatchingQueue& operator=(const BatchingQueue&) = delete;

  // Producers. Checks `item` against the schema (SchemaError), then waits
  // while the queue is full. Throws QueueClosed if the queue is or becomes
  // closed, QueueTimeout if still full after `timeout`.
  void enqueue(Item item, Timeout timeout = std::nullopt);

  // Consumers. Waits until at least min_items Items are queued, then joins
  // up to max_items of them (oldest first) into one batch. After `timeout`
  // it returns whatever is queued (fewer than min_items) if anything, else
  // throws QueueTimeout. Once closed it ignores min_items and drains: each
  // call returns up to max_items of what is left, then throws QueueClosed.
  // Requires 1 <= min_items <= capacity (a larger minimum could never be
  // met) and max_items >= min_items.
  Item dequeue(std::int64_t min_items, std::int64_t max_items, Timeout timeout = std::nullopt);

  // Idempotent; wakes every blocked enqueue() and dequeue().
  void close();

  std::int64_t size() const;
  bool is_closed() const;
  std::int64_t capacity() const { return capacity_; }
  std::int64_t batch_dim() const { return batch_dim_; }
  bool stack() const { return stack_; }

 private:
  // Sets the schema from the first Item, checks every later one. Holds mu_.
  void check_schema_locked(const Item& item);

  const std::int64_t capacity_;
  const std::int64_t batch_dim_;
  const bool stack_;

  mutable std::mutex mu_;
  std::condition_variable not_full_;   // producers wait here
  std::condition_variable not_empty_;  // consumers wait here
  std::deque<Item> items_;
  std::map<std::string, ArraySpec> schema_;  // empty until the first enqueue
  bool closed_ = false;
};

}  // namespace beast
