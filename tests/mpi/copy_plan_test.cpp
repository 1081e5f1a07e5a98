// The device path's copy plan (sp/copy_plan.hpp), played on host buffers for every rank of a
// layer at once: each rank's copy lists run as the device copy kernel would run them, each
// exchange moves the byte ranges the plans name, and every row that lands anywhere is checked
// against what it must hold. Rows whose element encodes (tensor, head, token) show a row sent to
// the wrong place, a row missing or a range that sender and receiver disagree on. The output
// chunks are played with only the kernels their plan waits for having run (the rest of the local
// O still poisoned), so an output chunk that returns a head before its kernel fails too.
// The plan needs no GPU or communicator; it runs in the MPI test binary for its helpers, once.
#include "sp/copy_plan.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <map>
#include <string>
#include <vector>

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

int64_t staging_rows(const std::vector<PeerRange>& ranges) {
  return ranges.empty() ? 0 : (ranges.back().offset + ranges.back().bytes) / kRowBytes;
}

// Moves every peer range of one exchange: rank p's receive range from q must match q's send
// range to p in size, and every send must be received.
void exchange(std::vector<RankBuffers>& ranks,
              const std::vector<const std::vector<PeerRange>*>& sends,
              const std::vector<const std::vector<PeerRange>*>& recvs, const std::string& what) {
  const int P = static_cast<int>(ranks.size());
  int64_t sent = 0, received = 0;
  for (int p = 0; p < P; ++p) {
    for (const PeerRange& send : *sends[p]) sent += send.bytes;
    for (const PeerRange& recv : *recvs[p]) {
      received += recv.bytes;
      const PeerRange* match = nullptr;
      for (const PeerRange& send : *sends[recv.peer]) {
        if (send.peer == p) match = &send;
      }
      ASSERT_NE(match, nullptr) << what << ": rank " << p << " receives from " << recv.peer
                                << ", which sends it nothing";
      ASSERT_EQ(match->bytes, recv.bytes) << what << ": ranks " << recv.peer << " -> " << p;
      const Buffer& from = ranks[recv.peer][sp::device::kAllToAllSend];
      Buffer& to = ranks[p][sp::device::kAllToAllRecv];
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

struct Layer {
  int heads;
  MaskGeometry geometry;
};

void check_plan(const Layer& layer, const BlockMask& mask, const Partition& partition, bool aware,
                int requested_chunks) {
  const Grid grid = partition.grid;
  const int P = grid.ranks(), H = layer.heads;
  const int chunks = sp::layer_head_chunks(grid.ulysses, grid.ring, requested_chunks);
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
      send = std::max({send, staging_rows(chunk.in_sends), staging_rows(chunk.out_sends)});
      recv = std::max({recv, staging_rows(chunk.in_recvs), staging_rows(chunk.out_recvs)});
    }
    b[sp::device::kAllToAllSend].assign(static_cast<size_t>(send), kPoison);
    b[sp::device::kAllToAllRecv].assign(static_cast<size_t>(recv), kPoison);
  }

  // Inputs, chunk by chunk.
  for (int c = 0; c < chunks; ++c) {
    const std::string what = "input chunk " + std::to_string(c);
    std::vector<const std::vector<PeerRange>*> sends, recvs;
    for (int p = 0; p < P; ++p) {
      play(plans[p][c].in_local, ranks[p], what + " (kept rows)");
      play(plans[p][c].in_pack, ranks[p], what + " (pack)");
      sends.push_back(&plans[p][c].in_sends);
      recvs.push_back(&plans[p][c].in_recvs);
    }
    exchange(ranks, sends, recvs, what);
    for (int p = 0; p < P; ++p) play(plans[p][c].in_unpack, ranks[p], what + " (unpack)");
    if (testing::Test::HasFatalFailure()) return;
  }
  // Every local row the routing fills holds its (tensor, head, token); the others are untouched.
  for (int p = 0; p < P; ++p) {
    const sp::LayerRouting& route = routes[p];
    const int Hg = static_cast<int>(route.heads.size());
    auto filled = [&](const std::vector<std::vector<sp::Slab>>& lists, int64_t tokens) {
      std::vector<char> out(static_cast<size_t>(tokens * Hg), 0);
      for (const auto& list : lists) {
        for (const sp::Slab& s : list) {
          for (int64_t r = s.row; r < s.row + s.rows; ++r) out[r * Hg + s.head] = 1;
        }
      }
      return out;
    };
    const std::vector<char> q_filled = filled(route.recv_q, route.q_local.tokens());
    const std::vector<char> k_filled = filled(route.recv_kv, route.k_local.tokens());
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
            // Chunk c's tensor: [tokens, chunk.heads, D] from row tokens * first_head on.
            const Row& got = ranks[p][base][tokens * chunk.first_head + row * chunk.heads +
                                            (l - chunk.first_head)];
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

  // Outputs, chunk by chunk, each with only the kernels it waits for run.
  std::vector<int> computed(static_cast<size_t>(P), -1);  // last input chunk computed
  auto compute_through = [&](int p, int last) {
    const sp::LayerRouting& route = routes[p];
    for (int c = computed[p] + 1; c <= last; ++c) {
      const ChunkCopies& chunk = plans[p][c];
      const int64_t tokens = route.q_local.tokens();
      for (int l = chunk.first_head; l < chunk.first_head + chunk.heads; ++l) {
        for (int64_t row = 0; row < tokens; ++row) {
          ranks[p][sp::device::kOutLocal][tokens * chunk.first_head + row * chunk.heads +
                                          (l - chunk.first_head)] =
              coded(kO, route.heads[l], global_token(route.q_local, route.q_blocks, q_layout, row));
        }
      }
    }
    computed[p] = std::max(computed[p], last);
  };
  for (int c = 0; c < chunks; ++c) {
    const std::string what = "output chunk " + std::to_string(c);
    std::vector<const std::vector<PeerRange>*> sends, recvs;
    for (int p = 0; p < P; ++p) {
      // One chunk (ring grids too) returns after every kernel.
      compute_through(p, chunks == 1 ? 0 : plans[p][c].out_after);
      play(plans[p][c].out_local, ranks[p], what + " (kept rows)");
      play(plans[p][c].out_pack, ranks[p], what + " (pack)");
      sends.push_back(&plans[p][c].out_sends);
      recvs.push_back(&plans[p][c].out_recvs);
    }
    exchange(ranks, sends, recvs, what);
    for (int p = 0; p < P; ++p) play(plans[p][c].out_unpack, ranks[p], what + " (unpack)");
    if (testing::Test::HasFatalFailure()) return;
  }
  for (int p = 0; p < P; ++p) {
    const sp::LayerRouting& route = routes[p];
    std::vector<char> returned(static_cast<size_t>(route.q_input.tokens() * H), 0);
    for (const auto& list : route.send_q) {
      for (const sp::Slab& s : list) {
        for (int64_t r = s.row; r < s.row + s.rows; ++r) returned[r * H + s.head] = 1;
      }
    }
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
  // Five heads: groups of one to five (a heavy head alone on its rank); a short last block.
  for (int ranks : {2, 3, 4, 5, 8}) {
    SCOPED_TRACE(std::to_string(ranks) + " ranks");
    check_layer({5, MaskGeometry{300, 300, 16, 16}}, ranks, 1);
    check_layer({13, MaskGeometry{150, 170, 16, 32}}, ranks, 2);
    if (testing::Test::HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace dbsp
