// Head-summed rows: built by the bit-sliced adder, read by weighted popcounts.
#include "plan/head_set_rows.hpp"

#include <algorithm>
#include <bit>

#include "dbsp/block_layout.hpp"
#include "dbsp/error.hpp"
#include "plan/bit_slices.hpp"
#include "plan/home_shards.hpp"
#include "plan/parallel.hpp"

namespace dbsp::plan {
namespace {

// Column counts, bit-sliced, over the query blocks `rows` of every set: each set's plane k is
// counted over the rows, and the count enters the sum shifted by k. Returns the sum's planes.
int column_counts_of(const MaskStats::Data& stats, const HeadSets& sets,
                     const std::vector<int>& rows, std::vector<uint64_t>& out) {
  const int stride = stats.stride;
  const int row_planes = planes_for(int64_t(rows.size()));
  int heads = 0;
  for (const HeadSetRows* set : sets) heads += static_cast<int>(set->heads().size());
  const int out_planes = planes_for(int64_t(heads) * int64_t(rows.size()));
  out.assign(static_cast<size_t>(out_planes) * stride, 0);
  std::vector<uint64_t> plane_counts(static_cast<size_t>(row_planes) * stride);
  std::vector<const uint64_t*> pointers(rows.size());
  for (const HeadSetRows* set : sets) {
    for (int k = 0; k < set->planes(); ++k) {
      for (size_t r = 0; r < rows.size(); ++r)
        pointers[r] = set->counts(rows[r]) + static_cast<size_t>(k) * stride;
      add_rows(pointers.data(), static_cast<int>(rows.size()), stride, plane_counts.data(),
               row_planes, true);
      add_counts(plane_counts.data(), row_planes, out.data() + static_cast<size_t>(k) * stride,
                 out_planes - k, stride);
    }
  }
  return out_planes;
}

}  // namespace

HeadSetRows::HeadSetRows(const MaskStats::Data& stats, std::vector<int> heads,
                         const std::vector<int>& key_shard, int shard_count)
    : heads_(std::move(heads)),
      planes_(planes_for(int64_t(heads_.size()))),
      stride_(stats.stride),
      shard_count_(shard_count) {
  const int QB = stats.mask->q_blocks(), R = shard_count;
  require(R == 0 || static_cast<int>(key_shard.size()) == stats.mask->k_blocks(),
          "HeadSetRows: ", key_shard.size(), " key shards given for ", stats.mask->k_blocks(),
          " key blocks");
  // sum_heads writes every counter word, so the buffer starts uninitialized.
  counts_ = std::make_unique_for_overwrite<uint64_t[]>(static_cast<size_t>(QB) * planes_ * stride_);
  if (R > 0) shard_mass_.assign(static_cast<size_t>(QB) * R, 0);
  if (stride_ == 0) return;
  const SegmentPieces key_shards(key_shard, R);
  const size_t row_step = static_cast<size_t>(planes_) * stride_;
  // A block of query blocks at a time, so that its shard masses are read while still in cache.
  // Blocks write disjoint counters and masses, so they are spread over threads when the set reads
  // enough of the mask.
  constexpr int kBlock = 64;
  const int chunks = (QB + kBlock - 1) / kBlock;
  const size_t words_read = heads_.size() * static_cast<size_t>(QB) * stride_;
  parallel_for(chunks, words_read >= kThreadedWords, [&](int chunk) {
    const int first = chunk * kBlock, end = std::min(QB, first + kBlock);
    uint64_t* counts = counts_.get() + static_cast<size_t>(first) * row_step;
    sum_heads(stats.rows, heads_.data(), static_cast<int>(heads_.size()), first, end, counts,
              planes_, row_step);
    if (R > 0) {
      segment_sums(counts, planes_, stride_, row_step, end - first, key_shards,
                   shard_mass_.data() + static_cast<size_t>(first) * R, R);
    }
  });
}

std::vector<double> row_shard_mass(const MaskStats::Data& stats, const HeadSets& sets, int ring) {
  const size_t size = static_cast<size_t>(stats.mask->q_blocks()) * ring;
  std::vector<int64_t> sum(size, 0);
  for (const HeadSetRows* set : sets) {
    require(set->shard_count() == ring, "row_shard_mass: head set counted for ", set->shard_count(),
            " key shards, asked for ", ring);
    const std::vector<int32_t>& m = set->shard_mass();
    for (size_t x = 0; x < size; ++x) sum[x] += m[x];
  }
  return std::vector<double>(sum.begin(), sum.end());
}

std::vector<double> row_mass(const MaskStats::Data& stats, const HeadSets& sets) {
  const int QB = stats.mask->q_blocks(), stride = stats.stride;
  const int words = stats.rows.words;  // the padding words past them count nothing real
  std::vector<double> mass(QB, 0.0);
  for (const HeadSetRows* set : sets) {
    const std::vector<int32_t>& shard = set->shard_mass();
    const int R = set->shard_count();
    for (int i = 0; i < QB; ++i) {
      int64_t sum = 0;
      if (R > 0) {
        for (int c = 0; c < R; ++c) sum += shard[static_cast<size_t>(i) * R + c];
      } else {
        const uint64_t* counts = set->counts(i);
        for (int k = 0; k < set->planes(); ++k) {
          int64_t plane = 0;
          for (int w = 0; w < words; ++w) plane += std::popcount(counts[k * stride + w]);
          sum += plane << k;
        }
      }
      mass[i] += double(sum);
    }
  }
  return mass;
}

std::vector<double> column_mass(const MaskStats::Data& stats, const std::vector<int>& heads) {
  const int KB = stats.mask->k_blocks(), stride = stats.stride, planes = stats.column_planes;
  std::vector<int32_t> column(KB);
  // The heads' counts summed bit-sliced, then turned into integers once (column_counts takes
  // counts of up to 16 bits at full speed): plane k of every head goes through the adder, and
  // the count of its bits enters the sum shifted by k.
  const int head_count = static_cast<int>(heads.size());
  const int sum_planes = planes_for(int64_t(head_count) * stats.mask->q_blocks());
  if (sum_planes <= 16) {
    const int head_planes = planes_for(head_count);
    std::vector<uint64_t> sum(static_cast<size_t>(sum_planes) * stride, 0);
    std::vector<uint64_t> plane_counts(static_cast<size_t>(head_planes) * stride);
    std::vector<const uint64_t*> pointers(head_count);
    for (int k = 0; k < planes; ++k) {
      for (int x = 0; x < head_count; ++x)
        pointers[x] = stats.columns(heads[x]) + static_cast<size_t>(k) * stride;
      add_rows(pointers.data(), head_count, stride, plane_counts.data(), head_planes, true);
      add_counts(plane_counts.data(), head_planes, sum.data() + static_cast<size_t>(k) * stride,
                 sum_planes - k, stride);
    }
    column_counts(sum.data(), sum_planes, stride, KB, column.data());
    return std::vector<double>(column.begin(), column.end());
  }
  std::vector<int64_t> sum(KB, 0);
  for (int h : heads) {
    column_counts(stats.columns(h), planes, stride, KB, column.data());
    for (int j = 0; j < KB; ++j) sum[j] += column[j];
  }
  return std::vector<double>(sum.begin(), sum.end());
}

std::vector<double> column_mass(const MaskStats::Data& stats, const HeadSets& sets) {
  std::vector<int> heads;
  for (const HeadSetRows* set : sets)
    heads.insert(heads.end(), set->heads().begin(), set->heads().end());
  return column_mass(stats, heads);
}

void add_work(const MaskStats::Data& stats, const HeadSets& sets, const std::vector<int>& q_shard,
              const std::vector<int>& k_shard, int ring, std::vector<std::vector<double>>& work) {
  const int stride = stats.stride, KB = stats.mask->k_blocks();
  std::vector<uint64_t> shard_bits(static_cast<size_t>(ring) * stride, 0);
  for (int j = 0; j < KB; ++j)
    shard_bits[static_cast<size_t>(k_shard[j]) * stride + (j >> 6)] |= uint64_t{1} << (j & 63);
  std::vector<std::vector<int>> rows_of(ring);
  for (size_t i = 0; i < q_shard.size(); ++i) rows_of[q_shard[i]].push_back(int(i));
  std::vector<uint64_t> counts;
  for (int a = 0; a < ring; ++a) {
    if (rows_of[a].empty()) continue;
    const int planes = column_counts_of(stats, sets, rows_of[a], counts);
    for (int b = 0; b < ring; ++b) {
      const uint64_t* sel = shard_bits.data() + static_cast<size_t>(b) * stride;
      int64_t sum = 0;
      for (int w = 0; w < stride; ++w) {
        if (sel[w]) sum += masked_sum(counts.data(), planes, stride, w, sel[w]);
      }
      work[a][b] += double(sum);
    }
  }
}

}  // namespace dbsp::plan
