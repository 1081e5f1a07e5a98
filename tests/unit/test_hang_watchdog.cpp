// The CLI's last defence against a hang (tools/hang_watchdog.hpp): a guarded call that returns in
// time passes its result through and leaves the process alone, also long after; one that does not
// ends the process with exit code 3 and a message naming the caller and the call.
#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <thread>

#include "hang_watchdog.hpp"

namespace {

using namespace std::chrono_literals;
using dbsp::cli::HangWatchdog;

TEST(HangWatchdog, CallsThatReturnInTimePassThrough) {
  HangWatchdog dog(0.3, "test rank 0");
  EXPECT_EQ(dog.guard("a quick call", [] { return 42; }), 42);
  std::this_thread::sleep_for(500ms);  // disarmed: past the limit, nothing happens
  EXPECT_EQ(dog.guard("another quick call", [] { return 7; }), 7);
}

TEST(HangWatchdog, ExceptionsPassThroughAndDisarm) {
  HangWatchdog dog(0.3, "test rank 0");
  EXPECT_THROW(dog.guard("a failing call", []() -> int { throw std::runtime_error("boom"); }),
               std::runtime_error);
  std::this_thread::sleep_for(500ms);
}

TEST(HangWatchdogDeathTest, AStuckCallEndsTheProcessNamingIt) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        HangWatchdog dog(1.0, "test rank 3 of 4");
        dog.guard("step 0 layer 5", [] {
          std::this_thread::sleep_for(30s);
          return 0;
        });
      },
      testing::ExitedWithCode(3),
      "test rank 3 of 4: error: step 0 layer 5 did not return within 1 s, past every dbsp "
      "timeout");
}

}  // namespace
