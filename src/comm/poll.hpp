// Waiting with a deadline: polls a non-blocking test with a growing back-off so that oversubscribed
// ranks (CI runs 8 ranks on 2 cores) leave the CPU to the peers they wait for.
#pragma once

#include <chrono>
#include <thread>

namespace dbsp::comm {

// Calls `done()` until it returns true (then returns true) or `timeout_seconds` pass (false).
template <class Done>
bool poll_until(double timeout_seconds, Done&& done) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(timeout_seconds));
  auto pause = std::chrono::microseconds(0);
  for (int polls = 0;; ++polls) {
    if (done()) return true;
    if (Clock::now() >= deadline) return false;
    if (polls < 200) {
      std::this_thread::yield();
    } else {
      pause = std::min(std::chrono::microseconds(1000),
                       std::max(std::chrono::microseconds(20), pause * 2));
      std::this_thread::sleep_for(pause);
    }
  }
}

}  // namespace dbsp::comm
