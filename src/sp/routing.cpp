// build_routing: the slab lists of the all-to-all and of every ring step. Both sides of a message
// enumerate its slabs in the same order (head ascending, then block ascending), so the lists match
// without being exchanged; runs of consecutive blocks of one head merge into one slab.
#include "sp/routing.hpp"

#include <algorithm>
#include <bit>

#include "dbsp/error.hpp"

namespace dbsp::sp {
namespace {

using Bits = std::vector<uint64_t>;

bool test_bit(const Bits& bits, int j) { return (bits[j >> 6] >> (j & 63)) & 1u; }

bool row_nonempty(const BlockMask& mask, int head, int q_block) {
  const uint64_t* bits = mask.row_bits(head, q_block);
  uint64_t any = 0;
  for (int w = 0; w < mask.words_per_row(); ++w) any |= bits[w];
  return any != 0;
}

// OR of every row of one head over the words [first_word, end_word) (the others stay zero): the
// key blocks in that range that some query of the head needs. The rows are contiguous.
Bits column_union(const BlockMask& mask, int head, int first_word, int end_word) {
  const int words = mask.words_per_row();
  Bits out(static_cast<size_t>(words), 0);
  if (first_word >= end_word || mask.q_blocks() == 0) return out;
  const uint64_t* bits = mask.row_bits(head, 0);
  for (int i = 0; i < mask.q_blocks(); ++i, bits += words) {
    for (int w = first_word; w < end_word; ++w) out[w] |= bits[w];
  }
  return out;
}

// Whether passes over this many mask words are worth a parallel region.
bool worth_threads(int64_t words) { return words > (int64_t{1} << 16); }

// OR of the rows `q_blocks` of one head: the key blocks any of those queries needs.
Bits rows_union(const BlockMask& mask, int head, const std::vector<int>& q_blocks) {
  const int words = mask.words_per_row();
  Bits out(static_cast<size_t>(words), 0);
  if (q_blocks.empty() || words == 0) return out;
  const uint64_t* head_bits = mask.row_bits(head, 0);
  uint64_t* acc = out.data();
  for (int i : q_blocks) {
    const uint64_t* bits = head_bits + static_cast<size_t>(i) * words;
    for (int w = 0; w < words; ++w) acc[w] |= bits[w];
  }
  return out;
}

// The home shard of every block: [blocks].
std::vector<int> home_shards_of(int blocks, int parts) {
  std::vector<int> home(static_cast<size_t>(blocks));
  for (int i = 0; i < blocks; ++i) home[i] = home_shard(i, blocks, parts);
  return home;
}

// Appends a slab, merged into the previous one when it continues it (same head, next rows): the
// packed bytes are the same either way, and longer slabs make fewer copies.
void append_slab(std::vector<Slab>& slabs, Slab slab) {
  if (!slabs.empty()) {
    Slab& last = slabs.back();
    if (last.head == slab.head && last.row + last.rows == slab.row) {
      last.rows += slab.rows;
      return;
    }
  }
  slabs.push_back(slab);
}

// Slabs bound for several lists (one per peer), built run by run: consecutive rows of one head
// for the same peer extend the open run, which reaches its list when the run breaks. Each list
// still receives its slabs in enumeration order.
class SlabRuns {
 public:
  explicit SlabRuns(std::vector<std::vector<Slab>>& lists) : lists_(lists) {}
  ~SlabRuns() { flush(); }
  SlabRuns(const SlabRuns&) = delete;
  SlabRuns& operator=(const SlabRuns&) = delete;

  void add(int peer, Slab slab) {
    if (peer == peer_ && slab.head == run_.head && run_.row + run_.rows == slab.row) {
      run_.rows += slab.rows;
      return;
    }
    flush();
    peer_ = peer;
    run_ = slab;
  }
  void flush() {
    if (peer_ >= 0) append_slab(lists_[peer_], run_);
    peer_ = -1;
  }

