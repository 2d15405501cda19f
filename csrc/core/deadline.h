// Wait bounds shared by the core's blocking calls (BatchingQueue,
// DynamicBatcher): a timeout in seconds becomes a deadline once, at the start
// of a call, so a call that waits more than once (for room, then for a
// result) is bounded by the one timeout in all.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

namespace beast {

using Clock = std::chrono::steady_clock;
using Deadline = std::optional<Clock::time_point>;

// Bounds beyond this many seconds (~30 years) mean "for ever": converting
// them to a time_point would overflow.
constexpr double kForeverSeconds = 1e9;

// `timeout` is the components' Timeout (std::nullopt waits for ever); `who`
// prefixes the error for a negative or NaN bound.
inline Deadline deadline_after(std::optional<std::chrono::duration<double>> timeout, const std::string& who) {
  if (!timeout) return std::nullopt;
  const double seconds = timeout->count();
  if (!(seconds >= 0)) {  // also refuses NaN
    throw std::invalid_argument(who + ": timeout must be >= 0 seconds (or none to wait for ever), got " +
                                std::to_string(seconds));
  }
  if (seconds > kForeverSeconds) return std::nullopt;
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(*timeout);
}

// Waits on `cv` until `ready()` or the deadline; the caller tells which by
// checking its state again.
template <typename Predicate>
void wait_until(std::condition_variable& cv, std::unique_lock<std::mutex>& lock, const Deadline& deadline,
                Predicate ready) {
  if (deadline) {
    cv.wait_until(lock, *deadline, ready);
  } else {
    cv.wait(lock, ready);
  }
}

}  // namespace beast
