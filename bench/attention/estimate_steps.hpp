// Times the steps of GPU mask estimation separately (pooling of Q and K, pooled scores, top-p
// selection) through the library's internal launchers, to show where its time goes.
#pragma once

#include <cstdint>

namespace dbsp::bench {

struct EstimateSteps {
  double pool_ms = 0;
  double scores_ms = 0;
  double top_p_ms = 0;
};

// q, k: bf16 [seq, heads, head_dim] on the device; 64-token blocks, tau 0.9, sink block 0.
EstimateSteps time_estimate_steps(const void* q, const void* k, int64_t seq, int heads,
                                  int head_dim, int reps);

}  // namespace dbsp::bench
