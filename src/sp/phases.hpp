// The three data movements of a layer, wired from a LayerRouting: (a) Q, K, V from the input
// shards to the ranks the partition assigns, (b) one ring step's K/V, (c) O back to the input
// shards. The executor and the routing tests call exactly these.
#pragma once

#include <vector>

#include "dbsp/communicator.hpp"
#include "sp/routing.hpp"
#include "sp/slab_exchange.hpp"

namespace dbsp::sp {

struct Staging {
  std::vector<float> send, recv;
};

// q, k, v: input shard [tokens, heads, head_dim]; q_local [route.q_local.tokens(), |route.heads|,
// head_dim], k_local and v_local likewise over route.k_local. Call finish() before use. Every rank
// takes part in every exchange (batches are matched by their order); local_slabs false leaves out
// the slabs this rank keeps (an executor computing on the caller's buffers copies none).
SlabExchange start_input_exchange(Communicator& world, const LayerRouting& route, int64_t heads,
                                  int64_t head_dim, const float* q, const float* k, const float* v,
                                  float* q_local, float* k_local, float* v_local, Staging& staging,
                                  bool local_slabs = true);

// Ring step `step` >= 1 over the ring communicator of this rank's head group: sends this rank's
// K/V slabs to steps[step].dest and fills step_k / step_v (laid out over
// steps[step].key_layout) from steps[step].origin.
SlabExchange start_ring_exchange(Communicator& ring, const LayerRouting& route, int step,
                                 int64_t head_dim, const float* k_local, const float* v_local,
                                 float* step_k, float* step_v, Staging& staging);

// out_local [route.q_local.tokens(), |route.heads|, head_dim] back to out [input tokens, heads,
// head_dim]. Rows that travel nowhere are left untouched (the caller zeroes them).
SlabExchange start_output_exchange(Communicator& world, const LayerRouting& route, int64_t heads,
                                   int64_t head_dim, const float* out_local, float* out,
                                   Staging& staging, bool local_slabs = true);

}  // namespace dbsp::sp
