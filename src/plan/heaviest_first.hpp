// Block order for the greedy balancers: heaviest (or lightest) first, ties in block order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

namespace dbsp::plan {

// The indices of `weight` as a stable sort by weight, heaviest first (or, `lightest`, lightest
// first). Whole-number weights (block counts) are radix-sorted, several times faster than a
// comparison sort of doubles.
inline std::vector<int> heaviest_first(const std::vector<double>& weight, bool lightest = false) {
  const int n = static_cast<int>(weight.size());
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  double top = 0;
  bool whole = true;
  for (double w : weight) {
    whole = whole && w >= 0 && w < 0x1p53 && w == double(uint64_t(w));
    top = std::max(top, w);
  }
  if (!whole) {
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      return lightest ? weight[a] < weight[b] : weight[a] > weight[b];
    });
    return order;
  }
  // Least significant digit first, 8 bits a pass: each pass is stable, so equal weights keep
  // index order.
  std::vector<uint64_t> key(n);
  for (int i = 0; i < n; ++i)
    key[i] = lightest ? uint64_t(weight[i]) : uint64_t(top) - uint64_t(weight[i]);
  std::vector<int> next(n);
  for (int shift = 0; shift < 64 && (uint64_t(top) >> shift) != 0; shift += 8) {
    int count[257] = {};
    for (int i : order) ++count[((key[i] >> shift) & 255) + 1];
    for (int d = 0; d < 256; ++d) count[d + 1] += count[d];
    for (int i : order) next[count[(key[i] >> shift) & 255]++] = i;
    order.swap(next);
  }
  return order;
}

}  // namespace dbsp::plan
