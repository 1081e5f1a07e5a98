// The pass rule of accuracy.hpp.
#include "dbsp/accuracy.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "dbsp/error.hpp"

namespace dbsp {

bool AccuracyReport::passes(double relative_l2_limit, double naive_factor) const {
  // The floor keeps an exact naive path (e.g. an empty mask) from demanding zero error of us.
  constexpr double kFloor = 1e-6;
  return finite && relative_l2 <= relative_l2_limit &&
         max_error <= naive_factor * naive_max_error + kFloor;
}

std::string AccuracyReport::describe() const {
  char text[160];
  std::snprintf(text, sizeof(text),
                "max error %.3e (naive bf16 %.3e, ratio %.2f), relative L2 %.3e%s", max_error,
                naive_max_error, naive_max_error > 0 ? max_error / naive_max_error : 0.0,
                relative_l2, finite ? "" : ", NOT FINITE");
  return text;
}

AccuracyReport compare_with_reference(std::span<const float> out, std::span<const double> reference,
                                      std::span<const float> naive) {
  require(out.size() == reference.size() && naive.size() == reference.size(),
          "compare_with_reference: sizes differ (out ", out.size(), ", reference ",
          reference.size(), ", naive ", naive.size(), ")");
  AccuracyReport report;
  double error_sq = 0, reference_sq = 0;
  for (size_t e = 0; e < out.size(); ++e) {
    if (!std::isfinite(out[e])) {
      report.finite = false;
      continue;
    }
    const double error = std::abs(out[e] - reference[e]);
    report.max_error = std::max(report.max_error, error);
    report.naive_max_error = std::max(report.naive_max_error, std::abs(naive[e] - reference[e]));
    error_sq += error * error;
    reference_sq += reference[e] * reference[e];
  }
  report.relative_l2 = reference_sq > 0 ? std::sqrt(error_sq / reference_sq) : std::sqrt(error_sq);
  return report;
}

}  // namespace dbsp
