// One pass over a mask's bits that gives every planner its per-head block counts: per head and
// query segment, the rows are summed into bit-sliced column counts, which are then cut at the
// key segments.
#include "plan/mask_stats.hpp"

#include <algorithm>
#include <numeric>

#include "dbsp/block_layout.hpp"
#include "dbsp/error.hpp"
#include "plan/bit_slices.hpp"
#include "plan/head_set_rows.hpp"
#include "plan/home_shards.hpp"
#include "plan/parallel.hpp"

namespace dbsp {

MaskStats::MaskStats(const BlockMask& mask, int ranks) : data_(std::make_unique<Data>()) {
  require(ranks >= 1, "MaskStats: rank count must be >= 1, got ", ranks);
  Data& d = *data_;
  const int H = mask.heads(), QB = mask.q_blocks(), KB = mask.k_blocks();
  d.mask = &mask;
  d.ranks = ranks;
  const int words = mask.words_per_row();
  d.stride = plan::padded_words(words);
  d.q_segment_begin.resize(ranks + 1);
  d.k_segment_begin.resize(ranks + 1);
  for (int p = 0; p <= ranks; ++p) {
    d.q_segment_begin[p] = shard_begin(p, QB, ranks);
    d.k_segment_begin[p] = shard_begin(p, KB, ranks);
  }
  d.block_kept.assign(static_cast<size_t>(H) * ranks * ranks, 0);
  d.kept_per_head.assign(H, 0);
  d.column_planes = plan::planes_for(QB);
  d.column_counts.assign(static_cast<size_t>(H) * d.column_planes * d.stride, 0);
  const size_t rows = static_cast<size_t>(H) * QB;
  if (rows == 0 || words == 0) return;
  // Rows whose padded read would run past the mask's bits are read from zero-padded copies.
  plan::MaskRows& r = d.rows;
  r.bits = mask.row_bits(0, 0);
  r.words = words;
  r.stride = d.stride;
  r.q_blocks = QB;
  const size_t total_words = rows * words;
  r.padded_from = rows;
  while (r.padded_from > 0 && (r.padded_from - 1) * words + d.stride > total_words) --r.padded_from;
  d.padded_rows.assign((rows - r.padded_from) * d.stride, 0);
  for (size_t x = r.padded_from; x < rows; ++x) {
    std::copy_n(
        r.bits + x * words, words,
        d.padded_rows.begin() + static_cast<std::ptrdiff_t>((x - r.padded_from) * d.stride));
  }
  r.padded = d.padded_rows.data();

  // Per head, the rows of each query segment are added to the head's column counts; the key
  // segment sums after each query segment, less those before it, are that segment's blocks.
  const plan::SegmentPieces key_segments(d.k_segment_begin);
  int longest = 0;
  for (int s = 0; s < ranks; ++s)
    longest = std::max(longest, d.q_segment_begin[s + 1] - d.q_segment_begin[s]);
  const int planes = d.column_planes;
  // Heads are independent (each writes only its own counts), so they are spread over threads.
  plan::parallel_for(H, total_words >= plan::kThreadedWords, [&](int h) {
    std::vector<const uint64_t*> segment_rows(longest);
    std::vector<int64_t> before(ranks, 0), after(ranks);
    uint64_t* counts = d.column_counts.data() + static_cast<size_t>(h) * planes * d.stride;
    int64_t* out = d.block_kept.data() + static_cast<size_t>(h) * ranks * ranks;
    for (int s = 0; s < ranks; ++s) {
      const int first = d.q_segment_begin[s], count = d.q_segment_begin[s + 1] - first;
      // (From a copy of the row view: stores into the pointer array could alias its fields.)
      const plan::MaskRows view = d.rows;
      for (int i = 0; i < count; ++i) segment_rows[i] = view.row(h, first + i);
      plan::add_rows(segment_rows.data(), count, d.stride, counts, planes, s == 0);
      // Planes above the rows counted so far are zero.
      plan::segment_sums(counts, plan::planes_for(first + count), d.stride, key_segments,
                         after.data());
      for (int p = 0; p < ranks; ++p) out[s * ranks + p] = after[p] - before[p];
      std::swap(before, after);
    }
    d.kept_per_head[h] = std::accumulate(before.begin(), before.end(), int64_t{0});
  });
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

std::vector<std::vector<double>> home_work(const MaskStats::Data& stats,
                                           const std::vector<int>& heads, int ring) {
  const int P = stats.ranks, per_shard = P / ring;
  std::vector<int64_t> sum(static_cast<size_t>(P) * P, 0);
  for (int h : heads) {
    const int64_t* blocks = stats.blocks(h);
    for (int x = 0; x < P * P; ++x) sum[x] += blocks[x];
  }
  std::vector<std::vector<double>> work(ring, std::vector<double>(ring, 0.0));
  for (int s = 0; s < P; ++s)
    for (int p = 0; p < P; ++p) work[s / per_shard][p / per_shard] += double(sum[s * P + p]);
  return work;
}

ImbalanceReport evaluate(const MaskStats::Data& stats, const Partition& partition) {
  const Grid grid = partition.grid;
  const int R = grid.ring, QB = stats.mask->q_blocks(), KB = stats.mask->k_blocks();
  require(stats.ranks % R == 0, "evaluate: ring degree ", R,
          " does not divide the statistics' rank count ", stats.ranks);
  const std::vector<int> q_home = home_shards(QB, R), k_home = home_shards(KB, R);
  std::vector<std::vector<std::vector<double>>> work(grid.ulysses);
  // Groups are independent (each writes its own W); a group off its home shards reads its heads'
  // rows once.
  const size_t mask_words =
      static_cast<size_t>(stats.mask->heads()) * stats.mask->q_blocks() * stats.rows.words;
  if (!partition.head_splits.empty()) {
    // Shared heads (no ring): each group counts the rows it computes.
    for (int g = 0; g < grid.ulysses; ++g) {
      double kept = 0;
      for (int h : partition.heads_of(g)) {
        const BlockRange rows = partition.rows_of(g, h);
        if (rows.size() == QB) {
          kept += double(stats.kept_per_head[h]);
        } else {
          for (int i = rows.begin; i < rows.end; ++i) kept += stats.mask->row_kept(h, i);
        }
      }
      work[g] = {{kept}};
    }
    return imbalance_from_work(grid, std::move(work));
  }
  parallel_for(grid.ulysses, mask_words >= kThreadedWords, [&](int g) {
    const std::vector<int> heads = partition.heads_of(g);
    const bool home = partition.q_shard[g] == q_home && partition.k_shard[g] == k_home;
    if (home || heads.empty()) {
      work[g] = home_work(stats, heads, R);
    } else {
      work[g].assign(R, std::vector<double>(R, 0.0));
      const HeadSetRows rows(stats, heads);
      add_work(stats, {&rows}, partition.q_shard[g], partition.k_shard[g], R, work[g]);
    }
  });
  return imbalance_from_work(grid, std::move(work));
}

}  // namespace plan
}  // namespace dbsp
