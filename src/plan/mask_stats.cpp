// One pass over a mask's bits that gives the planner everything it needs to balance and score.
#include "plan/mask_stats.hpp"

#include <bit>
#include <numeric>

#include "dbsp/block_layout.hpp"
#include "dbsp/error.hpp"
#include "plan/bit_counting.hpp"

namespace dbsp {

MaskStats::MaskStats(const BlockMask& mask, int ranks) : data_(std::make_unique<Data>()) {
  require(ranks >= 1, "MaskStats: rank count must be >= 1, got ", ranks);
  Data& d = *data_;
  d.mask = &mask;
  d.ranks = ranks;
  const int H = mask.heads(), QB = mask.q_blocks(), KB = mask.k_blocks();
  d.segment_begin.resize(ranks + 1);
  for (int p = 0; p <= ranks; ++p) d.segment_begin[p] = shard_begin(p, KB, ranks);
  d.segment_kept.assign(static_cast<size_t>(H) * QB * ranks, 0);
  d.kept_per_head.assign(H, 0);
  for (int h = 0; h < H; ++h) {
    int64_t head_kept = 0;
    for (int i = 0; i < QB; ++i) {
      const uint64_t* row = mask.row_bits(h, i);
      int32_t* out = d.segment_kept.data() + (static_cast<size_t>(h) * QB + i) * ranks;
      for (int p = 0; p < ranks; ++p) {
        out[p] = plan::popcount_range(row, d.segment_begin[p], d.segment_begin[p + 1]);
        head_kept += out[p];
      }
    }
    d.kept_per_head[h] = head_kept;
  }
  d.kept = std::accumulate(d.kept_per_head.begin(), d.kept_per_head.end(), int64_t{0});
}

MaskStats::~MaskStats() = default;
MaskStats::MaskStats(MaskStats&&) noexcept = default;
MaskStats& MaskStats::operator=(MaskStats&&) noexcept = default;

const BlockMask& MaskStats::mask() const { return *data_->mask; }
int MaskStats::ranks() const { return data_->ranks; }
int64_t MaskStats::kept() const { return data_->kept; }
const std::vector<int64_t>& MaskStats::kept_per_head() const { return data_->kept_per_head; }

namespace plan {

std::vector<double> group_row_shard_mass(const MaskStats::Data& stats,
                                         const std::vector<int>& heads, int ring) {
  const int QB = stats.mask->q_blocks(), P = stats.ranks, per_shard = P / ring;
  std::vector<double> mass(static_cast<size_t>(QB) * ring, 0.0);
  for (int h : heads) {
    for (int i = 0; i < QB; ++i) {
      const int32_t* seg = stats.segments(h, i);
      double* out = mass.data() + static_cast<size_t>(i) * ring;
      for (int p = 0; p < P; ++p) out[p / per_shard] += seg[p];
    }
  }
  return mass;
}

void apply_key_moves(const MaskStats::Data& stats, const std::vector<int>& heads,
                     const std::vector<int>& k_shard, int ring, std::vector<double>& row_mass) {
  const BlockMask& mask = *stats.mask;
  const int QB = mask.q_blocks(), KB = mask.k_blocks(), words = mask.words_per_row();
  // Per shard, the bits of key blocks that moved in and that moved out; only words holding a
  // moved block are visited.
  std::vector<uint64_t> moved_in(static_cast<size_t>(ring) * words, 0);
  std::vector<uint64_t> moved_out(static_cast<size_t>(ring) * words, 0);
  std::vector<bool> active(words, false);
  for (int j = 0; j < KB; ++j) {
    const int home = home_shard(j, KB, ring);
    if (k_shard[j] == home) continue;
    const uint64_t bit = uint64_t{1} << (j & 63);
    moved_in[static_cast<size_t>(k_shard[j]) * words + (j >> 6)] |= bit;
    moved_out[static_cast<size_t>(home) * words + (j >> 6)] |= bit;
    active[j >> 6] = true;
  }
  std::vector<int> active_words;
  for (int w = 0; w < words; ++w)
    if (active[w]) active_words.push_back(w);
  if (active_words.empty()) return;
  if (2 * active_words.size() > static_cast<size_t>(words)) {
    // Moves spread over most words: recount each row per shard with one mask per shard.
    const std::vector<uint64_t> shard_bits = shard_column_bits(k_shard, ring, words);
    for (int h : heads) {
      for (int i = 0; i < QB; ++i) {
        const uint64_t* row = mask.row_bits(h, i);
        double* out = row_mass.data() + static_cast<size_t>(i) * ring;
        const int32_t* seg = stats.segments(h, i);
        const int per_shard = stats.ranks / ring;
        for (int c = 0; c < ring; ++c) {
          int home_count = 0;
          for (int p = c * per_shard; p < (c + 1) * per_shard; ++p) home_count += seg[p];
          const uint64_t* sel = shard_bits.data() + static_cast<size_t>(c) * words;
          int count = 0;
          for (int w = 0; w < words; ++w) count += std::popcount(row[w] & sel[w]);
          out[c] += count - home_count;
        }
      }
    }
    return;
  }
  for (int h : heads) {
    for (int i = 0; i < QB; ++i) {
      const uint64_t* row = mask.row_bits(h, i);
      double* out = row_mass.data() + static_cast<size_t>(i) * ring;
      for (int w : active_words) {
        const uint64_t x = row[w];
        if (!x) continue;
        for (int c = 0; c < ring; ++c) {
          out[c] += std::popcount(x & moved_in[static_cast<size_t>(c) * words + w]) -
                    std::popcount(x & moved_out[static_cast<size_t>(c) * words + w]);
        }
      }
    }
  }
}

ImbalanceReport evaluate(const MaskStats::Data& stats, const Partition& partition) {
  const BlockMask& mask = *stats.mask;
  const Grid grid = partition.grid;
  const int R = grid.ring, QB = mask.q_blocks(), KB = mask.k_blocks();
  require(stats.ranks % R == 0 || R == 1, "evaluate: ring degree ", R,
          " does not divide the statistics' rank count ", stats.ranks);
  std::vector<std::vector<std::vector<double>>> work(
      grid.ulysses, std::vector<std::vector<double>>(R, std::vector<double>(R, 0.0)));
  for (int g = 0; g < grid.ulysses; ++g) {
    int moved_keys = 0;
    for (int j = 0; j < KB; ++j) moved_keys += partition.k_shard[g][j] != home_shard(j, KB, R);
    const std::vector<int> heads = partition.heads_of(g);
    if (heads.empty()) continue;
    if (moved_keys <= 2 * grid.ring) {
      std::vector<double> mass = group_row_shard_mass(stats, heads, R);
      apply_key_moves(stats, heads, partition.k_shard[g], R, mass);
      for (int i = 0; i < QB; ++i) {
        auto& out = work[g][partition.q_shard[g][i]];
        for (int b = 0; b < R; ++b) out[b] += mass[static_cast<size_t>(i) * R + b];
      }
    } else {
      // Most key blocks moved: count columns per query shard once, then sum by key shard.
      std::vector<ColumnCounter> counters(R, ColumnCounter(mask.words_per_row()));
      for (int h : heads)
        for (int i = 0; i < QB; ++i) counters[partition.q_shard[g][i]].add_row(mask.row_bits(h, i));
      for (int a = 0; a < R; ++a)
        for (int j = 0; j < KB; ++j)
          work[g][a][partition.k_shard[g][j]] += double(counters[a].count(j));
    }
  }
  return imbalance_from_work(grid, std::move(work));
}

}  // namespace plan
}  // namespace dbsp
