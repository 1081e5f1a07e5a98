// The timeline of a layer pipelined by head chunks (sp/head_chunks.hpp), as the device executor
// runs it and the emulator charges it: every input chunk's exchange in turn on the world stream;
// a rank computes input chunk c once that exchange is done, behind its chunk c - 1; then
// output chunk c, once every rank has computed the input chunk it waits for, in order, behind
// every input exchange. Exchanges are collectives, so each lasts as long as its slowest rank's.
#pragma once

#include <algorithm>
#include <vector>

namespace dbsp::sp {

struct ChunkTimeline {
  double computed = 0;  // when the last rank's last kernel ends
  double finished = 0;  // when the last output exchange ends (at least `computed`)
  // Per output chunk: when its exchange starts, and the rank whose kernel it waited for last
  // (-1: it waited for the exchange before it).
  std::vector<double> out_start;
  std::vector<int> out_waited_for;
};

// in_ms[c], out_ms[c]: input and output exchange c; compute_ms[p][c]: rank p's kernel of input
// chunk c alone (0 for none); out_waits_for[p][c]: the input chunk of rank p that output chunk c
// waits for (-1: none). queued_ms[p][c] (empty: compute_ms): how much later kernel c ends than
// kernel c - 1 when queued right behind it; the executor runs neighbouring chunks on two streams,
// so a kernel starts in its predecessor's tail and this is less than its time alone. A kernel
// thus ends no earlier than its time alone after its inputs arrive, nor than queued_ms after its
// predecessor.
inline ChunkTimeline chunk_timeline(const std::vector<double>& in_ms,
                                    const std::vector<double>& out_ms,
                                    const std::vector<std::vector<double>>& compute_ms,
                                    const std::vector<std::vector<int>>& out_waits_for,
                                    const std::vector<std::vector<double>>& queued_ms = {}) {
  const size_t ranks = compute_ms.size(), chunks = in_ms.size();
  std::vector<std::vector<double>> done_at(ranks, std::vector<double>(chunks, 0.0));
  ChunkTimeline timeline;
  double arrived = 0;
  for (size_t c = 0; c < chunks; ++c) {
    arrived += in_ms[c];
    for (size_t p = 0; p < ranks; ++p) {
      const double before = c > 0 ? done_at[p][c - 1] : 0.0;
      const double queued = queued_ms.empty() ? compute_ms[p][c] : queued_ms[p][c];
      done_at[p][c] = std::max(before + queued, arrived + compute_ms[p][c]);
      timeline.computed = std::max(timeline.computed, done_at[p][c]);
    }
  }
  double returned = arrived;  // outputs queue behind every input exchange
  for (size_t c = 0; c < chunks; ++c) {
    int waited_for = -1;
    for (size_t p = 0; p < ranks; ++p) {
      const int after = out_waits_for[p][c];
      if (after >= 0 && done_at[p][static_cast<size_t>(after)] > returned) {
        returned = done_at[p][static_cast<size_t>(after)];
        waited_for = static_cast<int>(p);
      }
    }
    timeline.out_start.push_back(returned);
    timeline.out_waited_for.push_back(waited_for);
    returned += out_ms[c];
  }
  timeline.finished = std::max(returned, timeline.computed);
  return timeline;
}

}  // namespace dbsp::sp
