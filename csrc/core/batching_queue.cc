#include "core/batching_queue.h"

#include <algorithm>
#include <cstddef>
#include <vector>

#include "core/deadline.h"
#include "core/stack.h"

namespace beast {
namespace {

std::string key_list(const std::map<std::string, ArraySpec>& schema) {
  std::string s;
  for (const auto& entry : schema) s += (s.empty() ? "'" : ", '") + entry.first + "'";
  return s;
}

}  // namespace

BatchingQueue::BatchingQueue(std::int64_t capacity, std::int64_t batch_dim, bool stack)
    : capacity_(capacity), batch_dim_(batch_dim), stack_(stack) {
  if (capacity < 1) {
    throw std::invalid_argument("BatchingQueue: capacity must be >= 1, got " + std::to_string(capacity));
  }
  if (batch_dim < 0) {
    throw std::invalid_argument("BatchingQueue: batch_dim must be >= 0, got " + std::to_string(batch_dim));
  }
}

void BatchingQueue::check_schema_locked(const Item& item) {
  if (item.empty()) throw std::invalid_argument("BatchingQueue.enqueue: the item has no arrays");
  const std::string axis = "batch_dim " + std::to_string(batch_dim_);

  if (schema_.empty()) {
    for (const auto& [key, array] : item) {
      // Stacking may insert the new axis after the last one; concatenating
      // needs the axis to exist.
      if (stack_ ? batch_dim_ > array.ndim() : batch_dim_ >= array.ndim()) {
        throw SchemaError(key, "BatchingQueue.enqueue: key '" + key + "' has shape " + shape_string(array.shape()) +
                                   ", too few dimensions for " + axis + (stack_ ? " (stack)" : " (concatenate)"));
      }
    }
    for (const auto& [key, array] : item) schema_.emplace(key, array.spec());
    return;
  }

  for (const auto& entry : schema_) {
    if (item.count(entry.first) == 0) {
      throw SchemaError(entry.first, "BatchingQueue.enqueue: the item is missing key '" + entry.first +
                                         "' (the queue's keys: " + key_list(schema_) + ")");
    }
  }
  for (const auto& [key, array] : item) {
    const auto it = schema_.find(key);
    if (it == schema_.end()) {
      throw SchemaError(key, "BatchingQueue.enqueue: the item has unexpected key '" + key + "' (the queue's keys: " +
                                 key_list(schema_) + ")");
    }
    const ArraySpec& want = it->second;
    if (array.dtype() != want.dtype) {
      throw SchemaError(key, "BatchingQueue.enqueue: key '" + key + "' has dtype " + dtype_name(array.dtype()) +
                                 ", the queue's first item had " + dtype_name(want.dtype));
    }
    Shape got = array.shape();
    if (!stack_ && got.size() == want.shape.size()) got[batch_dim_] = want.shape[batch_dim_];  // may differ
    if (got != want.shape) {
      throw SchemaError(key, "BatchingQueue.enqueue: key '" + key + "' has shape " + shape_string(array.shape()) +
                                 ", the queue's first item had " + shape_string(want.shape) +
                                 (stack_ ? "" : " (only " + axis + " may differ)"));
    }
  }
}

// On every throw below, `item` still holds its arrays; it is destroyed after
// `lock` is released (parameters outlive the function's locals).
void BatchingQueue::enqueue(Item item, Timeout timeout) {
  const Deadline deadline = deadline_after(timeout, "BatchingQueue");
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (closed_) throw QueueClosed("BatchingQueue.enqueue: the queue is closed");
    check_schema_locked(item);
    wait_until(not_full_, lock, deadline,
               [this] { return closed_ || static_cast<std::int64_t>(items_.size()) < capacity_; });
    if (closed_) throw QueueClosed("BatchingQueue.enqueue: the queue was closed while waiting for space");
    if (static_cast<std::int64_t>(items_.size()) >= capacity_) {
      throw QueueTimeout("BatchingQueue.enqueue: the queue stayed full (capacity " + std::to_string(capacity_) +
                         ") until the timeout");
    }
    items_.push_back(std::move(item));
  }
  not_empty_.notify_all();  // consumers may wait for different min_items
}

Item BatchingQueue::dequeue(std::int64_t min_items, std::int64_t max_items, Timeout timeout) {
  if (min_items < 1 || min_items > capacity_) {
    throw std::invalid_argument("BatchingQueue.dequeue: min_items must be in [1, capacity=" +
                                std::to_string(capacity_) + "], got " + std::to_string(min_items));
  }
  if (max_items < min_items) {
    throw std::invalid_argument("BatchingQueue.dequeue: max_items (" + std::to_string(max_items) +
                                ") must be >= min_items (" + std::to_string(min_items) + ")");
  }
  const Deadline deadline = deadline_after(timeout, "BatchingQueue");
  std::vector<Item> taken;
  {
    std::unique_lock<std::mutex> lock(mu_);
    wait_until(not_empty_, lock, deadline,
               [&] { return closed_ || static_cast<std::int64_t>(items_.size()) >= min_items; });
    if (items_.empty()) {
      if (closed_) throw QueueClosed("BatchingQueue.dequeue: the queue is closed and drained");
      throw QueueTimeout("BatchingQueue.dequeue: no item arrived before the timeout");
    }
    const auto n = std::min(static_cast<std::int64_t>(items_.size()), max_items);
    taken.reserve(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
      taken.push_back(std::move(items_.front()));
      items_.pop_front();
    }
  }
  not_full_.notify_all();

  // Joining copies every byte; done outside the lock so producers and other
  // consumers are not held up.
  Item batch;
  for (const auto& entry : taken.front()) {
    batch.emplace(entry.first, join_arrays(taken, entry.first, batch_dim_, stack_));
  }
  return batch;
}

void BatchingQueue::close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
  }
  not_full_.notify_all();
  not_empty_.notify_all();
}

std::int64_t BatchingQueue::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<std::int64_t>(items_.size());
}

bool BatchingQueue::is_closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

}  // namespace beast
