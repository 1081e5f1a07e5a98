// The benchmark's answer check: each variant (dense, block-sparse, fine) runs on fresh random
// bf16 inputs of a small odd-sized problem with the benchmarked head dim and its O is compared
// with the CPU float64 oracle (dbsp/attention.hpp).
#pragma once

#include <cstdint>
#include <string>

#include "dbsp/cuda_attention.hpp"

namespace dbsp::bench {

enum class Variant { dense, block_sparse, fine };
const char* to_string(Variant variant);

struct CheckResult {
  double rel_l2 = 0;  // ||O - O_fp64|| / ||O_fp64||
  int64_t nonfinite = 0;
  bool ok() const { return nonfinite == 0 && rel_l2 < 1e-2; }
  std::string describe() const;
};

CheckResult check_variant(Variant variant, int head_dim, double density, uint64_t seed,
                          cuda::AttentionKernel kernel);

}  // namespace dbsp::bench
