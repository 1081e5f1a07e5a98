// The device executor's staging copy (sp::device::copy_rows) against the same copies made on the
// host: random tables of strided row copies between two buffers, every row width the runtime uses
// (and one wider than a block's threads), slabs from empty to thousands of rows; bytes outside
// the copied rows must keep their poison.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "device_present.hpp"
#include "nccl_fixture.hpp"
#include "sp/cuda/device_copy.hpp"

namespace dbsp {
namespace {

using sp::device::CopyBases;
using sp::device::RowCopy;

// `count` copies of up to `most_rows` rows from buffer 0 into disjoint ranges of buffer 1, each
// read `src_stride` and written `dst_stride` bytes apart (random multiples of 16, at least a row).
struct Table {
  std::vector<RowCopy> copies;
  int64_t src_bytes = 0, dst_bytes = 0, max_rows = 0;
};

Table random_table(int count, int64_t most_rows, int64_t row_bytes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> rows(0, most_rows), extra(0, 3);
  Table t;
  for (int i = 0; i < count; ++i) {
    RowCopy copy;
    copy.src_base = 0;
    copy.dst_base = 1;
    copy.rows = i == 0 ? most_rows : rows(rng);  // one copy of the longest slab
    copy.src_stride = row_bytes + 16 * extra(rng);
    copy.dst_stride = row_bytes + 16 * extra(rng);
    copy.src_offset = 16 * extra(rng) * 5;  // slabs may read overlapping source rows
    copy.dst_offset = t.dst_bytes;
    const int64_t dst_span = copy.rows > 0 ? (copy.rows - 1) * copy.dst_stride + row_bytes : 0;
    t.dst_bytes += dst_span + 16 * extra(rng);
    const int64_t src_span = copy.rows > 0 ? (copy.rows - 1) * copy.src_stride + row_bytes : 0;
    t.src_bytes = std::max(t.src_bytes, copy.src_offset + src_span);
    t.max_rows = std::max(t.max_rows, copy.rows);
    t.copies.push_back(copy);
  }
  t.src_bytes = std::max<int64_t>(t.src_bytes, 16);
  t.dst_bytes = std::max<int64_t>(t.dst_bytes, 16);
  return t;
}

TEST(DeviceCopy, CopyRowsEqualsTheHostCopyAndWritesNothingElse) {
  if (!test::has_gpu()) GTEST_SKIP() << "no GPU on this machine";
  struct Case {
    int count;
    int64_t most_rows, row_bytes;
  };
  // Row widths: head_dim 8 .. 256 in bf16, and 8 KiB (wider than a block's 256 x 16 bytes).
  const Case cases[] = {{1, 1, 16},     {3, 5000, 256}, {40, 1200, 256},
                        {200, 64, 128}, {7, 333, 512},  {1, 20000, 256},
                        {5, 9, 8192},   {300, 3, 16},   {64, 1024, 256}};
  uint64_t seed = 1;
  for (const Case& c : cases) {
    const std::string what = std::to_string(c.count) + " copies of up to " +
                             std::to_string(c.most_rows) + " rows of " +
                             std::to_string(c.row_bytes) + " bytes";
    const Table t = random_table(c.count, c.most_rows, c.row_bytes, seed++);
    std::vector<uint8_t> source(static_cast<size_t>(t.src_bytes));
    std::mt19937_64 rng(seed++);
    for (uint8_t& b : source) b = static_cast<uint8_t>(rng());
    std::vector<uint8_t> expected(static_cast<size_t>(t.dst_bytes), 0xAB);  // the poison
    for (const RowCopy& copy : t.copies) {
      for (int64_t r = 0; r < copy.rows; ++r) {
        std::memcpy(expected.data() + copy.dst_offset + r * copy.dst_stride,
                    source.data() + copy.src_offset + r * copy.src_stride,
                    static_cast<size_t>(c.row_bytes));
      }
    }
    DeviceBuffer src(source.size()), dst(expected.size()), table(t.copies.size() * sizeof(RowCopy));
    src.upload(source);
    ASSERT_EQ(cudaMemset(dst.get(), 0xAB, expected.size()), cudaSuccess);
    table.upload(t.copies);
    CopyBases bases;
    bases.address[0] = reinterpret_cast<uint64_t>(src.get());
    bases.address[1] = reinterpret_cast<uint64_t>(dst.get());
    sp::device::copy_rows(static_cast<const RowCopy*>(table.get()),
                          static_cast<int64_t>(t.copies.size()), bases, c.row_bytes, t.max_rows,
                          nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
    const std::vector<uint8_t> got = dst.download<uint8_t>(expected.size());
    EXPECT_TRUE(got == expected) << what;
  }
}

}  // namespace
}  // namespace dbsp
