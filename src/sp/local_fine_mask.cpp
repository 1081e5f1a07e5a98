// local_fine_mask(s): the key blocks fall into runs that share a step and a renumbering (a ring
// step's shard is mostly consecutive blocks); a row's keys are sorted, so each run's keys are one
// range of the row, found by a guess from the covering blocks or by counting. One pass counts each
// step's keys per row, one copies them renumbered; the local covering blocks come from the mask's,
// without the keys.
#include "sp/local_fine_mask.hpp"

#include <algorithm>
#include <bit>
#include <limits>
#include <utility>

#include "dbsp/error.hpp"
#include "mask/fine_mask_parts.hpp"
#include "mask/huge_pages.hpp"

namespace dbsp::sp {
namespace {

// One step's key blocks and their layout in the step buffer.
struct StepBlocks {
  const std::vector<int>* key_blocks;
  const BlockLayout* key_layout;
};

// Consecutive global key blocks that go to one step with one renumbering (key + shift), or to no
// step (step -1); in a step their places in its buffer are consecutive too. Run n covers the key
// blocks [first_block[n], first_block[n + 1]) and the tokens below end[n].
struct KeyRuns {
  std::vector<int> first_block;
  std::vector<int64_t> end;
  std::vector<int> step;
  std::vector<int32_t> shift;
};

// The first e in [from, end) with keys[e] >= value, or end; keys[from] < value. `guess` is tried
// first (one probe; masks with as many keys in every block are found so); else the keys are
// counted 32 at a time without branches (in sorted keys the count below `value` is the offset of
// the first one at least `value`; the 32 compares are independent, so a round costs about one
// dependent step). That walk reads the keys in order, at memory speed: a binary or galloping
// search reads less but waits for memory at every probe, and is slower here.
int64_t first_at_least(const int32_t* keys, int64_t from, int64_t end, int64_t value,
                       int64_t guess) {
  if (keys[end - 1] < value) return end;  // the row's last run
  if (guess > from && guess < end && keys[guess - 1] < value && keys[guess] >= value) return guess;
  // In 32 bits: past 2^31 - 1 every key is below `value`.
  const auto last =
      static_cast<int32_t>(std::min(value, int64_t{std::numeric_limits<int32_t>::max()} + 1) - 1);
  constexpr int kRound = 32;
  int64_t e = from;
  for (;;) {
    if (end - e < kRound) {
      while (keys[e] <= last) ++e;  // stops before `end`: keys[end - 1] >= value
      return e;
    }
    int below = 0;
    for (int x = 0; x < kRound; ++x) below += keys[e + x] <= last;
    e += below;
    if (below < kRound) return e;
  }
}

// The set bits among [from_bit, from_bit + count) of `bits`.
int64_t count_bits(const uint64_t* bits, int64_t from_bit, int64_t count) {
  int64_t set = 0;
  for (int64_t bit = from_bit, stop = from_bit + count; bit < stop;) {
    const int64_t w = bit >> 6, word_end = std::min(stop, (w + 1) * 64);
    const int n = static_cast<int>(word_end - bit);
    const uint64_t chunk = bits[w] >> (bit & 63);
    set += std::popcount(n < 64 ? chunk & ((uint64_t{1} << n) - 1) : chunk);
    bit = word_end;
  }
  return set;
}

// ORs the bits [from_bit, from_bit + count) of `from` into `to` from bit `to_bit` on, a word at a
// time; returns how many are set.
int64_t or_bits(const uint64_t* from, int64_t from_bit, uint64_t* to, int64_t to_bit,
                int64_t count) {
  int64_t set = 0;
  while (count > 0) {
    const int n = static_cast<int>(std::min<int64_t>(64, count));
    const int64_t w = from_bit >> 6, v = to_bit >> 6;
    const int o = static_cast<int>(from_bit & 63), p = static_cast<int>(to_bit & 63);
    uint64_t chunk = from[w] >> o;
    if (o + n > 64) chunk |= from[w + 1] << (64 - o);
    if (n < 64) chunk &= (uint64_t{1} << n) - 1;
    to[v] |= chunk << p;
    if (p + n > 64) to[v + 1] |= chunk >> (64 - p);
    set += std::popcount(chunk);
    from_bit += n;
    to_bit += n;
    count -= n;
  }
  return set;
}

std::vector<LocalFineMask> build_local(const FineMask& mask, const std::vector<int>& heads,
                                       const std::vector<int>& q_blocks,
                                       const std::vector<StepBlocks>& steps,
                                       std::vector<detail::FineMaskLists>* storage,
                                       const std::vector<BlockRange>* head_rows) {
  require(head_rows == nullptr || head_rows->size() == heads.size(),
          "local_fine_mask: ", head_rows ? head_rows->size() : 0, " row ranges for ", heads.size(),
          " heads");
  const MaskGeometry& geometry = mask.geometry();
  const int64_t block_q = geometry.block_q, block_k = geometry.block_k;
  const int k_blocks = geometry.k_blocks();
  const int S = static_cast<int>(steps.size());
  if (S == 0) return {};
  // Per global key block: the step whose buffer holds it (-1: none), its place in that buffer,
  // and what turns its keys into the buffer's tokens.
  std::vector<int> step_of(static_cast<size_t>(k_blocks), -1), place(step_of);
  std::vector<int64_t> shift(static_cast<size_t>(k_blocks), 0);
  for (int s = 0; s < S; ++s) {
    const std::vector<int>& key_blocks = *steps[s].key_blocks;
    const BlockLayout& key_layout = *steps[s].key_layout;
    require(key_layout.blocks() == static_cast<int>(key_blocks.size()),
            "local_fine_mask: ", key_blocks.size(), " key blocks but a step layout of ",
            key_layout.blocks());
    for (size_t n = 0; n < key_blocks.size(); ++n) {
      const int j = key_blocks[n];
      require(j >= 0 && j < k_blocks && (n == 0 || key_blocks[n - 1] < j),
              "local_fine_mask: key blocks must be ascending and inside [0, ", k_blocks, ")");
      require(step_of[j] < 0, "local_fine_masks: key block ", j, " is in steps ", step_of[j],
              " and ", s, "; a key block may be in one step only");
      const int64_t size = std::min(geometry.seq_k, (j + 1) * block_k) - j * block_k;
      require(key_layout.size(static_cast<int>(n)) == size, "local_fine_mask: key block ", j,
              " holds ", size, " keys but the step layout gives it ",
              key_layout.size(static_cast<int>(n)));
      step_of[j] = s;
      place[j] = static_cast<int>(n);
      shift[j] = key_layout.start[n] - j * block_k;
    }
  }
  int64_t seq_q = 0;
  for (int i : q_blocks) {
    require(i >= 0 && i < mask.q_blocks(), "local_fine_mask: query block ", i, " outside [0, ",
            mask.q_blocks(), ")");
    seq_q += std::min(geometry.seq_q, (i + 1) * block_q) - i * block_q;
  }
  for (int h : heads) {
    require(h >= 0 && h < mask.heads(), "local_fine_mask: head ", h, " outside [0, ", mask.heads(),
            ")");
  }
  KeyRuns runs;
  for (int j = 0; j < k_blocks; ++j) {
    const int s = step_of[j];
    const auto j_shift = static_cast<int32_t>(s < 0 ? 0 : shift[j]);  // buffers hold < 2^31 keys
    if (runs.step.empty() || runs.step.back() != s || runs.shift.back() != j_shift) {
      runs.first_block.push_back(j);
      runs.end.push_back(0);
      runs.step.push_back(s);
      runs.shift.push_back(j_shift);
    }
    runs.end.back() = std::min(geometry.seq_k, (j + 1) * block_k);
  }
  runs.first_block.push_back(k_blocks);

  const int64_t row_blocks = static_cast<int64_t>(q_blocks.size());
  const int64_t rows = static_cast<int64_t>(heads.size()) * row_blocks;
  const std::vector<int64_t>& offset = mask.row_offset();
  const int32_t* keys = mask.key_index().data();
  auto global_row = [&](int64_t r) {
    return int64_t{heads[r / row_blocks]} * mask.q_blocks() + q_blocks[r % row_blocks];
  };
  const BlockMask& mask_covering = mask.covering_blocks();
  // visit(run, first, end): the kept keys [first, end) of row r that lie in run `run`. Where a run
  // ends is first guessed from the row's covering blocks: as many keys per covering block as in
  // the runs before (the whole row's mean in the first one).
  auto computed = [&](int64_t r) {
    return head_rows == nullptr || (*head_rows)[r / row_blocks].contains(int(r % row_blocks));
  };
  auto for_each_run = [&](int64_t r, auto&& visit) {
    if (!computed(r)) return;
    const int64_t g = global_row(r);
    const uint64_t* bits = mask_covering.row_bits(heads[r / row_blocks], q_blocks[r % row_blocks]);
    const int64_t begin = offset[g], end = offset[g + 1];
    if (begin == end) return;
    const int64_t row_covering = count_bits(bits, 0, k_blocks);
    int64_t covering_before = 0;
    int run = 0;  // runs ascend with the keys: a step past those without keys beats a division
    for (int64_t e = begin; e < end;) {
      while (runs.end[run] <= keys[e]) ++run;
      const int64_t covering = count_bits(bits, runs.first_block[run],
                                          runs.first_block[run + 1] - runs.first_block[run]);
      const int64_t guess = covering_before > 0 ? e + covering * (e - begin) / covering_before
                                                : e + covering * (end - begin) / row_covering;
      const int64_t run_end = first_at_least(keys, e, end, runs.end[run], guess);
      visit(run, e, run_end);
      covering_before += covering;
      e = run_end;
    }
  };
  int64_t row_keys = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (!computed(r)) continue;
    const int64_t g = global_row(r);
    row_keys += offset[g + 1] - offset[g];
  }
  const bool parallel = row_keys > (int64_t{1} << 16);

