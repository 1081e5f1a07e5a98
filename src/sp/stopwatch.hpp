// Wall-clock intervals for the runtime's telemetry.
#pragma once

#include <algorithm>
#include <chrono>

namespace dbsp::sp {

class Stopwatch {
 public:
  Stopwatch() : start_(Clock::now()) {}
  double elapsed_ms() const {
    return std::chrono::duration<double, std::milli>(Clock::now() - start_).count();
  }
  // Milliseconds since the last lap (or construction).
  double lap_ms() {
    const auto now = Clock::now();
    const double ms = std::chrono::duration<double, std::milli>(now - start_).count();
    start_ = now;
    return ms;
  }

 private:
  using Clock = std::chrono::steady_clock;
  Clock::time_point start_;
};

// The fastest of `runs` timed calls of run() on the host, after `warmups` untimed ones (which
// fault pages in and warm caches).
template <class Run>
double best_host_ms(int warmups, int runs, Run&& run) {
  for (int i = 0; i < warmups; ++i) run();
  double best = 0;
  for (int i = 0; i < runs; ++i) {
    const Stopwatch clock;
    run();
    const double ms = clock.elapsed_ms();
    best = i == 0 ? ms : std::min(best, ms);
  }
  return best;
}

}  // namespace dbsp::sp
