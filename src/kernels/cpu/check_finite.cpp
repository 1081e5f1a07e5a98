// check_finite: the NaN/Inf guard the CLI and runtime put in front of attention inputs.
#include <cmath>

#include "dbsp/attention.hpp"
#include "dbsp/error.hpp"

namespace dbsp {

template <class T>
void check_finite(const T* data, int64_t count, const char* what) {
  const char* name = what != nullptr ? what : "tensor";
  require(count >= 0, "check_finite: ", name, ": count must be >= 0, got ", count);
  if (count == 0) return;
  require(data != nullptr, "check_finite: ", name, " is null but holds ", count, " values");
  // A cheap vectorizable scan first; only a tensor that fails it is searched for the index.
  bool all_finite = true;
#pragma omp simd reduction(&& : all_finite)
  for (int64_t i = 0; i < count; ++i) all_finite = all_finite && std::isfinite(data[i]);
  if (all_finite) return;
  for (int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(data[i])) {
      fail(name, " holds a non-finite value (", data[i], ") at index ", i, " of ", count);
    }
  }
}

template void check_finite<float>(const float*, int64_t, const char*);
template void check_finite<double>(const double*, int64_t, const char*);

}  // namespace dbsp
