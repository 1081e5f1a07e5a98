// rho_s (SPEC 3) for block and fine masks under any partition.
#include "dbsp/imbalance.hpp"

#include <algorithm>
#include <bit>

#include "dbsp/block_layout.hpp"
#include "dbsp/error.hpp"

namespace dbsp {

ImbalanceReport imbalance_from_work(Grid grid, std::vector<std::vector<std::vector<double>>> work) {
  const int U = grid.ulysses, R = grid.ring;
  require(static_cast<int>(work.size()) == U, "imbalance: work has ", work.size(),
          " head groups, grid ", grid.name(), " needs ", U);
  ImbalanceReport report;
  report.grid = grid;
  double total = 0, worst = 0;
  report.group_time.assign(U, 0.0);
  for (int g = 0; g < U; ++g) {
    for (int t = 0; t < R; ++t) {
      double step = 0;
      for (int r = 0; r < R; ++r) step = std::max(step, work[g][r][(r + t) % R]);
      report.group_time[g] += step;
    }
    for (int a = 0; a < R; ++a)
      for (int b = 0; b < R; ++b) total += work[g][a][b];
    worst = std::max(worst, report.group_time[g]);
  }
  report.mean_rank_work = total / grid.ranks();
  report.ratio = total > 0 ? worst / report.mean_rank_work : 1.0;
  report.work = std::move(work);
  return report;
}

namespace {

using Work = std::vector<std::vector<std::vector<double>>>;

// Per shard, the bit row of the key blocks it holds: out[shard * words + word].
std::vector<uint64_t> shard_column_bits(const std::vector<int>& k_shard, int shards, int words) {
  std::vector<uint64_t> bits(static_cast<size_t>(shards) * words, 0);
  for (size_t j = 0; j < k_shard.size(); ++j) {
    bits[static_cast<size_t>(k_shard[j]) * words + (j >> 6)] |= uint64_t{1} << (j & 63);
  }
  return bits;
}

Work empty_work(Grid grid) {
  return Work(grid.ulysses,
              std::vector<std::vector<double>>(grid.ring, std::vector<double>(grid.ring, 0.0)));
}

void check_shape(const Partition& partition, int heads, int q_blocks, int k_blocks) {
  partition.validate();
  require(
      partition.heads == heads && partition.q_blocks == q_blocks && partition.k_blocks == k_blocks,
      "imbalance: partition is for ", partition.heads, " heads x ", partition.q_blocks, " x ",
      partition.k_blocks, " blocks but the mask has ", heads, " x ", q_blocks, " x ", k_blocks);
}

}  // namespace

ImbalanceReport imbalance_report(const BlockMask& mask, const Partition& partition) {
  check_shape(partition, mask.heads(), mask.q_blocks(), mask.k_blocks());
  const Grid grid = partition.grid;
  const int R = grid.ring;
  Work work = empty_work(grid);
  const int words = mask.words_per_row();
  for (int g = 0; g < grid.ulysses; ++g) {
    // Bitmask of the key blocks of each shard for this group, then masked popcounts per row.
    const std::vector<uint64_t> shard_bits = shard_column_bits(partition.k_shard[g], R, words);
    for (int h : partition.heads_of(g)) {
      for (int i = 0; i < mask.q_blocks(); ++i) {
        const uint64_t* row = mask.row_bits(h, i);
        auto& out = work[g][partition.q_shard[g][i]];
        for (int b = 0; b < R; ++b) {
          const uint64_t* sel = shard_bits.data() + static_cast<size_t>(b) * words;
          int count = 0;
          for (int w = 0; w < words; ++w) count += std::popcount(row[w] & sel[w]);
          out[b] += count;
        }
      }
    }
  }
  return imbalance_from_work(grid, std::move(work));
}

ImbalanceReport imbalance_report(const FineMask& mask, const Partition& partition) {
  const MaskGeometry& geo = mask.geometry();
  check_shape(partition, mask.heads(), geo.q_blocks(), geo.k_blocks());
  const auto q_layout = BlockLayout::uniform(geo.seq_q, geo.block_q);
  Work work = empty_work(partition.grid);
  for (int h = 0; h < mask.heads(); ++h) {
    const int g = partition.head_group[h];
    for (int i = 0; i < geo.q_blocks(); ++i) {
      // An M x 1 slice costs in proportion to the queries it serves (short last block).
      const double slice_cost = double(q_layout.size(i)) / geo.block_q;
      auto& out = work[g][partition.q_shard[g][i]];
      for (int32_t key : mask.keys(h, i)) {
        out[partition.k_shard[g][key / geo.block_k]] += slice_cost;
      }
    }
  }
  return imbalance_from_work(partition.grid, std::move(work));
}

}  // namespace dbsp
