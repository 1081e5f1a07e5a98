// LSE merge of two partial attention results over disjoint key sets (ring steps, split K/V).
#include <algorithm>
#include <cmath>
#include <limits>

#include "dbsp/attention.hpp"
#include "dbsp/error.hpp"

namespace dbsp {

template <class T>
void merge_partial(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, T* out, T* lse,
                   const T* part_out, const T* part_lse) {
  require(batch >= 0 && seq >= 0 && heads >= 0 && head_dim >= 0,
          "merge_partial: sizes must be >= 0, got batch ", batch, ", seq ", seq, ", heads ", heads,
          ", head_dim ", head_dim);
  const int64_t rows = batch * seq * heads;
  if (rows == 0) return;
  require(out != nullptr && lse != nullptr && part_out != nullptr && part_lse != nullptr,
          "merge_partial: null pointer (out ", out != nullptr, ", lse ", lse != nullptr,
          ", part_out ", part_out != nullptr, ", part_lse ", part_lse != nullptr, ")");
  constexpr T kMinusInf = -std::numeric_limits<T>::infinity();
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    // row enumerates the O layout [batch, seq, heads]; LSE is [batch, heads, seq].
    const int64_t head = row % heads;
    const int64_t token = (row / heads) % seq;
    const int64_t b = row / (heads * seq);
    const int64_t lse_index = (b * heads + head) * seq + token;
    T* acc = out + row * head_dim;
    const T* part = part_out + row * head_dim;
    const T lse_a = lse[lse_index];
    const T lse_b = part_lse[lse_index];
    if (lse_b == kMinusInf) {
      if (lse_a == kMinusInf) std::fill(acc, acc + head_dim, T(0));
      continue;  // B holds no key: A stands
    }
    if (lse_a == kMinusInf) {  // A holds no key: take B
      std::copy(part, part + head_dim, acc);
      lse[lse_index] = lse_b;
      continue;
    }
    const T max = std::max(lse_a, lse_b);
    const T weight_a = std::exp(lse_a - max);
    const T weight_b = std::exp(lse_b - max);
    const T total = weight_a + weight_b;
    const T share_a = weight_a / total;
    const T share_b = weight_b / total;
    for (int64_t c = 0; c < head_dim; ++c) acc[c] = share_a * acc[c] + share_b * part[c];
    lse[lse_index] = max + std::log(total);
  }
}

template void merge_partial<float>(int64_t, int64_t, int64_t, int64_t, float*, float*, const float*,
                                   const float*);
template void merge_partial<double>(int64_t, int64_t, int64_t, int64_t, double*, double*,
                                    const double*, const double*);

}  // namespace dbsp
