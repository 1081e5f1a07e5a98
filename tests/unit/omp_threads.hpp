// OpenMP thread counts for the planner tests, which compare results across them.
#pragma once

#include <omp.h>

namespace dbsp::testing {

// Sets OpenMP's thread count for the scope (the tests switch between one thread and several).
class Threads {
 public:
  explicit Threads(int count) : saved_(omp_get_max_threads()) { omp_set_num_threads(count); }
  ~Threads() { omp_set_num_threads(saved_); }
  Threads(const Threads&) = delete;
  Threads& operator=(const Threads&) = delete;

 private:
  int saved_;
};

}  // namespace dbsp::testing