  // Pass 1: per step and row the keys in the step's blocks (into row_offset[s][r + 1]), and the
  // local covering blocks: the row's covering blocks in each run of the step, copied to their
  // places in its buffer.
  std::vector<detail::FineMaskLists> lists(static_cast<size_t>(S));
  if (storage != nullptr) {
    for (size_t s = 0; s < lists.size() && s < storage->size(); ++s) {
      lists[s] = std::move((*storage)[s]);
    }
    storage->clear();
  }
  for (detail::FineMaskLists& step : lists)
    step.row_offset.assign(static_cast<size_t>(rows) + 1, 0);
  std::vector<BlockMask> covering;
  std::vector<uint64_t*> covering_bits;
  std::vector<int> covering_words;
  for (int s = 0; s < S; ++s) {
    const MaskGeometry local_geometry{seq_q, steps[s].key_layout->tokens(), geometry.block_q,
                                      geometry.block_k};
    covering.emplace_back(static_cast<int>(heads.size()), local_geometry);
    covering_bits.push_back(covering.back().row_bits(0, 0));  // rows after one another
    covering_words.push_back(covering.back().words_per_row());
  }
  std::vector<int64_t> step_blocks(static_cast<size_t>(S), 0);
  int64_t* blocks = step_blocks.data();
#pragma omp parallel for schedule(dynamic, 16) reduction(+ : blocks[:S]) if (parallel)
  for (int64_t r = 0; r < rows; ++r) {
    const uint64_t* bits = mask_covering.row_bits(heads[r / row_blocks], q_blocks[r % row_blocks]);
    for_each_run(r, [&](int run, int64_t first, int64_t end) {
      const int s = runs.step[run];
      if (s < 0) return;
      lists[s].row_offset[r + 1] += end - first;
      const int j = runs.first_block[run];
      blocks[s] += or_bits(bits, j, covering_bits[s] + r * covering_words[s], place[j],
                           runs.first_block[run + 1] - j);
    });
  }
  for (detail::FineMaskLists& step : lists) {
    std::vector<int64_t>& offsets = step.row_offset;
    for (int64_t r = 0; r < rows; ++r) offsets[r + 1] += offsets[r];
    // Reused memory keeps its old keys until pass 2 overwrites them; only growth is cleared.
    detail::reserve_in_huge_pages(step.key_index, static_cast<size_t>(offsets.back()));
    step.key_index.resize(static_cast<size_t>(offsets.back()));
  }
  // Pass 2: the keys, renumbered to their step buffer's tokens.
#pragma omp parallel if (parallel)
  {
    std::vector<int32_t*> out(static_cast<size_t>(S));
#pragma omp for schedule(dynamic, 16)
    for (int64_t r = 0; r < rows; ++r) {
      for (int s = 0; s < S; ++s) out[s] = lists[s].key_index.data() + lists[s].row_offset[r];
      for_each_run(r, [&](int run, int64_t first, int64_t end) {
        const int s = runs.step[run];
        if (s < 0) return;
        const int32_t delta = runs.shift[run];
        int32_t* to = out[s];
        for (int64_t e = first; e < end; ++e) *to++ = keys[e] + delta;
        out[s] = to;
      });
    }
  }
  std::vector<LocalFineMask> local(static_cast<size_t>(S));
  for (int s = 0; s < S; ++s) {
    local[s].mask = detail::FineMaskParts::assemble(
        static_cast<int>(heads.size()), covering[s].geometry(), std::move(lists[s].row_offset),
        std::move(lists[s].key_index), std::move(covering[s]));
    local[s].blocks = step_blocks[s];
  }
  return local;
}

}  // namespace

LocalFineMask local_fine_mask(const FineMask& mask, const std::vector<int>& heads,
                              const std::vector<int>& q_blocks, const std::vector<int>& key_blocks,
                              const BlockLayout& key_layout,
                              const std::vector<BlockRange>* head_rows) {
  return std::move(
      build_local(mask, heads, q_blocks, {{&key_blocks, &key_layout}}, nullptr, head_rows).front());
}

std::vector<LocalFineMask> local_fine_masks(const FineMask& mask, const std::vector<int>& heads,
                                            const std::vector<int>& q_blocks,
                                            const std::vector<RingStep>& steps,
                                            std::vector<detail::FineMaskLists>* storage,
                                            const std::vector<BlockRange>* head_rows) {
  std::vector<StepBlocks> blocks;
  blocks.reserve(steps.size());
  for (const RingStep& step : steps) blocks.push_back({&step.key_blocks, &step.key_layout});
  return build_local(mask, heads, q_blocks, blocks, storage, head_rows);
}

}  // namespace dbsp::sp
