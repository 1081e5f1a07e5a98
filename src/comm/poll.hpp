// Waiting with a deadline: polls a non-blocking test with a growing back-off so that oversubscribed
// ranks (CI runs 8 ranks on 2 cores) leave the CPU to the peers they wait for.
#pragma once

#include <chrono>
#include <thread>

namespace dbsp::comm {

// The longest pause between polls of GPU work (an event of queued kernels and transfers): the
// call returns at most this late, and the next layer's work is queued only then. Host waits (MPI
// peers, files) back off to a millisecond.
inline constexpr std::chrono::microseconds kDevicePollPause{40};

// Calls `done()` until it returns true (then returns true) or `timeout_seconds` pass (false).
template <class Done>
bool poll_until(double timeout_seconds, Done&& done,
                std::chrono::microseconds max_pause = std::chrono::microseconds(1000)) {
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
      pause = std::min(max_pause, std::max(std::chrono::microseconds(20), pause * 2));
      std::this_thread::sleep_for(pause);
    }
  }
}

}  // namespace dbsp::comm
