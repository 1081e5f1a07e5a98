// Wiring of the layer's three slab exchanges.
#include "sp/phases.hpp"

#include "dbsp/error.hpp"

namespace dbsp::sp {

SlabExchange start_input_exchange(Communicator& world, const LayerRouting& route, int64_t heads,
                                  int64_t head_dim, const float* q, const float* k, const float* v,
                                  float* q_local, float* k_local, float* v_local, Staging& staging,
                                  bool local_slabs) {
  const int64_t local_heads = static_cast<int64_t>(route.heads.size());
  std::vector<PeerSends> sends;
  std::vector<PeerRecvs> recvs;
  for (int p = 0; p < world.size(); ++p) {
    if (p == world.rank() && !local_slabs) continue;
    sends.push_back({p,
                     {{q, heads, route.send_q[p]},
                      {k, heads, route.send_kv[p]},
                      {v, heads, route.send_kv[p]}}});
    recvs.push_back({p,
                     {{q_local, local_heads, route.recv_q[p]},
                      {k_local, local_heads, route.recv_kv[p]},
                      {v_local, local_heads, route.recv_kv[p]}}});
  }
  return SlabExchange(world, head_dim, std::move(sends), std::move(recvs), staging.send,
                      staging.recv, "sp all_to_all_v (Q, K, V in)");
}

SlabExchange start_ring_exchange(Communicator& ring, const LayerRouting& route, int step,
                                 int64_t head_dim, const float* k_local, const float* v_local,
                                 float* step_k, float* step_v, Staging& staging) {
  require(step >= 1 && step < route.grid.ring, "ring exchange: step ", step, " outside [1, ",
          route.grid.ring, ")");
  const RingStep& s = route.steps[step];
  const int64_t local_heads = static_cast<int64_t>(route.heads.size());
  std::vector<PeerSends> sends{
      {s.dest, {{k_local, local_heads, s.send}, {v_local, local_heads, s.send}}}};
  std::vector<PeerRecvs> recvs{
      {s.origin, {{step_k, local_heads, s.recv}, {step_v, local_heads, s.recv}}}};
  return SlabExchange(ring, head_dim, std::move(sends), std::move(recvs), staging.send,
                      staging.recv, "sp ring step (K, V)");
}

SlabExchange start_output_exchange(Communicator& world, const LayerRouting& route, int64_t heads,
                                   int64_t head_dim, const float* out_local, float* out,
                                   Staging& staging, bool local_slabs) {
  const int64_t local_heads = static_cast<int64_t>(route.heads.size());
  std::vector<PeerSends> sends;
  std::vector<PeerRecvs> recvs;
  for (int p = 0; p < world.size(); ++p) {
    if (p == world.rank() && !local_slabs) continue;
    // O travels the Q slabs backwards.
    sends.push_back({p, {{out_local, local_heads, route.recv_q[p]}}});
    recvs.push_back({p, {{out, heads, route.send_q[p]}}});
  }
  return SlabExchange(world, head_dim, std::move(sends), std::move(recvs), staging.send,
                      staging.recv, "sp all_to_all_v (O out)");
}

}  // namespace dbsp::sp
