// Large host lists in transparent huge pages. A fresh list of hundreds of megabytes otherwise
// pays a page fault per 4 KiB on first touch, which costs more than filling it: a rank's local
// fine masks at 720p took 123-157 ms fresh, 35-47 ms in huge pages and 13-28 ms in reused memory
// (bench_fine_schedule, 2 cores).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace dbsp::detail {

// Gives `list` room for `size` elements. New room of 4 MiB or more is advised into transparent
// huge pages before anything touches it (advice only: where the system has none, nothing
// changes). When new room is needed the old elements are dropped, not copied: callers overwrite
// the whole list.
template <class T>
void reserve_in_huge_pages(std::vector<T>& list, size_t size) {
  if (list.capacity() >= size) return;
  list.clear();
  list.shrink_to_fit();
  list.reserve(size);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const size_t bytes = size * sizeof(T);
  if (bytes < 2 * kHuge) return;
  const auto begin = reinterpret_cast<uintptr_t>(list.data());
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t last = (begin + bytes) & ~(kHuge - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#endif
}

}  // namespace dbsp::detail