 private:
  std::vector<std::vector<Slab>>& lists_;
  int peer_ = -1;
  Slab run_;
};

}  // namespace

BlockCsr local_block_csr(const BlockMask& mask, const std::vector<int>& heads,
                         const std::vector<int>& q_blocks, const std::vector<int>& key_blocks,
                         bool with_indices, const std::vector<BlockRange>* head_rows) {
  require(head_rows == nullptr || head_rows->size() == heads.size(),
          "local_block_csr: ", head_rows ? head_rows->size() : 0, " row ranges for ", heads.size(),
          " heads");
  std::vector<int32_t> local_key(static_cast<size_t>(mask.k_blocks()), -1);
  Bits wanted(static_cast<size_t>(mask.words_per_row()), 0);
  for (size_t n = 0; n < key_blocks.size(); ++n) {
    const int j = key_blocks[n];
    require(j >= 0 && j < mask.k_blocks() && (n == 0 || key_blocks[n - 1] < j),
            "local_block_csr: key blocks must be ascending and inside [0, ", mask.k_blocks(), ")");
    local_key[j] = static_cast<int32_t>(n);
    wanted[j >> 6] |= uint64_t{1} << (j & 63);
  }
  BlockCsr csr;
  csr.heads = static_cast<int>(heads.size());
  csr.q_blocks = static_cast<int>(q_blocks.size());
  csr.k_blocks = static_cast<int>(key_blocks.size());
  // Two passes: counts by popcount, then the indices into a buffer of the final size. Rows are
  // independent, so both passes run in parallel: at video sizes the CSR holds millions of
  // indices and is built again for every layer whose mask changed.
  const int64_t rows = static_cast<int64_t>(heads.size() * q_blocks.size());
  const int64_t row_blocks = static_cast<int64_t>(q_blocks.size());
  const int words = mask.words_per_row();
  const bool parallel = rows * words > (1 << 16);
  csr.kv_count.assign(static_cast<size_t>(rows), 0);
  auto computed = [&](int64_t r) {
    return head_rows == nullptr || (*head_rows)[r / row_blocks].contains(int(r % row_blocks));
  };
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t r = 0; r < rows; ++r) {
    if (!computed(r)) continue;
    const uint64_t* bits = mask.row_bits(heads[r / row_blocks], q_blocks[r % row_blocks]);
    int count = 0;
    for (int w = 0; w < words; ++w) count += std::popcount(bits[w] & wanted[w]);
    csr.kv_count[r] = count;
  }
  csr.row_offset.assign(static_cast<size_t>(rows) + 1, 0);
  for (int64_t r = 0; r < rows; ++r) csr.row_offset[r + 1] = csr.row_offset[r] + csr.kv_count[r];
  if (!with_indices) return csr;
  csr.kv_index.resize(static_cast<size_t>(csr.row_offset.back()));
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t r = 0; r < rows; ++r) {
    if (!computed(r)) continue;
    const uint64_t* bits = mask.row_bits(heads[r / row_blocks], q_blocks[r % row_blocks]);
    int32_t* out = csr.kv_index.data() + csr.row_offset[r];
    for (int w = 0; w < words; ++w) {
      for (uint64_t word = bits[w] & wanted[w]; word != 0; word &= word - 1) {
        *out++ = local_key[w * 64 + std::countr_zero(word)];
      }
    }
  }
  return csr;
}

std::vector<BlockRange> head_rows_of(const LayerRouting& route, const std::vector<int>& heads) {
  std::vector<BlockRange> out;
  out.reserve(heads.size());
  for (int h : heads) {
    const auto at = std::find(route.heads.begin(), route.heads.end(), h);
    require(at != route.heads.end(), "head_rows_of: head ", h, " is not held by rank ", route.rank);
    out.push_back(route.head_rows[static_cast<size_t>(at - route.heads.begin())]);
  }
  return out;
}

void check_layer(int ranks, const SpProblem& problem, const BlockMask& mask,
                 const Partition& partition) {
  require(partition.grid.ranks() == ranks, "sequence parallel layer: partition grid ",
          partition.grid.name(), " needs ", partition.grid.ranks(), " ranks; the communicator has ",
          ranks);
  require(problem.heads == mask.heads() && problem.geometry.q_blocks() == mask.q_blocks() &&
              problem.geometry.k_blocks() == mask.k_blocks(),
          "sequence parallel layer: problem has ", problem.heads, " heads x ",
          problem.geometry.q_blocks(), " x ", problem.geometry.k_blocks(), " blocks; the mask has ",
          mask.heads(), " x ", mask.q_blocks(), " x ", mask.k_blocks());
  require(problem.head_dim >= 1, "sequence parallel layer: head_dim must be >= 1, got ",
          problem.head_dim);
  partition.validate();
}

