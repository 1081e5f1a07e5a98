// Judging a low-precision output against the fp64 reference: the rule every bf16 path of dbsp
// must pass (kernels, the device runtime, `dbsp run --check`). An output passes when it is finite,
// its relative L2 error is at most 1e-2, and its largest element error is at most twice that of
// the naive bf16 path on the same inputs (attention_block_sparse_bf16_naive), so that a kernel
// can neither drift nor hide behind a loose absolute tolerance.
#pragma once

#include <span>
#include <string>

namespace dbsp {

struct AccuracyReport {
  double max_error = 0;        // max |out - reference|
  double naive_max_error = 0;  // max |naive - reference|
  double relative_l2 = 0;      // ||out - reference|| / ||reference||
  bool finite = true;          // no NaN or Inf in out
  bool passes(double relative_l2_limit = 1e-2, double naive_factor = 2.0) const;
  std::string describe() const;
};

// All three spans hold the same elements in the same order.
AccuracyReport compare_with_reference(std::span<const float> out, std::span<const double> reference,
                                      std::span<const float> naive);

}  // namespace dbsp
