// Seeded block masks of several structured families for planner tests: masks the planner was not
// tuned on (bands, sink columns, clustered tiles, dense leading rows, random), with per-head
// densities spread from a few percent to over half.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "dbsp/block_mask.hpp"

namespace dbsp::testing {

inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
inline double unit(uint64_t seed, uint64_t a, uint64_t b = 0, uint64_t c = 0) {
  return double(mix64(mix64(mix64(seed ^ a) ^ b) ^ c) >> 11) * (1.0 / 9007199254740992.0);
}

inline BlockMask family_mask(int heads, int q_blocks, int k_blocks, uint64_t seed) {
  BlockMask mask(heads, MaskGeometry{int64_t{q_blocks} * 64 - 17, int64_t{k_blocks} * 64 - 17});
  for (int h = 0; h < heads; ++h) {
    const double density = std::exp(std::log(0.03) + unit(seed, h, 1) * std::log(0.7 / 0.03));
    const int family = static_cast<int>(unit(seed, h, 2) * 5);
    const int width = std::max(1, static_cast<int>(density * k_blocks / 2));
    const int tile = 4 + static_cast<int>(unit(seed, h, 3) * 28);
    for (int i = 0; i < q_blocks; ++i) {
      for (int j = 0; j < k_blocks; ++j) {
        const double noise = unit(seed, h, uint64_t(i) * 65536 + j);
        bool keep = false;
        switch (family) {
          case 0:
            keep = std::abs(i - j) <= width;
            break;  // band
          case 1:
            keep = j < density * k_blocks * 0.6 || std::abs(i - j) < 2;
            break;  // sinks
          case 2:
            keep = (i / tile == j / tile) || noise < density * 0.5;
            break;  // tiles
          case 3:
            keep = noise < density * (i < q_blocks / 3 ? 2.2 : 0.4);
            break;  // dense rows
          default:
            keep = noise < density;
            break;  // random
        }
        if (i == j && j < k_blocks) keep = true;
        if (keep) mask.set(h, i, j);
      }
    }
  }
  return mask;
}

}  // namespace dbsp::testing