bool local_is_input(const LayerRouting& route, int heads) {
  auto is_shard = [](const std::vector<int>& blocks, const SequenceShard& shard) {
    if (static_cast<int>(blocks.size()) != shard.end_block - shard.first_block) return false;
    for (size_t i = 0; i < blocks.size(); ++i) {
      if (blocks[i] != shard.first_block + static_cast<int>(i)) return false;
    }
    return true;
  };
  // Every head, in the input's order (a partition's head_order may hold them in another).
  if (static_cast<int>(route.heads.size()) != heads) return false;
  for (int h = 0; h < heads; ++h) {
    if (route.heads[h] != h) return false;
  }
  return is_shard(route.q_blocks, route.q_input) && is_shard(route.k_blocks, route.k_input);
}

bool output_apart_from_inputs(const LayerRouting& route, int heads, int64_t row_bytes,
                              const void* q, const void* k, const void* v, const void* out) {
  const int64_t q_bytes = route.q_input.tokens() * heads * row_bytes;
  const int64_t k_bytes = route.k_input.tokens() * heads * row_bytes;
  auto apart = [&](const void* input, int64_t input_bytes) {
    const auto o = reinterpret_cast<uintptr_t>(out), i = reinterpret_cast<uintptr_t>(input);
    return o + static_cast<uintptr_t>(q_bytes) <= i || i + static_cast<uintptr_t>(input_bytes) <= o;
  };
  return apart(q, q_bytes) && apart(k, k_bytes) && apart(v, k_bytes);
}

