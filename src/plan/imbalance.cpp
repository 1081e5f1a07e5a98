// rho_s (SPEC 3) for block and fine masks under any partition.
#include "dbsp/imbalance.hpp"

#include <algorithm>
#include <bit>

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

// Per head group, its key blocks as runs of consecutive blocks in one key shard: run n holds the
// key blocks below end_block[n] and the keys below end[n] (the last run ends at seq_k).
struct KeyShardRuns {
  std::vector<int> end_block;
  std::vector<int64_t> end;
  std::vector<int> shard;
};

std::vector<KeyShardRuns> key_shard_runs(const Partition& partition, const MaskGeometry& geo) {
  std::vector<KeyShardRuns> runs(static_cast<size_t>(partition.grid.ulysses));
  for (int g = 0; g < partition.grid.ulysses; ++g) {
    const std::vector<int>& k_shard = partition.k_shard[g];
    for (int j = 0; j < geo.k_blocks(); ++j) {
      if (j + 1 < geo.k_blocks() && k_shard[j + 1] == k_shard[j]) continue;
      runs[g].end_block.push_back(j + 1);
      runs[g].end.push_back(std::min<int64_t>(int64_t{j + 1} * geo.block_k, geo.seq_k));
      runs[g].shard.push_back(k_shard[j]);
    }
  }
  return runs;
}

// The first e in [begin, end) with keys[e] >= value, or end (keys sorted), searched outwards from
// `guess` with doubling steps: a right guess costs two reads of one cache line, where a binary
// search over the row would wait for memory at most of its probes.
int64_t lower_bound_near(const int32_t* keys, int64_t begin, int64_t end, int64_t value,
                         int64_t guess) {
  int64_t lo = std::clamp(guess, begin, end), hi = lo;  // the answer ends in [lo, hi]
  if (lo < end && keys[lo] < value) {
    lo = hi = lo + 1;
    for (int64_t step = 1; hi < end && keys[hi] < value; step *= 2) {
      lo = hi + 1;
      hi = std::min(end, hi + step);
    }
  } else {
    for (int64_t step = 1; lo > begin && keys[lo - 1] >= value; step *= 2) {
      hi = lo - 1;
      lo = std::max(begin, lo - step);
    }
  }
  return std::lower_bound(keys + lo, keys + hi, value) - keys;
}

// The set bits among bits [from, to) of a row.
int count_bits(const uint64_t* bits, int from, int to) {
  int set = 0;
  while (from < to) {
    const int w = from >> 6, stop = std::min(to, (w + 1) * 64), n = stop - from;
    const uint64_t chunk = bits[w] >> (from & 63);
    set += std::popcount(n < 64 ? chunk & ((uint64_t{1} << n) - 1) : chunk);
    from = stop;
  }
  return set;
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
      const BlockRange computed = partition.rows_of(g, h);
      for (int i = computed.begin; i < computed.end; ++i) {
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
  const Grid grid = partition.grid;
  const int R = grid.ring;
  const std::vector<KeyShardRuns> runs = key_shard_runs(partition, geo);
  const std::vector<int64_t>& offset = mask.row_offset();
  const int32_t* keys = mask.key_index().data();
  const BlockMask& covering = mask.covering_blocks();
  const int q_blocks = geo.q_blocks(), k_blocks = geo.k_blocks();
  const int64_t rows = int64_t{mask.heads()} * q_blocks;
  // queries[(g * R + a) * R + b]: kept keys of group g, query shard a, key shard b, each counted
  // with the queries of its query block. Integer sums do not depend on the order they are added
  // in, so the threads' partial sums give the serial result exactly.
  const int cells = grid.ulysses * R * R;
  std::vector<int64_t> queries(static_cast<size_t>(cells), 0);
  int64_t* sum = queries.data();
  const bool parallel = mask.kept() > (int64_t{1} << 16);
  // Per head, the split that shares its rows with another group (-1: none).
  std::vector<int> split_of(static_cast<size_t>(mask.heads()), -1);
  for (size_t s = 0; s < partition.head_splits.size(); ++s) {
    split_of[partition.head_splits[s].head] = static_cast<int>(s);
  }
#pragma omp parallel reduction(+ : sum[:cells]) if (parallel)
  {
    std::vector<int64_t> guess;
#pragma omp for schedule(dynamic, 64)
    for (int64_t r = 0; r < rows; ++r) {
      const int h = static_cast<int>(r / q_blocks), i = static_cast<int>(r % q_blocks);
      int64_t e = offset[r];
      const int64_t end = offset[r + 1];
      if (e == end) continue;
      const int split = split_of[h];
      const int g = split >= 0 && partition.head_splits[split].rows.contains(i)
                        ? partition.head_splits[split].group
                        : partition.head_group[h];
      const int64_t weight = std::min<int64_t>(geo.block_q, geo.seq_q - int64_t{i} * geo.block_q);
      int64_t* out = sum + (int64_t{g} * R + partition.q_shard[g][i]) * R;
      // Keys are sorted: each run of key blocks in one shard holds one range of the row's keys. Its
      // end is guessed from the covering blocks before it (right when every covered block holds
      // as many keys), then searched near the guess; the guesses only save time. All guesses are
      // made (and their cache lines requested) first, so that the row's memory reads overlap.
      const KeyShardRuns& group = runs[g];
      const uint64_t* bits = covering.row_bits(h, i);
      const int64_t row_keys = end - e, covered = std::max(1, count_bits(bits, 0, k_blocks));
      const size_t last = group.shard.size() - 1;
      guess.resize(last);
      int covered_before = 0, first_block = 0;
      for (size_t n = 0; n < last; ++n) {
        covered_before += count_bits(bits, first_block, group.end_block[n]);
        first_block = group.end_block[n];
        guess[n] = e + covered_before * row_keys / covered;
        __builtin_prefetch(keys + std::min(guess[n], end - 1));
      }
      for (size_t n = 0; n < last && e < end; ++n) {
        const int64_t run_end = lower_bound_near(keys, e, end, group.end[n], guess[n]);
        out[group.shard[n]] += (run_end - e) * weight;
        e = run_end;
      }
      out[group.shard[last]] += (end - e) * weight;
    }
  }
  // An M x 1 slice costs in proportion to the queries it serves (short last block): one division
  // per cell, so the work is the exact sum rounded once.
  Work work = empty_work(grid);
  for (int g = 0; g < grid.ulysses; ++g)
    for (int a = 0; a < R; ++a)
      for (int b = 0; b < R; ++b)
        work[g][a][b] = double(queries[(size_t(g) * R + a) * R + b]) / geo.block_q;
  return imbalance_from_work(grid, std::move(work));
}

}  // namespace dbsp
