#include "sp/non_finite.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace dbsp::sp {

int64_t first_non_finite(const float* data, int64_t count) {
  int64_t first = count;
#pragma omp parallel for reduction(min : first) schedule(static) if (count > (int64_t{1} << 20))
  for (int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(data[i])) first = std::min(first, i);
  }
  return first < count ? first : -1;
}

std::array<int64_t, 2> output_place(int64_t index, int64_t first_token, int64_t heads,
                                    int64_t head_dim) {
  if (index < 0) return {-1, -1};
  return {first_token + index / (heads * head_dim), index / head_dim % heads};
}

std::string non_finite_outputs_error(const std::vector<std::array<int64_t, 2>>& by_rank) {
  std::ostringstream out;
  int found = 0;
  for (size_t rank = 0; rank < by_rank.size(); ++rank) {
    const auto [token, head] = by_rank[rank];
    if (token < 0) continue;
    out << (found++ ? "; " : "") << "rank " << rank << " (first at token " << token << ", head "
        << head << ")";
  }
  if (found == 0) return "";
  return "sp layer: the output holds NaN or Inf on " + out.str() +
         ": the layer's Q, K or V holds NaN or Inf";
}

}  // namespace dbsp::sp