LayerRouting build_routing(const BlockMask& mask, const Partition& partition,
                           const BlockLayout& q_layout, const BlockLayout& k_layout, int rank,
                           bool mask_aware) {
  const Grid grid = partition.grid;
  const int ranks = grid.ranks();
  const int nq = partition.q_blocks, nk = partition.k_blocks;
  require(rank >= 0 && rank < ranks, "routing: rank ", rank, " outside the grid ", grid.name());
  require(mask.heads() == partition.heads && mask.q_blocks() == nq && mask.k_blocks() == nk,
          "routing: mask has ", mask.heads(), " heads x ", mask.q_blocks(), " x ", mask.k_blocks(),
          " blocks; the partition expects ", partition.heads, " x ", nq, " x ", nk);
  require(q_layout.blocks() == nq && k_layout.blocks() == nk, "routing: token layouts have ",
          q_layout.blocks(), " query and ", k_layout.blocks(), " key blocks; the mask has ", nq,
          " and ", nk);

  LayerRouting route;
  route.grid = grid;
  route.rank = rank;
  route.group = ulysses_rank_of(rank, grid);
  route.ring_rank = ring_rank_of(rank, grid);
  route.q_input = sequence_shard(q_layout, rank, ranks);
  route.k_input = sequence_shard(k_layout, rank, ranks);
  route.heads = partition.heads_of(route.group);
  route.q_blocks = partition.q_blocks_of(route.group, route.ring_rank);
  // Without a ring the rank holds every query block, so a block's position is its index.
  for (int h : route.heads) {
    route.head_rows.push_back(partition.head_splits.empty()
                                  ? BlockRange{0, static_cast<int>(route.q_blocks.size())}
                                  : partition.rows_of(route.group, h));
    route.clear_local_q |= route.head_rows.back().size() < static_cast<int>(route.q_blocks.size());
  }
  route.clear_local_q |= mask_aware;
  route.k_blocks = partition.k_blocks_of(route.group, route.ring_rank);
  route.q_local = BlockLayout::gather(q_layout, route.q_blocks);
  route.k_local = BlockLayout::gather(k_layout, route.k_blocks);

  std::vector<std::vector<int>> group_heads(static_cast<size_t>(grid.ulysses));
  for (int g = 0; g < grid.ulysses; ++g) group_heads[g] = partition.heads_of(g);
  const int R = grid.ring;
  const int words = mask.words_per_row();
  std::vector<int> local_head(static_cast<size_t>(partition.heads), -1);
  for (size_t hl = 0; hl < route.heads.size(); ++hl)
    local_head[route.heads[hl]] = static_cast<int>(hl);

  // need[r][hl]: key blocks that ring rank r's queries of head heads[hl] attend to (the ring steps
  // of my group). needed[h]: key blocks that some query of head h needs, the test for sending and
  // receiving K/V slabs. The mask is read only where an answer is used: my heads' rows in full
  // (my ring and my receives), and for the other heads the words of my own key blocks (my sends).
  std::vector<std::vector<Bits>> need(static_cast<size_t>(R));
  std::vector<Bits> needed(static_cast<size_t>(partition.heads));
  if (mask_aware && ranks > 1) {  // one rank sends nothing, so the mask decides nothing
    const int my_heads = static_cast<int>(route.heads.size());
    if (R > 1) {
      std::vector<std::vector<int>> queries(static_cast<size_t>(R));
      for (int r = 0; r < R; ++r) {
        queries[r] = partition.q_blocks_of(route.group, r);
        need[r].resize(static_cast<size_t>(my_heads));
      }
      const bool threads = worth_threads(int64_t{my_heads} * nq * words);
#pragma omp parallel for collapse(2) schedule(dynamic) if (threads)
      for (int r = 0; r < R; ++r) {
        for (int hl = 0; hl < my_heads; ++hl) {
          need[r][hl] = rows_union(mask, route.heads[hl], queries[r]);
        }
      }
    }
    const int k_first_word = route.k_input.first_block / 64;
    const int k_end_word = std::max(k_first_word, (route.k_input.end_block + 63) / 64);
    const bool threads = worth_threads(
        (int64_t{partition.heads} * (k_end_word - k_first_word) + int64_t{my_heads} * words) * nq);
#pragma omp parallel for schedule(dynamic) if (threads)
    for (int h = 0; h < partition.heads; ++h) {
      const int hl = local_head[h];
      if (hl < 0) {
        needed[h] = column_union(mask, h, k_first_word, k_end_word);
      } else if (R == 1) {
        needed[h] = column_union(mask, h, 0, words);
      } else {
        // Every query block sits on one ring rank of my group: the union of their needs.
        needed[h].assign(static_cast<size_t>(words), 0);
        for (int r = 0; r < R; ++r) {
          for (int w = 0; w < words; ++w) needed[h][w] |= need[r][hl][w];
        }
      }
    }
  }
  // Slabs that stay on this rank are kept whatever the mask says: leaving them out saves no
  // transfer, only a local copy, and deciding it would read the mask (at P = 1, all of it).
  auto q_needed = [&](int h, int i, int peer) {
    return !mask_aware || peer == rank || row_nonempty(mask, h, i);
  };
  auto kv_needed = [&](int h, int j, int peer) {
    return !mask_aware || peer == rank || test_bit(needed[h], j);
  };
  const std::vector<int> q_home = home_shards_of(nq, ranks), k_home = home_shards_of(nk, ranks);

  route.send_q.resize(ranks);
  route.send_kv.resize(ranks);
  route.recv_q.resize(ranks);
  route.recv_kv.resize(ranks);

  // (a) Sends: my input blocks, every head, to the rank the partition assigns them. Destinations
  // depend on the group only; Q goes out and O comes back along the same slab.
  {
    SlabRuns send_q(route.send_q), send_kv(route.send_kv);
    const int q_first = route.q_input.first_block, q_end = route.q_input.end_block;
    const int k_first = route.k_input.first_block, k_end = route.k_input.end_block;
    std::vector<int> q_dest(static_cast<size_t>(q_end - q_first));
    std::vector<int> k_dest(static_cast<size_t>(k_end - k_first));
    std::vector<int64_t> q_leaving(static_cast<size_t>(q_end - q_first) + 1, 0);  // prefix sums
    for (int g = 0; g < grid.ulysses; ++g) {
      int64_t kv_leaving = 0;  // per head of this group
      for (int i = q_first; i < q_end; ++i) {
        q_dest[i - q_first] = grid_rank(g, partition.q_shard[g][i], grid);
        q_leaving[i - q_first + 1] =
            q_leaving[i - q_first] + (q_dest[i - q_first] != rank ? 2 * q_layout.size(i) : 0);
      }
      for (int j = k_first; j < k_end; ++j) {
        k_dest[j - k_first] = grid_rank(g, partition.k_shard[g][j], grid);
        if (k_dest[j - k_first] != rank) kv_leaving += 2 * k_layout.size(j);
      }
      for (int h : group_heads[g]) {
        // Q out and O back of the rows the group computes; K and V of every row.
        const BlockRange rows = partition.rows_of(g, h);
        const int first = std::clamp(rows.begin, q_first, q_end) - q_first;
        const int end = std::clamp(rows.end, q_first, q_end) - q_first;
        route.baseline_rows_sent += q_leaving[end] - q_leaving[first] + kv_leaving;
      }
      for (int h : group_heads[g]) {
        const BlockRange rows = partition.rows_of(g, h);
        for (int i = std::max(q_first, rows.begin); i < std::min(q_end, rows.end); ++i) {
          if (q_needed(h, i, q_dest[i - q_first])) {
            send_q.add(q_dest[i - q_first], {q_layout.start[i] - route.q_input.first_token, h,
                                             static_cast<int32_t>(q_layout.size(i))});
          }
        }
        for (int j = k_first; j < k_end; ++j) {
          if (kv_needed(h, j, k_dest[j - k_first])) {
            send_kv.add(k_dest[j - k_first], {k_layout.start[j] - route.k_input.first_token, h,
                                              static_cast<int32_t>(k_layout.size(j))});
          }
        }
      }
    }
  }
  // (a) Receives: my held blocks of my heads, from their input owners.
  {
    SlabRuns recv_q(route.recv_q), recv_kv(route.recv_kv);
    for (size_t hl = 0; hl < route.heads.size(); ++hl) {
      const int h = route.heads[hl];
      for (int n = route.head_rows[hl].begin; n < route.head_rows[hl].end; ++n) {
        const int i = route.q_blocks[n];
        if (q_needed(h, i, q_home[i])) {
          recv_q.add(q_home[i], {route.q_local.start[n], static_cast<int32_t>(hl),
                                 static_cast<int32_t>(q_layout.size(i))});
        }
      }
      for (size_t n = 0; n < route.k_blocks.size(); ++n) {
        const int j = route.k_blocks[n];
        if (kv_needed(h, j, k_home[j])) {
          recv_kv.add(k_home[j], {route.k_local.start[n], static_cast<int32_t>(hl),
                                  static_cast<int32_t>(k_layout.size(j))});
        }
      }
    }
  }
  for (int peer = 0; peer < ranks; ++peer) {
    if (peer == rank) continue;
    // Q and K and V out, O back; and the mirror image in.
    route.rows_sent += slab_rows(route.send_q[peer]) * 2 + slab_rows(route.send_kv[peer]) * 2;
    route.rows_received += slab_rows(route.recv_q[peer]) * 2 + slab_rows(route.recv_kv[peer]) * 2;
  }

  // (b) Ring steps inside my head group.
  const size_t my_heads = route.heads.size();
  route.steps.resize(static_cast<size_t>(R));
  for (int t = 0; t < R; ++t) {
    RingStep& step = route.steps[t];
    step.origin = (route.ring_rank + t) % R;
    step.dest = (route.ring_rank - t + R) % R;
    if (t == 0) {
      step.key_blocks = route.k_blocks;
      step.key_layout = route.k_local;
      continue;
    }
    // Receive: the blocks of the origin's shard that some query of mine needs.
    const std::vector<Bits>& mine = need[route.ring_rank];
    for (int j : partition.k_blocks_of(route.group, step.origin)) {
      bool wanted = !mask_aware;
      for (size_t hl = 0; hl < my_heads && !wanted; ++hl) wanted = test_bit(mine[hl], j);
      if (wanted) step.key_blocks.push_back(j);
    }
    step.key_layout = BlockLayout::gather(k_layout, step.key_blocks);
    for (size_t hl = 0; hl < my_heads; ++hl) {
      for (size_t n = 0; n < step.key_blocks.size(); ++n) {
        const int j = step.key_blocks[n];
        if (!mask_aware || test_bit(mine[hl], j)) {
          append_slab(step.recv, {step.key_layout.start[n], static_cast<int32_t>(hl),
                                  static_cast<int32_t>(k_layout.size(j))});
        }
      }
    }
    // Send: the blocks of my shard that the destination's queries need.
    const std::vector<Bits>& theirs = need[step.dest];
    for (size_t hl = 0; hl < my_heads; ++hl) {
      for (size_t n = 0; n < route.k_blocks.size(); ++n) {
        const int j = route.k_blocks[n];
        if (!mask_aware || test_bit(theirs[hl], j)) {
          append_slab(step.send, {route.k_local.start[n], static_cast<int32_t>(hl),
                                  static_cast<int32_t>(k_layout.size(j))});
        }
      }
    }
    route.rows_sent += 2 * slab_rows(step.send);
    route.rows_received += 2 * slab_rows(step.recv);
    route.baseline_rows_sent += 2 * route.k_local.tokens() * static_cast<int64_t>(my_heads);
  }
  return route;
}

}  // namespace dbsp::sp
