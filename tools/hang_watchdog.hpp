// The last line of defence against a hang: every wait inside dbsp has a deadline, but a CUDA or
// NCCL call can still spin forever below it (on the lent 2 x H200 machine, Ring with
// NCCL_P2P_USE_CUDA_MEMCPY=1 hung inside such a call and no dbsp timeout could fire). A watchdog
// thread ends the process, with a message naming the rank and the call, when a call it guards
// runs past its limit; the launcher then ends the other ranks.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

namespace dbsp::cli {

class HangWatchdog {
 public:
  // `limit_seconds`: how long one guarded call may take; `who`: the message's prefix.
  HangWatchdog(double limit_seconds, std::string who)
      : limit_(std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(limit_seconds))),
        who_(std::move(who)),
        thread_([this] { watch(); }) {}
  ~HangWatchdog() {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    changed_.notify_one();
    thread_.join();
  }
  HangWatchdog(const HangWatchdog&) = delete;
  HangWatchdog& operator=(const HangWatchdog&) = delete;

  // Runs `call`, ending the process if it has not returned within the limit.
  template <class Call>
  decltype(auto) guard(std::string what, Call&& call) {
    arm(std::move(what));
    struct Disarm {
      HangWatchdog& dog;
      ~Disarm() { dog.disarm(); }
    } disarm{*this};
    return call();
  }

 private:
  using Clock = std::chrono::steady_clock;

  void arm(std::string what) {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      what_ = std::move(what);
      deadline_ = Clock::now() + limit_;
      armed_ = true;
    }
    changed_.notify_one();
  }
  void disarm() {
    const std::lock_guard<std::mutex> lock(mutex_);
    armed_ = false;
  }
  void watch() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      if (!armed_) {
        changed_.wait(lock);
      } else if (changed_.wait_until(lock, deadline_) == std::cv_status::timeout && armed_ &&
                 Clock::now() >= deadline_) {
        std::fprintf(stderr,
                     "%s: error: %s did not return within %.0f s, past every dbsp timeout: "
                     "stuck inside a CUDA or NCCL call; ending the process\n",
                     who_.c_str(), what_.c_str(), std::chrono::duration<double>(limit_).count());
        std::fflush(stderr);
        std::_Exit(3);  // no destructors: freeing GPU memory would wait on the stuck work
      }
    }
  }

  const Clock::duration limit_;
  const std::string who_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::string what_;
  Clock::time_point deadline_{};
  bool armed_ = false;
  bool stopping_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace dbsp::cli
