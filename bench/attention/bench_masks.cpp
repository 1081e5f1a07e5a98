// Benchmark masks at target densities (see bench_masks.hpp).
#include "bench_masks.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace dbsp::bench {

BlockMask uniform_mask(int heads, const MaskGeometry& geometry, double density, uint64_t seed) {
  BlockMask mask(heads, geometry);
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution keep(density);
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < mask.q_blocks(); ++i) {
      for (int j = 0; j < mask.k_blocks(); ++j)
        if (keep(rng)) mask.set(h, i, j);
      if (i < mask.k_blocks()) mask.set(h, i, i);
    }
  return mask;
}

BlockMask structured_mask(const BlockMask& base, double density, uint64_t seed) {
  const double factor = density / std::max(base.density(), 1e-9);
  BlockMask mask(base.heads(), base.geometry());
  std::mt19937_64 rng(seed);
  std::vector<int> kept, dropped;
  for (int h = 0; h < base.heads(); ++h)
    for (int i = 0; i < base.q_blocks(); ++i) {
      kept.clear();
      dropped.clear();
      for (int j = 0; j < base.k_blocks(); ++j) (base.get(h, i, j) ? kept : dropped).push_back(j);
      const int want =
          std::clamp(static_cast<int>(std::lround(kept.size() * factor)), 1, base.k_blocks());
      std::shuffle(kept.begin(), kept.end(), rng);
      std::shuffle(dropped.begin(), dropped.end(), rng);
      for (int n = 0; n < want; ++n)
        mask.set(h, i, n < static_cast<int>(kept.size()) ? kept[n] : dropped[n - kept.size()]);
    }
  return mask;
}

BlockMask with_twin_rows(const BlockMask& mask) {
  BlockMask twins = mask;
  for (int h = 0; h < mask.heads(); ++h)
    for (int i = 0; i + 1 < mask.q_blocks(); i += 2)
      std::copy_n(mask.row_bits(h, i), mask.words_per_row(), twins.row_bits(h, i + 1));
  return twins;
}

}  // namespace dbsp::bench
