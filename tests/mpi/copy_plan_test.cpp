// The device path's copy plan (sp/copy_plan.hpp), played on host buffers for every rank of a
// layer at once: each rank's copy lists run as the device copy kernel would run them, each
// exchange (all-to-all chunks and ring steps) moves the byte ranges the plans name, and every row
// that lands anywhere is checked against what it must hold. Rows whose element encodes (tensor,
// head, token) show a row sent to the wrong place, a row missing or a range that sender and
// receiver disagree on. The output chunks are played with only the kernels their plan waits for
// having run (the rest of the local O still poisoned), so an output chunk that returns a head
// before its kernel fails too. The plan needs no GPU or communicator; it runs in the MPI test
// binary for its helpers, once.
#include "sp/copy_plan.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "dbsp/communicator.hpp"
#include "dbsp/partition.hpp"
#include "mpi_test_support.hpp"
#include "sp/head_chunks.hpp"
#include "sp/routing.hpp"

namespace dbsp {
namespace {

using sp::device::Base;
using sp::device::ChunkCopies;
using sp::device::CopyList;
using sp::device::PeerRange;
using sp::device::staging_bytes;

constexpr int kHeadDim = 8;  // 16-byte bf16 rows, the copy kernel's smallest
constexpr int64_t kRowBytes = kHeadDim * sp::device::kBf16Bytes;
using Row = std::array<uint16_t, kHeadDim>;
constexpr Row kPoison = {0xdead, 0xdead, 0xdead, 0xdead, 0xdead, 0xdead, 0xdead, 0xdead};

enum Tensor : uint16_t { kQ = 1, kK = 2, kV = 3, kO = 4 };

Row coded(Tensor tensor, int head, int64_t token) {
  return {tensor,
          static_cast<uint16_t>(head),
          static_cast<uint16_t>(token & 0xffff),
          static_cast<uint16_t>(token >> 16),
          0x5a5a,
          static_cast<uint16_t>(tensor ^ head),
          static_cast<uint16_t>(token * 7),
          0xa5a5};
}

using Buffer = std::vector<Row>;

// One rank's buffers, indexed by sp::device::Base.
struct RankBuffers {
  std::map<int, Buffer> bases;
  Buffer& operator[](Base base) { return bases[base]; }
};

// Runs a copy list on a rank's buffers; a copy out of any buffer's bounds fails the test.
void play(const CopyList& list, RankBuffers& buffers, const std::string& what) {
  for (const sp::device::RowCopy& copy : list.copies) {
    Buffer& src = buffers.bases[copy.src_base];
    Buffer& dst = buffers.bases[copy.dst_base];
    for (int64_t r = 0; r < copy.rows; ++r) {
      const int64_t from = copy.src_offset + r * copy.src_stride;
      const int64_t to = copy.dst_offset + r * copy.dst_stride;
      ASSERT_TRUE(from % kRowBytes == 0 && to % kRowBytes == 0) << what;
      ASSERT_TRUE(from >= 0 && from / kRowBytes < static_cast<int64_t>(src.size())) << what;
      ASSERT_TRUE(to >= 0 && to / kRowBytes < static_cast<int64_t>(dst.size())) << what;
      dst[to / kRowBytes] = src[from / kRowBytes];
    }
  }
}

// Moves every peer range of one exchange: rank p's receive range from q must match q's send
// range to p in size, and every send must be received. Peers are world ranks through the
// all-to-all staging buffers, or with `ring` the ring ranks of a head group through the ring's.
void exchange(std::vector<RankBuffers>& ranks,
              const std::vector<const std::vector<PeerRange>*>& sends,
              const std::vector<const std::vector<PeerRange>*>& recvs, const std::string& what,
              const Grid* ring = nullptr) {
  const int P = static_cast<int>(ranks.size());
  auto world_of = [&](int p, int peer) {
    return ring ? grid_rank(ulysses_rank_of(p, *ring), peer, *ring) : peer;
  };
  auto as_peer = [&](int p) { return ring ? ring_rank_of(p, *ring) : p; };
  const Base send_base = ring ? sp::device::kRingSend : sp::device::kAllToAllSend;
  const Base recv_base = ring ? sp::device::kRingRecv : sp::device::kAllToAllRecv;
  int64_t sent = 0, received = 0;
  for (int p = 0; p < P; ++p) {
    for (const PeerRange& send : *sends[p]) sent += send.bytes;
    for (const PeerRange& recv : *recvs[p]) {
      received += recv.bytes;
      const int q = world_of(p, recv.peer);
      const PeerRange* match = nullptr;
      for (const PeerRange& send : *sends[q]) {
        if (send.peer == as_peer(p)) match = &send;
      }
      ASSERT_NE(match, nullptr) << what << ": rank " << p << " receives from " << q
                                << ", which sends it nothing";
      ASSERT_EQ(match->bytes, recv.bytes) << what << ": ranks " << q << " -> " << p;
      const Buffer& from = ranks[q][send_base];
      Buffer& to = ranks[p][recv_base];
      for (int64_t r = 0; r < recv.bytes / kRowBytes; ++r) {
        to[recv.offset / kRowBytes + r] = from[match->offset / kRowBytes + r];
      }
    }
  }
  ASSERT_EQ(sent, received) << what;
}

// Global token of row `row` of a local tensor laid out as `local` (blocks `blocks` of `global`).
int64_t global_token(const BlockLayout& local, const std::vector<int>& blocks,
                     const BlockLayout& global, int64_t row) {
  const int b = static_cast<int>(std::upper_bound(local.start.begin(), local.start.end(), row) -
                                 local.start.begin()) -
                1;
  return global.start[blocks[b]] + (row - local.start[b]);
}

// Which rows of a [tokens, heads] tensor the slab lists name.
std::vector<char> rows_listed(const std::vector<std::vector<sp::Slab>>& lists, int64_t tokens,
                              int heads) {
  std::vector<char> listed(static_cast<size_t>(tokens * heads), 0);
  for (const auto& list : lists) {
    for (const sp::Slab& s : list) {
      for (int64_t r = s.row; r < s.row + s.rows; ++r) listed[r * heads + s.head] = 1;
    }
  }
  return listed;
}

// Row (token `row`, local head `l`) of a local tensor of `tokens` rows, laid out chunk by chunk:
// chunk c's heads as their own [tokens, chunk.heads] tensor from row tokens * first_head on.
int64_t chunk_row(const ChunkCopies& chunk, int64_t tokens, int64_t row, int l) {
  return tokens * chunk.first_head + row * chunk.heads + (l - chunk.first_head);
}

// One direction of one chunk's all-to-all on every rank: the kept rows and the packs, the
// exchange, the unpacks; before(p) runs first on each rank.
struct Phase {
  CopyList ChunkCopies::*local;
  CopyList ChunkCopies::*pack;
  CopyList ChunkCopies::*unpack;
  std::vector<PeerRange> ChunkCopies::*sends;
  std::vector<PeerRange> ChunkCopies::*recvs;
};
constexpr Phase kInput{&ChunkCopies::in_local, &ChunkCopies::in_pack, &ChunkCopies::in_unpack,
                       &ChunkCopies::in_sends, &ChunkCopies::in_recvs};
constexpr Phase kOutput{&ChunkCopies::out_local, &ChunkCopies::out_pack, &ChunkCopies::out_unpack,
                        &ChunkCopies::out_sends, &ChunkCopies::out_recvs};

template <class Before>
void play_phase(const std::vector<std::vector<ChunkCopies>>& plans, std::vector<RankBuffers>& ranks,
                int c, const Phase& phase, const std::string& what, Before&& before) {
  std::vector<const std::vector<PeerRange>*> sends, recvs;
  for (size_t p = 0; p < ranks.size(); ++p) {
    const ChunkCopies& chunk = plans[p][c];
    before(static_cast<int>(p));
    play(chunk.*phase.local, ranks[p], what + " (kept rows)");
    play(chunk.*phase.pack, ranks[p], what + " (pack)");
    sends.push_back(&(chunk.*phase.sends));
    recvs.push_back(&(chunk.*phase.recvs));
  }
  exchange(ranks, sends, recvs, what);
  for (size_t p = 0; p < ranks.size(); ++p) {
    play(plans[p][c].*phase.unpack, ranks[p], what + " (unpack)");
  }
}

struct Layer {
  int heads;
  MaskGeometry geometry;
};

void check_plan(const Layer& layer, const BlockMask& mask, const Partition& partition, bool aware,
                int requested_chunks) {
  const Grid grid = partition.grid;
  const int P = grid.ranks(), H = layer.heads;
  const int chunks = sp::layer_head_chunks(grid, requested_chunks);
  const BlockLayout q_layout = BlockLayout::uniform(layer.geometry.seq_q, layer.geometry.block_q);
  const BlockLayout k_layout = BlockLayout::uniform(layer.geometry.seq_k, layer.geometry.block_k);
  std::vector<sp::LayerRouting> routes;
  std::vector<std::vector<ChunkCopies>> plans;
  std::vector<RankBuffers> ranks(static_cast<size_t>(P));
  for (int p = 0; p < P; ++p) {
    routes.push_back(sp::build_routing(mask, partition, q_layout, k_layout, p, aware));
    plans.push_back(
        sp::device::build_chunk_copies(routes[p], partition, p, P, chunks, H, kHeadDim));
    ASSERT_EQ(static_cast<int>(plans[p].size()), chunks);
    const sp::LayerRouting& route = routes[p];
    const int Hg = static_cast<int>(route.heads.size());
    RankBuffers& b = ranks[p];
    for (auto [base, tensor, shard] : {std::tuple{sp::device::kUserQ, kQ, route.q_input},
                                       std::tuple{sp::device::kUserK, kK, route.k_input},
                                       std::tuple{sp::device::kUserV, kV, route.k_input}}) {
      for (int64_t t = shard.first_token; t < shard.end_token; ++t) {
        for (int h = 0; h < H; ++h) b[base].push_back(coded(tensor, h, t));
      }
    }
    b[sp::device::kUserOut].assign(static_cast<size_t>(route.q_input.tokens() * H), kPoison);
    b[sp::device::kQLocal].assign(static_cast<size_t>(route.q_local.tokens() * Hg), kPoison);
    b[sp::device::kKLocal].assign(static_cast<size_t>(route.k_local.tokens() * Hg), kPoison);
    b[sp::device::kVLocal] = b[sp::device::kKLocal];
    b[sp::device::kOutLocal] = b[sp::device::kQLocal];
    // Every chunk's plan must fit in the staging it reserves.
    int64_t send = 0, recv = 0;
    for (const ChunkCopies& chunk : plans[p]) {
      send = std::max({send, staging_bytes(chunk.in_sends), staging_bytes(chunk.out_sends)});
      recv = std::max({recv, staging_bytes(chunk.in_recvs), staging_bytes(chunk.out_recvs)});
    }
    b[sp::device::kAllToAllSend].assign(static_cast<size_t>(send / kRowBytes), kPoison);
    b[sp::device::kAllToAllRecv].assign(static_cast<size_t>(recv / kRowBytes), kPoison);
  }

  // Inputs, chunk by chunk.
  for (int c = 0; c < chunks; ++c) {
    play_phase(plans, ranks, c, kInput, "input chunk " + std::to_string(c), [](int) {});
    if (testing::Test::HasFatalFailure()) return;
  }
  // Every local row the routing fills holds its (tensor, head, token); the others are untouched.
  for (int p = 0; p < P; ++p) {
    const sp::LayerRouting& route = routes[p];
    const int Hg = static_cast<int>(route.heads.size());
    const std::vector<char> q_filled = rows_listed(route.recv_q, route.q_local.tokens(), Hg);
    const std::vector<char> k_filled = rows_listed(route.recv_kv, route.k_local.tokens(), Hg);
    for (int c = 0; c < chunks; ++c) {
      const ChunkCopies& chunk = plans[p][c];
      for (int l = chunk.first_head; l < chunk.first_head + chunk.heads; ++l) {
        const int h = route.heads[l];
        for (auto [base, tensor, layout, blocks, global, filled_rows] :
             {std::tuple{sp::device::kQLocal, kQ, &route.q_local, &route.q_blocks, &q_layout,
                         &q_filled},
              std::tuple{sp::device::kKLocal, kK, &route.k_local, &route.k_blocks, &k_layout,
                         &k_filled},
              std::tuple{sp::device::kVLocal, kV, &route.k_local, &route.k_blocks, &k_layout,
                         &k_filled}}) {
          const int64_t tokens = layout->tokens();
          for (int64_t row = 0; row < tokens; ++row) {
            const Row& got = ranks[p][base][chunk_row(chunk, tokens, row, l)];
            const Row want = (*filled_rows)[row * Hg + l]
                                 ? coded(tensor, h, global_token(*layout, *blocks, *global, row))
                                 : kPoison;
            ASSERT_EQ(got, want) << "rank " << p << " tensor " << tensor << " head " << h
                                 << " local row " << row;
          }
        }
      }
    }
  }

  // Ring steps (grids with a ring): each step's K/V slabs from the local K/V into the step
  // buffers of its parity; every row the routing lists holds its (tensor, head, token).
  std::vector<std::vector<sp::device::StepCopies>> steps;
  for (int p = 0; p < P; ++p) steps.push_back(sp::device::build_step_copies(routes[p], kHeadDim));
  for (int t = 1; t < grid.ring; ++t) {
    const std::string what = "ring step " + std::to_string(t);
    const Base step_k = t % 2 ? sp::device::kStepK1 : sp::device::kStepK0;
    const Base step_v = t % 2 ? sp::device::kStepV1 : sp::device::kStepV0;
    std::vector<const std::vector<PeerRange>*> sends, recvs;
    for (int p = 0; p < P; ++p) {
      const sp::device::StepCopies& step = steps[p][t];
      const int64_t rows =
          routes[p].steps[t].key_layout.tokens() * static_cast<int64_t>(routes[p].heads.size());
      ranks[p][step_k].assign(static_cast<size_t>(rows), kPoison);
      ranks[p][step_v].assign(static_cast<size_t>(rows), kPoison);
      ranks[p][sp::device::kRingSend].assign(
          static_cast<size_t>(staging_bytes(step.sends) / kRowBytes), kPoison);
      ranks[p][sp::device::kRingRecv].assign(
          static_cast<size_t>(staging_bytes(step.recvs) / kRowBytes), kPoison);
      play(step.pack, ranks[p], what + " (pack)");
      sends.push_back(&step.sends);
      recvs.push_back(&step.recvs);
    }
    exchange(ranks, sends, recvs, what, &grid);
    for (int p = 0; p < P; ++p) play(steps[p][t].unpack, ranks[p], what + " (unpack)");
    if (testing::Test::HasFatalFailure()) return;
    for (int p = 0; p < P; ++p) {
      const sp::LayerRouting& route = routes[p];
      const sp::RingStep& rs = route.steps[t];
      const int Hg = static_cast<int>(route.heads.size());
      const std::vector<char> listed = rows_listed({rs.recv}, rs.key_layout.tokens(), Hg);
      for (int64_t row = 0; row < rs.key_layout.tokens(); ++row) {
        const int64_t token = global_token(rs.key_layout, rs.key_blocks, k_layout, row);
        for (int l = 0; l < Hg; ++l) {
          const bool in = listed[row * Hg + l];
          ASSERT_EQ(ranks[p][step_k][row * Hg + l], in ? coded(kK, route.heads[l], token) : kPoison)
              << what << " rank " << p << " head " << route.heads[l] << " row " << row;
          ASSERT_EQ(ranks[p][step_v][row * Hg + l], in ? coded(kV, route.heads[l], token) : kPoison)
              << what << " rank " << p << " head " << route.heads[l] << " row " << row;
        }
      }
    }
  }

  // Outputs, chunk by chunk, each with only the kernels it waits for run.
  std::vector<int> computed(static_cast<size_t>(P), -1);  // last input chunk computed
  auto compute_through = [&](int p, int last) {
    const sp::LayerRouting& route = routes[p];
    for (int c = computed[p] + 1; c <= last; ++c) {
      const ChunkCopies& chunk = plans[p][c];
      const int64_t tokens = route.q_local.tokens();
      for (int l = chunk.first_head; l < chunk.first_head + chunk.heads; ++l) {
        for (int64_t row = 0; row < tokens; ++row) {
          ranks[p][sp::device::kOutLocal][chunk_row(chunk, tokens, row, l)] =
              coded(kO, route.heads[l], global_token(route.q_local, route.q_blocks, q_layout, row));
        }
      }
    }
    computed[p] = std::max(computed[p], last);
  };
  for (int c = 0; c < chunks; ++c) {
    play_phase(plans, ranks, c, kOutput, "output chunk " + std::to_string(c), [&](int p) {
      // One chunk (ring grids too) returns after every kernel.
      compute_through(p, chunks == 1 ? 0 : plans[p][c].out_after);
    });
    if (testing::Test::HasFatalFailure()) return;
  }
  for (int p = 0; p < P; ++p) {
    const sp::LayerRouting& route = routes[p];
    const std::vector<char> returned = rows_listed(route.send_q, route.q_input.tokens(), H);
    for (int64_t row = 0; row < route.q_input.tokens(); ++row) {
      for (int h = 0; h < H; ++h) {
        const Row want =
            returned[row * H + h] ? coded(kO, h, route.q_input.first_token + row) : kPoison;
        ASSERT_EQ(ranks[p][sp::device::kUserOut][row * H + h], want)
            << "rank " << p << " output head " << h << " row " << row;
      }
    }
  }
}

void check_layer(const Layer& layer, int ranks, uint64_t seed) {
  const BlockMask masks[] = {
      test::make_mask(test::MaskKind::random, layer.heads, layer.geometry, 0.3, seed),
      test::make_mask(test::MaskKind::empty, layer.heads, layer.geometry, 0, seed),
      test::make_mask(test::MaskKind::full, layer.heads, layer.geometry, 1, seed)};
  for (Grid grid : factorizations(ranks)) {
    const int q_blocks = layer.geometry.q_blocks(), k_blocks = layer.geometry.k_blocks();
    const Partition partitions[] = {
        Partition::contiguous(grid, layer.heads, q_blocks, k_blocks),
        test::random_partition(grid, layer.heads, q_blocks, k_blocks, seed + 17)};
    for (const Partition& partition : partitions) {
      for (const BlockMask& mask : masks) {
        for (bool aware : {true, false}) {
          for (int chunks : {1, 2, 3, 4}) {
            SCOPED_TRACE(grid.name() + (aware ? " mask-aware" : " send-all") + ", density " +
                         std::to_string(mask.density()) + ", " + std::to_string(chunks) +
                         " chunks, groups of " + std::to_string(partition.max_group_heads()) +
                         " heads at most");
            check_plan(layer, mask, partition, aware, chunks);
            if (testing::Test::HasFatalFailure()) return;
          }
        }
      }
    }
  }
}

TEST(CopyPlan, EveryRowReachesItsPlaceAndReturnsAfterItsKernel) {
  if (test::world().rank() != 0) GTEST_SKIP() << "the plan of every rank is played on rank 0";
  // Five heads: groups of one to five (a heavy head alone on its rank); a short last block. One
  // rank too: chunks run there when asked (how one GPU tests the pipeline).
  for (int ranks : {1, 2, 3, 4, 5, 8}) {
    SCOPED_TRACE(std::to_string(ranks) + " ranks");
    check_layer({5, MaskGeometry{300, 300, 16, 16}}, ranks, 1);
    check_layer({13, MaskGeometry{150, 170, 16, 32}}, ranks, 2);
    if (testing::Test::HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace dbsp
