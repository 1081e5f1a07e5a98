// Fine (M x 1) vs block (64 x 64) masks at equal retained softmax mass (issue 3, item 6): for the
// synthetic workload's Q/K, the estimators' tau is tuned (bisection) until each mask keeps the
// target share of the *true* softmax mass per query row, measured with the kernel itself:
// retained share = exp(LSE_mask - LSE_dense). Reports kept work and kernel time of both.
#pragma once

#include <cstdint>
#include <string>

#include "dbsp/cuda_attention.hpp"

namespace dbsp::bench {

struct EqualMassSide {
  double tau = 0;      // estimator tau that reached the target
  double mass = 0;     // mean retained share of the true softmax mass
  double density = 0;  // kept scores / all scores
  double estimate_ms = 0;
  double kernel_ms = 0;
};

struct EqualMassResult {
  std::string shape;
  double target = 0;
  EqualMassSide block, fine;
};

EqualMassResult equal_mass_experiment(const std::string& shape_name, double target, int reps,
                                      uint64_t seed, cuda::AttentionKernel kernel);

}  // namespace dbsp::bench
