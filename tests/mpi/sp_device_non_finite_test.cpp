// The device's scan of a bf16 output for NaN and Inf (sp::device::first_non_finite_bf16) against
// the first such index found on the host: values at the front, in the middle, in the last
// vector and in the scalar tail; buffers at aligned and odd addresses; lengths that are not a
// multiple of the vector width; none at all (the result keeps its ~0).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "device_present.hpp"
#include "sp/cuda/non_finite.hpp"

namespace dbsp {
namespace {

// The scan's result for `values` placed `offset` elements into a device buffer.
uint64_t device_first(const std::vector<uint16_t>& values, int offset) {
  uint16_t* buffer = nullptr;
  unsigned long long* first = nullptr;
  EXPECT_EQ(cudaMalloc(&buffer, (values.size() + offset + 8) * 2), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&first, 8), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(buffer + offset, values.data(), values.size() * 2, cudaMemcpyHostToDevice),
            cudaSuccess);
  EXPECT_EQ(cudaMemset(first, 0xff, 8), cudaSuccess);
  sp::device::first_non_finite_bf16(buffer + offset, static_cast<int64_t>(values.size()), first,
                                    nullptr);
  unsigned long long result = 0;
  EXPECT_EQ(cudaMemcpy(&result, first, 8, cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(buffer);
  cudaFree(first);
  return result;
}

TEST(DeviceNonFinite, FindsTheFirstNanOrInfWhereverItLies) {
  if (!test::has_gpu()) GTEST_SKIP() << "no GPU on this machine";
  std::mt19937 rng(7);
  // Finite bf16: any sign and mantissa, exponent below all ones.
  std::uniform_int_distribution<uint32_t> sign(0, 1), exponent(0, 254), mantissa(0, 127);
  auto finite = [&] {
    return static_cast<uint16_t>(sign(rng) << 15 | exponent(rng) << 7 | mantissa(rng));
  };
  const uint16_t bad[] = {0x7fc0, 0xffc1, 0x7f80, 0xff80};  // NaNs, +Inf, -Inf
  for (int64_t count : {1, 7, 8, 9, 1000, 4099, 1 << 20, (1 << 20) + 5}) {
    std::vector<uint16_t> values(static_cast<size_t>(count));
    for (uint16_t& x : values) x = finite();
    for (int offset : {0, 1, 3}) {
      const std::string where =
          "count " + std::to_string(count) + " offset " + std::to_string(offset);
      EXPECT_EQ(device_first(values, offset), ~0ull) << where;
      for (int64_t at : {count - 1, count / 2, count - count % 8, int64_t{0}}) {
        if (at >= count) continue;
        std::vector<uint16_t> marked = values;
        marked[at] = bad[at % 4];
        if (at + 3 < count) marked[at + 3] = bad[(at + 1) % 4];  // a later one is not the first
        EXPECT_EQ(device_first(marked, offset), static_cast<uint64_t>(at)) << where << " at " << at;
      }
    }
  }
}

}  // namespace
}  // namespace dbsp
