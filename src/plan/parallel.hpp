// How the planner spreads independent pieces of work over OpenMP threads: the factorizations of
// choose_strategy, the heads of the mask statistics, the query-block chunks of head-summed rows,
// the head groups of ours' key shards and of evaluate. Every piece writes only its own outputs and
// reads nothing another piece writes, so the results are those of one thread, bit for bit.
#pragma once

#include <omp.h>

#include <cstddef>
#include <exception>
#include <vector>

namespace dbsp::plan {

// Work over fewer mask words than this (tens of microseconds) stays on one thread.
constexpr size_t kThreadedWords = size_t{1} << 14;

// Runs body(i) for every i in [0, count) and returns when all have run. Inside an active parallel
// region (with_threads, or a grid of choose_strategy) the pieces become tasks of that region's
// team, so threads that are done with their own grid help with the others'; outside, they get a
// region of their own. Serial, in order, when OpenMP has one thread, for one piece, or when
// `worth_threads` is false (too little work to pay for waking threads). The first exception (lowest
// i) is rethrown here: none may leave a parallel region.
template <class Body>
void parallel_for(int count, bool worth_threads, const Body& body) {
  const bool nested = omp_in_parallel() != 0;
  if (count <= 1 || !worth_threads || (!nested && omp_get_max_threads() == 1)) {
    for (int i = 0; i < count; ++i) body(i);
    return;
  }
  std::vector<std::exception_ptr> errors(count);
  const auto run = [&](int i) {
    try {
      body(i);
    } catch (...) {
      errors[i] = std::current_exception();
    }
  };
  if (nested) {
#pragma omp taskloop grainsize(1)
    for (int i = 0; i < count; ++i) run(i);
  } else {
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < count; ++i) run(i);
  }
  for (const std::exception_ptr& error : errors) {
    if (error) std::rethrow_exception(error);
  }
}

// Runs `work` on one thread of a team whose other threads wait for parallel_for's tasks: one
// parallel region for a whole step of planning (statistics, then every grid) instead of one per
// parallel_for, since starting and ending a region can cost a scheduler time slice when the cores
// are busy with other work. Runs `work` directly inside a team, on one thread, or when
// `worth_threads` is false. Exceptions are rethrown here.
template <class Work>
void with_threads(bool worth_threads, const Work& work) {
  if (!worth_threads || omp_in_parallel() != 0 || omp_get_max_threads() == 1) {
    work();
    return;
  }
  std::exception_ptr error;
#pragma omp parallel
#pragma omp single
  {
    try {
      work();
    } catch (...) {
      error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace dbsp::plan
