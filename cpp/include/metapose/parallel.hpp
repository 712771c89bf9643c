// A minimal parallel-for over batch items.
//
// The batch [0, n) is cut into one contiguous chunk per thread; the calling thread runs the
// first chunk. Batches smaller than `grain` items, or a thread count of 1, run inline, so small
// calls pay no thread start-up. The body must not throw; kernels report per-item failures
// through their return values instead.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

namespace metapose {

inline std::atomic<int>& thread_setting() {
  static std::atomic<int> setting{0};  // 0: one thread per hardware core
  return setting;
}

inline int get_num_threads() {
  const int setting = thread_setting().load();
  if (setting > 0) return setting;
  const unsigned hardware = std::thread::hardware_concurrency();
  return hardware == 0 ? 1 : static_cast<int>(hardware);
}

inline void set_num_threads(int count) { thread_setting().store(count < 0 ? 0 : count); }

// body(begin, end) is called on disjoint ranges covering [0, n).
template <class Body>
void parallel_for(std::size_t n, std::size_t grain, Body&& body) {
  const std::size_t by_size = grain == 0 ? n : n / grain;
  const std::size_t threads = std::min<std::size_t>(static_cast<std::size_t>(get_num_threads()), by_size);
  if (threads <= 1) {
    if (n > 0) body(std::size_t{0}, n);
    return;
  }
  const std::size_t chunk = (n + threads - 1) / threads;
  std::vector<std::thread> workers;
  workers.reserve(threads - 1);
  for (std::size_t t = 1; t < threads; ++t) {
    const std::size_t begin = t * chunk;
    const std::size_t end = std::min(n, begin + chunk);
    if (begin >= end) break;
    workers.emplace_back([&body, begin, end] { body(begin, end); });
  }
  body(std::size_t{0}, std::min(n, chunk));
  for (auto& worker : workers) worker.join();
}

// Records the smallest failing item index seen by any thread (or none).
class FirstFailure {
 public:
  void record(std::size_t index) {
    std::size_t current = first_.load();
    while (index < current && !first_.compare_exchange_weak(current, index)) {
    }
  }
  bool failed() const { return first_.load() != kNone; }
  std::size_t index() const { return first_.load(); }

 private:
  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
  std::atomic<std::size_t> first_{kNone};
};

}  // namespace metapose
