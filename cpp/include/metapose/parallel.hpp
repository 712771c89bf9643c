// A minimal parallel-for over batch items.
//
// The batch [0, n) is cut into one contiguous range per thread asked for (get_num_threads); the
// calling thread and the worker threads it starts take the ranges in turn until none is left.
// Batches smaller than `grain` items, or a thread count of 1, run inline, so small calls pay no
// thread start-up. Kernels report per-item failures through their return values.
//
// Failures of the machinery itself never abort the process:
//   - a worker thread that cannot be started (std::thread throws std::system_error when the
//     system refuses a thread, e.g. under an address-space cap that leaves no room for its stack,
//     or std::bad_alloc) is not started: the threads already running and the calling thread take
//     its ranges, down to the calling thread alone;
//   - an exception thrown by the body (std::bad_alloc for its scratch, say) on any thread is
//     caught there; no further range is started, every thread is joined, and then the exception
//     of the lowest range that threw is rethrown on the calling thread (the bindings turn
//     std::bad_alloc into MemoryError).
// Every started thread is joined before parallel_for returns or throws.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <thread>
#include <utility>
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

// Starts a std::thread running `work` at the back of `workers`; may throw (std::system_error,
// std::bad_alloc) when the thread cannot be had. The C++ tests pass their own to make it fail.
struct StartThread {
  template <class Work>
  void operator()(std::vector<std::thread>& workers, Work& work) const {
    workers.emplace_back(work);
  }
};

// parallel_for with `threads` threads at most and a chosen way of starting them (StartThread).
template <class Body, class Start>
void parallel_for_with(std::size_t n, std::size_t grain, std::size_t threads, Body&& body, Start&& start) {
  const std::size_t by_size = grain == 0 ? n : n / grain;
  threads = std::min(threads, by_size);
  if (threads <= 1) {
    if (n > 0) body(std::size_t{0}, n);
    return;
  }
  const std::size_t chunk = (n + threads - 1) / threads;
  const std::size_t ranges = (n + chunk - 1) / chunk;
  // Everything that can fail to allocate is allocated before any thread starts.
  std::vector<std::exception_ptr> errors(ranges);
  std::vector<std::thread> workers;
  workers.reserve(ranges - 1);
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stop{false};
  auto work = [&]() noexcept {
    while (!stop.load(std::memory_order_relaxed)) {
      const std::size_t range = next.fetch_add(1);
      if (range >= ranges) return;
      const std::size_t begin = range * chunk;
      try {
        body(begin, std::min(n, begin + chunk));
      } catch (...) {
        errors[range] = std::current_exception();
        stop.store(true, std::memory_order_relaxed);
      }
    }
  };
  // Joins whatever was started, however this function is left.
  struct JoinAll {
    std::vector<std::thread>& workers;
    ~JoinAll() {
      for (auto& worker : workers)
        if (worker.joinable()) worker.join();
    }
  } join_all{workers};
  for (std::size_t t = 1; t < ranges; ++t) {
    try {
      start(workers, work);
    } catch (...) {
      break;  // no more threads to be had: the ones running and this one share the ranges
    }
  }
  work();
  for (auto& worker : workers) worker.join();
  for (auto& error : errors)
    if (error) std::rethrow_exception(error);
}

// body(begin, end) is called on disjoint ranges covering [0, n), on up to get_num_threads()
// threads (the calling one included); see the top for what happens when something fails.
template <class Body>
void parallel_for(std::size_t n, std::size_t grain, Body&& body) {
  parallel_for_with(n, grain, static_cast<std::size_t>(get_num_threads()), body, StartThread{});
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
