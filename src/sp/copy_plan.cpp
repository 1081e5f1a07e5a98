// Building the copy lists and peer ranges of a layer's all-to-all phases, chunk by chunk.
#include "sp/copy_plan.hpp"

#include "sp/head_chunks.hpp"

namespace dbsp::sp::device {

std::vector<ChunkCopies> build_chunk_copies(const LayerRouting& route, const Partition& partition,
                                            int rank, int ranks, int chunks, int64_t heads,
                                            int64_t head_dim) {
  const int64_t H = heads, D = head_dim;
  const int Hg = static_cast<int>(route.heads.size());
  const int64_t tq = route.q_local.tokens(), tk = route.k_local.tokens();
  const int64_t row_bytes = D * kBf16Bytes;
  const int me = rank;
  const Grid grid = partition.grid;
  // Every rank cuts every group the same way, so sender and receiver agree on each slab's
  // chunks; a slab list filtered by a property of its heads keeps the order both sides share.
  const HeadChunks head_chunks(partition, chunks);
  std::vector<ChunkCopies> out(static_cast<size_t>(chunks));
  for (int c = 0; c < chunks; ++c) {
    out[c].first_head = head_chunk_begin(c, Hg, chunks);
    out[c].heads = head_chunk_begin(c + 1, Hg, chunks) - out[c].first_head;
    out[c].out_after = chunks == 1 ? 0 : head_chunks.out_waits_for(route.group, route.heads, c);
  }
  // Slabs of input tensors (global heads) whose head passes `keep`.
  std::vector<Slab> global_kept, local_kept;
  auto global_slabs = [&](std::span<const Slab> slabs, auto keep) {
    if (chunks == 1) return slabs;
    global_kept.clear();
    for (const Slab& slab : slabs) {
      if (keep(slab.head)) global_kept.push_back(slab);
    }
    return std::span<const Slab>(global_kept);
  };
  // Slabs of local tensors (heads index route.heads) of input chunk `in` whose global head passes
  // `keep`, renumbered from the chunk's first head.
  auto local_slabs = [&](std::span<const Slab> slabs, int in, auto keep) {
    if (chunks == 1) return slabs;
    local_kept.clear();
    const int first = out[in].first_head, end = first + out[in].heads;
    for (const Slab& slab : slabs) {
      if (slab.head >= first && slab.head < end && keep(route.heads[slab.head])) {
        local_kept.push_back(slab);
        local_kept.back().head -= first;
      }
    }
    return std::span<const Slab>(local_kept);
  };
  auto everything = [](int) { return true; };
  // The filters above share their buffers: a list that must outlive the next call is copied.
  auto copied = [](std::span<const Slab> slabs) {
    return std::vector<Slab>(slabs.begin(), slabs.end());
  };

  // Inputs: chunk c brings the Q, K and V of input chunk c.
  for (int c = 0; c < chunks; ++c) {
    ChunkCopies& chunk = out[c];
    const int64_t Hc = chunk.heads;
    const int64_t q_at = tq * chunk.first_head * row_bytes;
    const int64_t k_at = tk * chunk.first_head * row_bytes;
    // A slab's chunk is its head's in the group that computes it: the receiver's.
    auto in_chunk_of = [&](int group) {
      return [&, group](int head) { return head_chunks.in_of(group, head) == c; };
    };
    const auto in_chunk = in_chunk_of(route.group);
    // Direct copies walk a global and a local list together: filter each into its own vector.
    {
      const std::vector<Slab> send_q = copied(global_slabs(route.send_q[me], in_chunk));
      const std::vector<Slab> send_kv = copied(global_slabs(route.send_kv[me], in_chunk));
      const std::vector<Slab> recv_q = copied(local_slabs(route.recv_q[me], c, everything));
      const auto recv_kv = local_slabs(route.recv_kv[me], c, everything);
      chunk.in_local.add_direct(kUserQ, H, send_q, kQLocal, Hc, recv_q, D, 0, q_at);
      chunk.in_local.add_direct(kUserK, H, send_kv, kKLocal, Hc, recv_kv, D, 0, k_at);
      chunk.in_local.add_direct(kUserV, H, send_kv, kVLocal, Hc, recv_kv, D, 0, k_at);
    }
    int64_t send_at = 0, recv_at = 0;
    for (int p = 0; p < ranks; ++p) {
      if (p == me) continue;
      const int64_t send_begin = send_at, recv_begin = recv_at;
      const auto peer_chunk = in_chunk_of(ulysses_rank_of(p, grid));
      const auto send_q = global_slabs(route.send_q[p], peer_chunk);
      chunk.in_pack.add(kUserQ, H, D, send_q, kAllToAllSend, send_at, true);
      const auto send_kv = global_slabs(route.send_kv[p], peer_chunk);
      chunk.in_pack.add(kUserK, H, D, send_kv, kAllToAllSend, send_at, true);
      chunk.in_pack.add(kUserV, H, D, send_kv, kAllToAllSend, send_at, true);
      const auto recv_q = local_slabs(route.recv_q[p], c, everything);
      chunk.in_unpack.add(kQLocal, Hc, D, recv_q, kAllToAllRecv, recv_at, false, q_at);
      const auto recv_kv = local_slabs(route.recv_kv[p], c, everything);
      chunk.in_unpack.add(kKLocal, Hc, D, recv_kv, kAllToAllRecv, recv_at, false, k_at);
      chunk.in_unpack.add(kVLocal, Hc, D, recv_kv, kAllToAllRecv, recv_at, false, k_at);
      if (send_at > send_begin) chunk.in_sends.push_back({p, send_begin, send_at - send_begin});
      if (recv_at > recv_begin) chunk.in_recvs.push_back({p, recv_begin, recv_at - recv_begin});
    }
  }

  // Outputs: chunk c returns the O of the heads whose output chunk is c. O travels the Q slabs
  // backwards; a rank's local O of those heads may sit in several input chunks' tensors, taken
  // in input chunk order on both sides.
  for (int c = 0; c < chunks; ++c) {
    ChunkCopies& chunk = out[c];
    int64_t send_at = 0, recv_at = 0;
    // The heads of input chunk `in` that `group` returns in this output chunk: what a rank
    // computed returns by its own group's chunks.
    auto returned_by = [&](int group, int in) {
      return [&, group, in](int head) {
        return head_chunks.out_of(group, head) == c && head_chunks.in_of(group, head) == in;
      };
    };
    for (int in = 0; in < chunks; ++in) {
      const auto returned = returned_by(route.group, in);
      const int64_t Hi = out[in].heads;
      const int64_t q_at = tq * out[in].first_head * row_bytes;
      {
        const std::vector<Slab> mine = copied(local_slabs(route.recv_q[me], in, returned));
        chunk.out_local.add_direct(kOutLocal, Hi, mine, kUserOut, H,
                                   global_slabs(route.send_q[me], returned), D, q_at, 0);
      }
    }
    for (int p = 0; p < ranks; ++p) {
      if (p == me) continue;
      const int64_t send_begin = send_at, recv_begin = recv_at;
      for (int in = 0; in < chunks; ++in) {
        const int64_t Hi = out[in].heads;
        const int64_t q_at = tq * out[in].first_head * row_bytes;
        chunk.out_pack.add(kOutLocal, Hi, D,
                           local_slabs(route.recv_q[p], in, returned_by(route.group, in)),
                           kAllToAllSend, send_at, true, q_at);
        chunk.out_unpack.add(
            kUserOut, H, D,
            global_slabs(route.send_q[p], returned_by(ulysses_rank_of(p, grid), in)), kAllToAllRecv,
            recv_at, false);
      }
      if (send_at > send_begin) chunk.out_sends.push_back({p, send_begin, send_at - send_begin});
      if (recv_at > recv_begin) chunk.out_recvs.push_back({p, recv_begin, recv_at - recv_begin});
    }
  }
  return out;
}

std::vector<StepCopies> build_step_copies(const LayerRouting& route, int64_t head_dim) {
  const int64_t Hg = static_cast<int64_t>(route.heads.size()), D = head_dim;
  std::vector<StepCopies> out(route.steps.size());
  for (size_t t = 1; t < route.steps.size(); ++t) {
    const RingStep& rs = route.steps[t];
    StepCopies& step = out[t];
    const Base step_k = t % 2 ? kStepK1 : kStepK0, step_v = t % 2 ? kStepV1 : kStepV0;
    int64_t send_at = 0, recv_at = 0;
    step.pack.add(kKLocal, Hg, D, rs.send, kRingSend, send_at, true);
    step.pack.add(kVLocal, Hg, D, rs.send, kRingSend, send_at, true);
    step.unpack.add(step_k, Hg, D, rs.recv, kRingRecv, recv_at, false);
    step.unpack.add(step_v, Hg, D, rs.recv, kRingRecv, recv_at, false);
    if (send_at > 0) step.sends.push_back({rs.dest, 0, send_at});
    if (recv_at > 0) step.recvs.push_back({rs.origin, 0, recv_at});
  }
  return out;
}

}  // namespace dbsp::sp::device
