// How the dbsp process treats freed host memory. Every layer builds its schedule, copy lists and
// plans in fresh vectors of up to tens of megabytes at video sizes; glibc hands blocks that large
// back to the kernel when they are freed, so the next layer faults every page in again (a loop
// that allocates, fills and frees 64 MiB takes 20x the page faults of one that keeps them). The
// process keeps freed blocks in its heap instead, holding its peak footprint. At P = 16 the
// emulator's host setup did not measurably change beside OMP_WAIT_POLICY=passive, which removes
// the larger jitter (docs/runtime.md, host jitter).
#pragma once

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace dbsp::cli {

inline void keep_freed_host_memory() {
#if defined(__GLIBC__)
  constexpr int kLarge = 1 << 30;  // above any one allocation of a layer
  mallopt(M_MMAP_THRESHOLD, kLarge);
  mallopt(M_TRIM_THRESHOLD, kLarge);
#endif
}

}  // namespace dbsp::cli
