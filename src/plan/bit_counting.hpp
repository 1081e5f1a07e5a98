// Bit-counting kernels over bit-packed mask rows: range popcounts and per-column counts.
#pragma once

#include <bit>
#include <cstdint>
#include <vector>

namespace dbsp::plan {

// Kept bits in [begin, end) of a bit row.
inline int popcount_range(const uint64_t* row, int begin, int end) {
  if (begin >= end) return 0;
  const int first = begin >> 6, last = (end - 1) >> 6;
  const uint64_t head_mask = ~uint64_t{0} << (begin & 63);
  const uint64_t tail_mask = ~uint64_t{0} >> (63 - ((end - 1) & 63));
  if (first == last) return std::popcount(row[first] & head_mask & tail_mask);
  int count = std::popcount(row[first] & head_mask) + std::popcount(row[last] & tail_mask);
  for (int w = first + 1; w < last; ++w) count += std::popcount(row[w]);
  return count;
}

// Per shard, the bit row of the key blocks it holds: out[shard * words + word].
inline std::vector<uint64_t> shard_column_bits(const std::vector<int>& k_shard, int shards,
                                               int words) {
  std::vector<uint64_t> bits(static_cast<size_t>(shards) * words, 0);
  for (size_t j = 0; j < k_shard.size(); ++j) {
    bits[static_cast<size_t>(k_shard[j]) * words + (j >> 6)] |= uint64_t{1} << (j & 63);
  }
  return bits;
}

// Per-column counts of many bit rows (a positional popcount). Rows are buffered and reduced 16 at
// a time through a carry-save adder tree (Harley-Seal): ones/twos/fours/eights persist per word,
// and only the sixteens carry reaches the bit-sliced upper counter, so a row word costs about five
// logic operations and no branches.
class ColumnCounter {
 public:
  explicit ColumnCounter(int words)
      : words_(words),
        low_(static_cast<size_t>(words) * 4, 0),
        high_(static_cast<size_t>(words) * kHighPlanes, 0),
        zero_row_(static_cast<size_t>(words), 0) {}

  void add_row(const uint64_t* row) {
    pending_[pending_count_++] = row;
    if (pending_count_ == kBatch) flush();
  }
  // Count of column j; finishes any buffered rows first.
  int64_t count(int column) {
    if (pending_count_ > 0) {
      while (pending_count_ < kBatch) pending_[pending_count_++] = zero_row_.data();
      flush();
    }
    const int w = column >> 6, b = column & 63;
    const uint64_t* low = low_.data() + static_cast<size_t>(w) * 4;
    const uint64_t* high = high_.data() + static_cast<size_t>(w) * kHighPlanes;
    int64_t value = 0;
    for (int k = 0; k < 4; ++k) value += int64_t((low[k] >> b) & 1) << k;
    for (int k = 0; k < kHighPlanes; ++k) value += int64_t((high[k] >> b) & 1) << (k + 4);
    return value;
  }

 private:
  static constexpr int kBatch = 16;
  static constexpr int kHighPlanes = 28;  // counts up to 2^32 rows

  static void csa(uint64_t& high, uint64_t& low, uint64_t a, uint64_t b, uint64_t c) {
    const uint64_t u = a ^ b;
    high = (a & b) | (u & c);
    low = u ^ c;
  }

  void flush() {
    for (int w = 0; w < words_; ++w) {
      uint64_t* low = low_.data() + static_cast<size_t>(w) * 4;
      uint64_t ones = low[0], twos = low[1], fours = low[2], eights = low[3];
      uint64_t twos_a, twos_b, fours_a, fours_b, eights_a, eights_b, sixteens;
      auto d = [&](int k) { return pending_[k][w]; };
      csa(twos_a, ones, ones, d(0), d(1));
      csa(twos_b, ones, ones, d(2), d(3));
      csa(fours_a, twos, twos, twos_a, twos_b);
      csa(twos_a, ones, ones, d(4), d(5));
      csa(twos_b, ones, ones, d(6), d(7));
      csa(fours_b, twos, twos, twos_a, twos_b);
      csa(eights_a, fours, fours, fours_a, fours_b);
      csa(twos_a, ones, ones, d(8), d(9));
      csa(twos_b, ones, ones, d(10), d(11));
      csa(fours_a, twos, twos, twos_a, twos_b);
      csa(twos_a, ones, ones, d(12), d(13));
      csa(twos_b, ones, ones, d(14), d(15));
      csa(fours_b, twos, twos, twos_a, twos_b);
      csa(eights_b, fours, fours, fours_a, fours_b);
      csa(sixteens, eights, eights, eights_a, eights_b);
      low[0] = ones, low[1] = twos, low[2] = fours, low[3] = eights;
      uint64_t* high = high_.data() + static_cast<size_t>(w) * kHighPlanes;
      for (int k = 0; sixteens && k < kHighPlanes; ++k) {
        const uint64_t carry = high[k] & sixteens;
        high[k] ^= sixteens;
        sixteens = carry;
      }
    }
    pending_count_ = 0;
  }

  int words_;
  std::vector<uint64_t> low_;   // [words][4]: ones, twos, fours, eights
  std::vector<uint64_t> high_;  // [words][kHighPlanes]: bit k of count / 16
  std::vector<uint64_t> zero_row_;
  const uint64_t* pending_[kBatch] = {};
  int pending_count_ = 0;
};

}  // namespace dbsp::plan
