// Block order for the greedy balancers: heaviest (or lightest) first, ties in block order.
#pragma once

#include <algorithm>
#include <array>
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
  // Keys in one pass: whole-number weights (block counts) as integers, heaviest first.
  std::vector<uint64_t> key(n);
  uint64_t top = 0;
  bool whole = true;
  for (int i = 0; i < n; ++i) {
    const double w = weight[i];
    whole = whole && w >= 0 && w < 0x1p53;
    const uint64_t k = whole ? uint64_t(w) : 0;
    whole = whole && double(k) == w;
    key[i] = k;
    top = std::max(top, k);
  }
  if (!whole) {
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      return lightest ? weight[a] < weight[b] : weight[a] > weight[b];
    });
    return order;
  }
  if (!lightest)
    for (uint64_t& k : key) k = top - k;
  // Least significant digit first, 8 bits a pass: each pass is stable, so equal weights keep
  // index order. Keys travel with their indices (sequential reads); all digit counts come from
  // one pass.
  int passes = 0;
  while (passes < 8 && (top >> (8 * passes)) != 0) ++passes;
  std::vector<std::array<int, 256>> count(passes);
  for (auto& c : count) c.fill(0);
  for (int i = 0; i < n; ++i)
    for (int p = 0; p < passes; ++p) ++count[p][(key[i] >> (8 * p)) & 255];
  std::vector<uint64_t> next_key(passes > 0 ? n : 0);
  std::vector<int> next(passes > 0 ? n : 0);
  for (int p = 0; p < passes; ++p) {
    int at = 0;
    for (int& c : count[p]) {
      const int size = c;
      c = at;
      at += size;
    }
    const int shift = 8 * p;
    for (int x = 0; x < n; ++x) {
      const int to = count[p][(key[x] >> shift) & 255]++;
      next[to] = order[x];
      next_key[to] = key[x];
    }
    order.swap(next);
    key.swap(next_key);
  }
  return order;
}

}  // namespace dbsp::plan
