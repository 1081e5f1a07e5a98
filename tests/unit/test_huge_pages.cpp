// reserve_in_huge_pages: room for the asked size; the old elements stay when the room suffices and
// are dropped (not copied) when new room is taken.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "mask/huge_pages.hpp"

namespace dbsp::detail {
namespace {

TEST(HugePages, ReservesRoomAndKeepsElementsOnlyWhenNoNewRoomIsNeeded) {
  std::vector<int32_t> list = {1, 2, 3};
  list.reserve(8);
  reserve_in_huge_pages(list, 8);
  EXPECT_EQ(list, (std::vector<int32_t>{1, 2, 3}));

  const size_t large = size_t{3} << 20;  // 12 MiB of int32: advised into huge pages
  reserve_in_huge_pages(list, large);
  EXPECT_GE(list.capacity(), large);
  EXPECT_TRUE(list.empty());
  list.resize(large, 7);
  EXPECT_EQ(list[large - 1], 7);

  std::vector<int64_t> empty;
  reserve_in_huge_pages(empty, 0);
  EXPECT_TRUE(empty.empty());
}

}  // namespace
}  // namespace dbsp::detail
