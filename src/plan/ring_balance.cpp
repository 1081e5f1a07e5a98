// Our ring-level balancer. Balanced ring steps need two things: equal mass per key shard (each
// key shard is visited by every rank once, so a heavy key shard makes one rank slow at every
// step), and per query shard a key-shard profile that is a rotation of the others' (a circulant
// work matrix). Row and column sums alone (the paper) give neither; we optimise the step maxima.
#include "plan/ring_balance.hpp"

#include <algorithm>
#include <numeric>

#include "dbsp/block_layout.hpp"
#include "plan/bit_counting.hpp"

namespace dbsp::plan {
namespace {

struct ColumnMasses {
  const MaskStats::Data& stats;
  const std::vector<int>& heads;
  std::vector<double> mass;  // per key block, filled shard by shard on demand
  std::vector<bool> known;

  double get(int column, int shard_first, int shard_end) {
    if (!known[column]) fill(shard_first, shard_end);
    return mass[column];
  }
  void fill(int first, int end) {
    const BlockMask& mask = *stats.mask;
    const int word_first = first >> 6, word_end = ((end - 1) >> 6) + 1;
    ColumnCounter counter(word_end - word_first);
    for (int h : heads)
      for (int i = 0; i < mask.q_blocks(); ++i) counter.add_row(mask.row_bits(h, i) + word_first);
    for (int j = first; j < end; ++j) {
      mass[j] = double(counter.count(j - word_first * 64));
      known[j] = true;
    }
  }
};

// Swaps heavy key blocks of the heaviest key shard with light ones of the lightest shard until
// key-shard masses are within `tolerance` of their mean.
std::vector<int> balance_key_shards(const MaskStats::Data& stats, const std::vector<int>& heads,
                                    int ring, const std::vector<double>& row_mass,
                                    double tolerance) {
  const int KB = stats.mask->k_blocks(), QB = stats.mask->q_blocks();
  std::vector<int> k_shard(KB);
  for (int j = 0; j < KB; ++j) k_shard[j] = home_shard(j, KB, ring);
  std::vector<double> shard_mass(ring, 0.0);
  for (int i = 0; i < QB; ++i)
    for (int c = 0; c < ring; ++c) shard_mass[c] += row_mass[static_cast<size_t>(i) * ring + c];
  const double mean = std::accumulate(shard_mass.begin(), shard_mass.end(), 0.0) / ring;
  if (mean <= 0) return k_shard;
  ColumnMasses columns{stats, heads, std::vector<double>(KB, 0.0), std::vector<bool>(KB, false)};
  auto shard_columns = [&](int shard) {
    std::vector<int> out;
    for (int j = 0; j < KB; ++j)
      if (k_shard[j] == shard) out.push_back(j);
    return out;
  };
  auto ensure = [&](int shard) {
    const int first = shard_begin(shard, KB, ring), end = shard_begin(shard + 1, KB, ring);
    if (first < end && !columns.known[first]) columns.fill(first, end);
  };
  for (int swaps = 0; swaps < KB; ++swaps) {
    const int heavy =
        int(std::max_element(shard_mass.begin(), shard_mass.end()) - shard_mass.begin());
    const int light =
        int(std::min_element(shard_mass.begin(), shard_mass.end()) - shard_mass.begin());
    if (shard_mass[heavy] <= (1 + tolerance) * mean) break;
    for (int c = 0; c < ring; ++c) ensure(c);  // home columns of every shard are counted lazily
    const double gap = shard_mass[heavy] - shard_mass[light];
    int best_x = -1, best_y = -1;
    double best_peak = shard_mass[heavy];
    const std::vector<int> heavy_cols = shard_columns(heavy), light_cols = shard_columns(light);
    // Lightest column of the light shard; then the heavy column closest to half the gap above it.
    int y = -1;
    for (int j : light_cols)
      if (y < 0 || columns.mass[j] < columns.mass[y]) y = j;
    if (y < 0) break;
    for (int x : heavy_cols) {
      const double delta = columns.mass[x] - columns.mass[y];
      if (delta <= 0 || delta >= gap) continue;
      const double peak = std::max(shard_mass[heavy] - delta, shard_mass[light] + delta);
      if (peak < best_peak) best_peak = peak, best_x = x, best_y = y;
    }
    if (best_x < 0) break;
    const double delta = columns.mass[best_x] - columns.mass[best_y];
    shard_mass[heavy] -= delta;
    shard_mass[light] += delta;
    k_shard[best_x] = light;
    k_shard[best_y] = heavy;
  }
  return k_shard;
}

struct RowState {
  int ring;
  std::vector<std::vector<double>> step;  // step[r][t] = work of rank r at ring step t
  std::vector<int> count;
};

double time_of(const std::vector<std::vector<double>>& step, int ring) {
  double total = 0;
  for (int t = 0; t < ring; ++t) {
    double peak = 0;
    for (int r = 0; r < ring; ++r) peak = std::max(peak, step[r][t]);
    total += peak;
  }
  return total;
}

// Greedy over rows, heaviest first: each row goes to the shard whose step maxima it raises least;
// its home shard wins while its cost is within `bias` x the row's mass of the best.
std::vector<int> greedy_rows(const std::vector<double>& row_mass, int ring,
                             const std::vector<int>& home, const std::vector<int>& capacity,
                             const std::vector<int>& order, double bias) {
  const int QB = static_cast<int>(home.size());
  std::vector<int> q_shard(QB, 0), count(ring, 0);
  std::vector<std::vector<double>> step(ring, std::vector<double>(ring, 0.0));
  std::vector<double> peak(ring, 0.0), load(ring, 0.0);
  for (int i : order) {
    const double* mass = row_mass.data() + static_cast<size_t>(i) * ring;
    double row_total = 0;
    for (int c = 0; c < ring; ++c) row_total += mass[c];
    int best = -1;
    double best_score = 0, best_load = 0;
    for (int r = 0; r < ring; ++r) {
      if (count[r] >= capacity[r]) continue;
      double rise = 0;
      for (int t = 0; t < ring; ++t) {
        rise += std::max(0.0, step[r][t] + mass[(r + t) % ring] - peak[t]);
      }
      const double score = rise - (r == home[i] ? bias * row_total : 0.0);
      if (best < 0 || score < best_score - 1e-9 ||
          (score <= best_score + 1e-9 &&
           (r == home[i] || (best != home[i] && load[r] < best_load)))) {
        best = r, best_score = score, best_load = load[r];
      }
    }
    q_shard[i] = best;
    ++count[best];
    for (int t = 0; t < ring; ++t) {
      step[best][t] += mass[(best + t) % ring];
      peak[t] = std::max(peak[t], step[best][t]);
    }
    load[best] += row_total;
  }
  return q_shard;
}

std::vector<std::vector<double>> work_of(const std::vector<double>& row_mass, int ring,
                                         const std::vector<int>& q_shard) {
  std::vector<std::vector<double>> work(ring, std::vector<double>(ring, 0.0));
  for (size_t i = 0; i < q_shard.size(); ++i)
    for (int c = 0; c < ring; ++c) work[q_shard[i]][c] += row_mass[i * ring + c];
  return work;
}

std::vector<std::vector<double>> steps_of(const std::vector<std::vector<double>>& work, int ring) {
  std::vector<std::vector<double>> step(ring, std::vector<double>(ring, 0.0));
  for (int r = 0; r < ring; ++r)
    for (int t = 0; t < ring; ++t) step[r][t] = work[r][(r + t) % ring];
  return step;
}

// Pairwise row swaps between the bottleneck rank of the worst step and every other rank.
void refine_rows(const std::vector<double>& row_mass, int ring, std::vector<int>& q_shard,
                 double target_time, int rounds) {
  const int QB = static_cast<int>(q_shard.size());
  auto step = steps_of(work_of(row_mass, ring, q_shard), ring);
  double current = time_of(step, ring);
  constexpr int kCandidates = 12;
  for (int iter = 0; iter < 16 * rounds && current > target_time; ++iter) {
    // The step with the largest gap between its maximum and its mean, and the rank holding it.
    int worst_t = 0, worst_r = 0;
    double worst_gap = -1;
    for (int t = 0; t < ring; ++t) {
      double peak = -1, sum = 0;
      int at = 0;
      for (int r = 0; r < ring; ++r) {
        sum += step[r][t];
        if (step[r][t] > peak) peak = step[r][t], at = r;
      }
      if (peak - sum / ring > worst_gap) worst_gap = peak - sum / ring, worst_t = t, worst_r = at;
    }
    const int hot_col = (worst_r + worst_t) % ring;
    auto top_rows = [&](int shard, bool heaviest) {
      std::vector<int> rows;
      for (int i = 0; i < QB; ++i)
        if (q_shard[i] == shard) rows.push_back(i);
      const size_t keep = std::min<size_t>(kCandidates, rows.size());
      std::partial_sort(rows.begin(), rows.begin() + keep, rows.end(), [&](int a, int b) {
        const double ma = row_mass[size_t(a) * ring + hot_col],
                     mb = row_mass[size_t(b) * ring + hot_col];
        return heaviest ? ma > mb : ma < mb;
      });
      rows.resize(keep);
      return rows;
    };
    const std::vector<int> from = top_rows(worst_r, true);
    double best_time = current;
    int best_x = -1, best_y = -1;
    std::vector<std::vector<double>> trial = step;
    for (int other = 0; other < ring; ++other) {
      if (other == worst_r) continue;
      for (int y : top_rows(other, false)) {
        for (int x : from) {
          for (int t = 0; t < ring; ++t) {
            trial[worst_r][t] = step[worst_r][t] -
                                row_mass[size_t(x) * ring + (worst_r + t) % ring] +
                                row_mass[size_t(y) * ring + (worst_r + t) % ring];
            trial[other][t] = step[other][t] - row_mass[size_t(y) * ring + (other + t) % ring] +
                              row_mass[size_t(x) * ring + (other + t) % ring];
          }
          const double t_new = time_of(trial, ring);
          if (t_new < best_time - 1e-9) best_time = t_new, best_x = x, best_y = y;
        }
        trial[other] = step[other];
      }
      trial[worst_r] = step[worst_r];
    }
    if (best_x < 0) break;
    const int other = q_shard[best_y];
    for (int t = 0; t < ring; ++t) {
      step[worst_r][t] += row_mass[size_t(best_y) * ring + (worst_r + t) % ring] -
                          row_mass[size_t(best_x) * ring + (worst_r + t) % ring];
      step[other][t] += row_mass[size_t(best_x) * ring + (other + t) % ring] -
                        row_mass[size_t(best_y) * ring + (other + t) % ring];
    }
    std::swap(q_shard[best_x], q_shard[best_y]);
    current = best_time;
  }
}

}  // namespace

double ring_time(const std::vector<std::vector<double>>& work) {
  const int ring = static_cast<int>(work.size());
  return time_of(steps_of(work, ring), ring);
}

RingAssignment balance_ring(const MaskStats::Data& stats, const std::vector<int>& heads, int ring,
                            double target_time, int search_rounds) {
  const BlockMask& mask = *stats.mask;
  const int QB = mask.q_blocks();
  RingAssignment out;
  std::vector<double> row_mass = group_row_shard_mass(stats, heads, ring);
  std::vector<int> home(QB);
  for (int i = 0; i < QB; ++i) home[i] = home_shard(i, QB, ring);
  out.q_shard = home;
  out.k_shard.resize(mask.k_blocks());
  for (int j = 0; j < mask.k_blocks(); ++j) out.k_shard[j] = home_shard(j, mask.k_blocks(), ring);
  out.work = work_of(row_mass, ring, home);
  out.time = ring_time(out.work);
  if (ring == 1 || out.time <= target_time) return out;

  out.k_shard = balance_key_shards(stats, heads, ring, row_mass, 0.01);
  apply_key_moves(stats, heads, out.k_shard, ring, row_mass);

  // Uneven shards are allowed by a few blocks when they help.
  std::vector<int> capacity(ring);
  for (int r = 0; r < ring; ++r) {
    const int size = shard_begin(r + 1, QB, ring) - shard_begin(r, QB, ring);
    capacity[r] = size + std::max(1, size / 32);
  }
  std::vector<int> order(QB);
  std::iota(order.begin(), order.end(), 0);
  std::vector<double> totals(QB, 0.0);
  for (int i = 0; i < QB; ++i)
    for (int c = 0; c < ring; ++c) totals[i] += row_mass[static_cast<size_t>(i) * ring + c];
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return totals[a] > totals[b]; });

  std::vector<int> best = home;
  double best_time = ring_time(work_of(row_mass, ring, home));
  if (best_time > target_time) {
    // Strongest home bias first: the first bias that reaches the target moves the fewest blocks.
    for (double bias : {0.5, 0.25, 0.12, 0.06, 0.03, 0.0}) {
      std::vector<int> q_shard = greedy_rows(row_mass, ring, home, capacity, order, bias);
      const double t = ring_time(work_of(row_mass, ring, q_shard));
      if (t < best_time) best_time = t, best = q_shard;
      if (t <= target_time) break;
    }
    refine_rows(row_mass, ring, best, target_time, search_rounds);
  }
  out.q_shard = best;
  out.work = work_of(row_mass, ring, best);
  out.time = ring_time(out.work);
  return out;
}

}  // namespace dbsp::plan
