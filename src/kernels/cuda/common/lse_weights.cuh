// The shares of two partial attention results over disjoint key sets in their union, from their
// LSEs: out = a * out_a + b * out_b, and the union's LSE. Both LSEs -inf (no kept key on either
// side): both shares 0 and LSE -inf. Shared by the ring steps' merge and the split rows' merge.
#pragma once

#include <cmath>

namespace dbsp::cuda::detail {

struct LseWeights {
  float a = 0.f, b = 0.f;
  float lse = -INFINITY;
};

__device__ __forceinline__ LseWeights lse_weights(float lse_a, float lse_b) {
  LseWeights w;
  const float m = fmaxf(lse_a, lse_b);
  if (m != -INFINITY) {
    const float ea = expf(lse_a - m), eb = expf(lse_b - m);
    w.a = ea / (ea + eb);
    w.b = eb / (ea + eb);
    w.lse = m + logf(ea + eb);
  }
  return w;
}

}  // namespace dbsp::cuda::detail
