// Our ring-level balancer. Balanced ring steps need two things: equal mass per key shard (each
// key shard is visited by every rank once, so a heavy key shard makes one rank slow at every
// step), and per query shard a key-shard profile that is a rotation of the others' (a circulant
// work matrix). Row and column sums alone (the paper) give neither; we optimise the step maxima.
#include "plan/ring_balance.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <tuple>

#include "dbsp/block_layout.hpp"
#include "dbsp/error.hpp"
#include "plan/heaviest_first.hpp"
#include "plan/home_shards.hpp"

namespace dbsp::plan {
namespace {

// Swaps heavy key blocks of the heaviest key shard with light ones of the lightest shard until
// key-shard masses are within `tolerance` of their mean.
std::vector<int> balance_key_shards(const MaskStats::Data& stats, const std::vector<int>& heads,
                                    int ring, double tolerance) {
  const int KB = stats.mask->k_blocks();
  std::vector<int> k_shard = home_shards(KB, ring);
  const std::vector<double> column = column_mass(stats, heads);
  std::vector<double> shard_mass(ring, 0.0);
  for (int j = 0; j < KB; ++j) shard_mass[k_shard[j]] += column[j];
  const double mean = std::accumulate(shard_mass.begin(), shard_mass.end(), 0.0) / ring;
  if (mean <= 0) return k_shard;
  // Column masses are whole block counts (from the statistics), so each shard's key blocks are
  // kept as sorted integers mass << 32 | block: ordered by (mass, block), the lightest first, and
  // the heavy block that best halves the gap is found by bisection (ties go to the lowest block).
  constexpr int kBlockBits = 32;
  require(KB <= INT32_MAX && *std::max_element(column.begin(), column.end()) < 0x1p32,
          "balance_key_shards: column masses or key blocks past 32 bits");
  auto mass_of = [](uint64_t entry) { return double(entry >> kBlockBits); };
  auto block_of = [](uint64_t entry) { return int(entry & 0xffffffffu); };
  // The first entry of mass >= m.
  auto at_least = [](const std::vector<uint64_t>& list, double m) {
    const uint64_t key = uint64_t(std::ceil(std::max(0.0, m))) << kBlockBits;
    return std::lower_bound(list.begin(), list.end(), key);
  };
  std::vector<std::vector<uint64_t>> columns_of(ring);
  bool sorted = false;
  // `in` replaces `out`: only the entries between their places shift.
  auto take = [](std::vector<uint64_t>& list, uint64_t out, uint64_t in) {
    const auto from = std::lower_bound(list.begin(), list.end(), out);
    const auto to = std::lower_bound(list.begin(), list.end(), in);
    if (to <= from) {
      std::move_backward(to, from, from + 1);
      *to = in;
    } else {
      std::move(from + 1, to, from);
      *(to - 1) = in;
    }
  };
  for (int swaps = 0; swaps < KB; ++swaps) {
    const int heavy =
        int(std::max_element(shard_mass.begin(), shard_mass.end()) - shard_mass.begin());
    const int light =
        int(std::min_element(shard_mass.begin(), shard_mass.end()) - shard_mass.begin());
    if (shard_mass[heavy] <= (1 + tolerance) * mean) break;
    if (!sorted) {
      for (int j : heaviest_first(column, true))
        columns_of[k_shard[j]].push_back(uint64_t(column[j]) << kBlockBits | uint64_t(j));
      sorted = true;
    }
    if (columns_of[light].empty()) break;
    const double high = shard_mass[heavy], low = shard_mass[light], gap = high - low;
    // Lightest block y of the light shard; then the heavy block x whose swap with it leaves the
    // lower peak max(high - delta, low + delta), delta = mass(x) - mass(y) in (0, gap).
    const uint64_t y = columns_of[light].front();
    const double y_mass = mass_of(y);
    auto peak = [&](double mass) {
      const double delta = mass - y_mass;
      return std::max(high - delta, low + delta);
    };
    const std::vector<uint64_t>& list = columns_of[heavy];
    const auto above = at_least(list, y_mass + gap / 2);
    uint64_t best = 0;
    int best_block = -1;
    double best_peak = high;
    auto offer = [&](std::vector<uint64_t>::const_iterator at) {
      const double m = mass_of(*at);
      if (m <= y_mass || m >= y_mass + gap) return;
      const uint64_t first = *at_least(list, m);  // the lowest block of that mass
      const double p = peak(m);
      if (p < best_peak || (p == best_peak && best_block >= 0 && block_of(first) < best_block))
        best_peak = p, best = first, best_block = block_of(first);
    };
    if (above != list.end()) offer(above);
    if (above != list.begin()) offer(above - 1);
    if (best_block < 0) break;
    const double delta = mass_of(best) - y_mass;
    shard_mass[heavy] -= delta;
    shard_mass[light] += delta;
    k_shard[best_block] = light;
    k_shard[block_of(y)] = heavy;
    take(columns_of[heavy], best, y);
    take(columns_of[light], y, best);
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
// its home shard wins while its cost is within `bias` x the row's mass of the best. At step t,
// rank r meets key shard (r + t) mod R. `doubled` holds each row's masses twice over
// ([i][2R]), so that the masses rank r meets are doubled[i][r..r+R). Masses are whole block
// counts, so the sums are exact in any order. kRing > 0 fixes the ring degree at compile time
// (an even one runs two ranks per vector); 0: any.
template <int kRing>
std::vector<int> greedy_rows(const std::vector<double>& doubled, int ring,
                             const std::vector<int>& home, const std::vector<int>& capacity,
                             const std::vector<int>& order, double bias) {
  using Pair [[gnu::vector_size(16)]] = double;
  const int R = kRing > 0 ? kRing : ring;
  const int QB = static_cast<int>(home.size());
  std::vector<int> q_shard(QB, 0), count(R, 0);
  std::vector<double> step_t(static_cast<size_t>(R) * R, 0.0);  // [t][r]: rank r's work at step t
  std::vector<double> peak(R, 0.0), load(R, 0.0), rise(R);
  for (int i : order) {
    const double* mass = doubled.data() + static_cast<size_t>(i) * 2 * R;
    double row_total = 0;
    for (int c = 0; c < R; ++c) row_total += mass[c];
    std::fill(rise.begin(), rise.end(), 0.0);
    for (int t = 0; t < R; ++t) {
      const double* at = step_t.data() + static_cast<size_t>(t) * R;
      const double* meets = mass + t;  // rank r meets key shard r + t
      if constexpr (kRing > 0 && kRing % 2 == 0) {
        const Pair limit = {peak[t], peak[t]}, zero = {0.0, 0.0};
        for (int r = 0; r < R; r += 2) {
          Pair a, m, sum;
          std::memcpy(&a, at + r, sizeof(a));
          std::memcpy(&m, meets + r, sizeof(m));
          std::memcpy(&sum, rise.data() + r, sizeof(sum));
          const Pair x = a + m - limit;
          sum += x > zero ? x : zero;
          std::memcpy(rise.data() + r, &sum, sizeof(sum));
        }
      } else {
        for (int r = 0; r < R; ++r) {
          const double x = at[r] + meets[r] - peak[t];
          rise[r] += x > 0 ? x : 0;
        }
      }
    }
    // Without branches (bitwise, not short-circuit, tests): the comparisons are unpredictable.
    int best = -1;
    double best_score = 0, best_load = 0;
    const int home_shard = home[i];
    const double home_bonus = bias * row_total;
    for (int r = 0; r < R; ++r) {
      const double score = rise[r] - (r == home_shard ? home_bonus : 0.0);
      const bool take = (count[r] < capacity[r]) &
                        ((best < 0) | (score < best_score - 1e-9) |
                         ((score <= best_score + 1e-9) &
                          ((r == home_shard) | ((best != home_shard) & (load[r] < best_load)))));
      best = take ? r : best;
      best_score = take ? score : best_score;
      best_load = take ? load[r] : best_load;
    }
    q_shard[i] = best;
    ++count[best];
    for (int t = 0; t < R; ++t) {
      double& at = step_t[static_cast<size_t>(t) * R + best];
      at += mass[best + t];
      peak[t] = std::max(peak[t], at);
    }
    load[best] += row_total;
  }
  return q_shard;
}

std::vector<int> greedy_rows_any(const std::vector<double>& doubled, int ring,
                                 const std::vector<int>& home, const std::vector<int>& capacity,
                                 const std::vector<int>& order, double bias) {
  switch (ring) {
    case 2:
      return greedy_rows<2>(doubled, ring, home, capacity, order, bias);
    case 4:
      return greedy_rows<4>(doubled, ring, home, capacity, order, bias);
    case 8:
      return greedy_rows<8>(doubled, ring, home, capacity, order, bias);
    case 16:
      return greedy_rows<16>(doubled, ring, home, capacity, order, bias);
    default:
      return greedy_rows<0>(doubled, ring, home, capacity, order, bias);
  }
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

// Sum over steps t < R of max(rest[t], w[t] + y[t], o[t] + x[t]), two steps per vector and without
// branches (compilers tend to branch on max, and these compares are unpredictable).
double trial_time(const double* rest, const double* w, const double* y, const double* o,
                  const double* x, int R) {
  using Pair [[gnu::vector_size(16)]] = double;
  Pair sum = {0.0, 0.0};
  int t = 0;
  for (; t + 2 <= R; t += 2) {
    Pair a, b, c, d, e;
    std::memcpy(&a, rest + t, sizeof(a));
    std::memcpy(&b, w + t, sizeof(b));
    std::memcpy(&c, y + t, sizeof(c));
    std::memcpy(&d, o + t, sizeof(d));
    std::memcpy(&e, x + t, sizeof(e));
    const Pair worst = b + c, other = d + e;
    const Pair both = worst > other ? worst : other;
    sum += both > a ? both : a;
  }
  double total = sum[0] + sum[1];
  for (; t < R; ++t) total += std::max(rest[t], std::max(w[t] + y[t], o[t] + x[t]));
  return total;
}

// Pairwise row swaps between the bottleneck rank of the worst step and every other rank. A trial
// swap changes two ranks only, so its time is the sum over steps of the larger of their new work
// and the maximum of the untouched ranks (all sums of whole block counts, exact in any order).
void refine_rows(const std::vector<double>& row_mass, int ring, std::vector<int>& q_shard,
                 double target_time, int rounds) {
  const int QB = static_cast<int>(q_shard.size()), R = ring;
  const auto work = work_of(row_mass, ring, q_shard);
  std::vector<double> step(static_cast<size_t>(R) * R);  // [r][t]: rank r's work at step t
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < R; ++t) step[r * R + t] = work[r][(r + t) % R];
  auto mass_at = [&](int row, int r, int t) {
    const int c = r + t < R ? r + t : r + t - R;
    return row_mass[static_cast<size_t>(row) * R + c];
  };
  double current = 0;
  for (int t = 0; t < R; ++t) {
    double peak = 0;
    for (int r = 0; r < R; ++r) peak = std::max(peak, step[r * R + t]);
    current += peak;
  }
  constexpr size_t kCandidates = 12;
  std::vector<std::vector<int>> rows_of(R);  // each shard's rows, ascending
  for (int i = 0; i < QB; ++i) rows_of[q_shard[i]].push_back(i);
  std::vector<double> rest(R), y_as_worst(R), other_without_y(R);
  std::vector<std::vector<int>> lightest(R);  // per shard: top_rows(shard, false) at lightest_col
  std::vector<int> lightest_col(R, -1);
  // (Two swaps per round: 16 changed mean rho_s by < 5e-5 on the Wan and CogVideoX workloads.)
  for (int iter = 0; iter < 2 * rounds && current > target_time; ++iter) {
    // The step with the largest gap between its maximum and its mean, and the rank holding it.
    int worst_t = 0, worst_r = 0;
    double worst_gap = -1;
    for (int t = 0; t < R; ++t) {
      double peak = -1, sum = 0;
      int at = 0;
      for (int r = 0; r < R; ++r) {
        sum += step[r * R + t];
        if (step[r * R + t] > peak) peak = step[r * R + t], at = r;
      }
      if (peak - sum / R > worst_gap) worst_gap = peak - sum / R, worst_t = t, worst_r = at;
    }
    const int hot_col = (worst_r + worst_t) % R;
    // The kCandidates heaviest (or lightest) rows of a shard by their mass at the hot key shard,
    // ties to the lower row, kept sorted by insertion (few rows displace the kept ones).
    auto top_rows = [&](int shard, bool heaviest) {
      std::vector<int> kept;
      std::vector<double> key;
      for (int i : rows_of[shard]) {
        const double m = row_mass[size_t(i) * R + hot_col];
        const double k = heaviest ? -m : m;
        if (kept.size() == kCandidates && k >= key.back()) continue;
        size_t at = kept.size();
        while (at > 0 && k < key[at - 1]) --at;
        kept.insert(kept.begin() + at, i);
        key.insert(key.begin() + at, k);
        if (kept.size() > kCandidates) kept.pop_back(), key.pop_back();
      }
      return kept;
    };
    const std::vector<int> from = top_rows(worst_r, true);
    // Per candidate, its masses as rank worst_r and as rank `other` would meet them, and the two
    // ranks' steps without it.
    const size_t nf = from.size();
    std::vector<double> worst_without_x(nf * R), x_as_other(nf * R);
    for (size_t a = 0; a < nf; ++a)
      for (int t = 0; t < R; ++t)
        worst_without_x[a * R + t] = step[worst_r * R + t] - mass_at(from[a], worst_r, t);
    double best_time = current;
    int best_x = -1, best_y = -1;
    for (int other = 0; other < R; ++other) {
      if (other == worst_r) continue;
      for (int t = 0; t < R; ++t) {
        double peak = 0;
        for (int r = 0; r < R; ++r)
          if (r != worst_r && r != other) peak = std::max(peak, step[r * R + t]);
        rest[t] = peak;
      }
      for (size_t a = 0; a < nf; ++a)
        for (int t = 0; t < R; ++t) x_as_other[a * R + t] = mass_at(from[a], other, t);
      // A shard's lightest rows at a key shard change only when a swap touches the shard.
      if (lightest_col[other] != hot_col) {
        lightest[other] = top_rows(other, false);
        lightest_col[other] = hot_col;
      }
      for (int y : lightest[other]) {
        for (int t = 0; t < R; ++t) {
          y_as_worst[t] = mass_at(y, worst_r, t);
          other_without_y[t] = step[other * R + t] - mass_at(y, other, t);
        }
        for (size_t a = 0; a < nf; ++a) {
          const double* w0 = worst_without_x.data() + a * R;
          const double* o1 = x_as_other.data() + a * R;
          const double t_new =
              trial_time(rest.data(), w0, y_as_worst.data(), other_without_y.data(), o1, R);
          if (t_new < best_time - 1e-9) best_time = t_new, best_x = from[a], best_y = y;
        }
      }
    }
    if (best_x < 0) break;
    const int other = q_shard[best_y];
    for (int t = 0; t < R; ++t) {
      step[worst_r * R + t] += mass_at(best_y, worst_r, t) - mass_at(best_x, worst_r, t);
      step[other * R + t] += mass_at(best_x, other, t) - mass_at(best_y, other, t);
    }
    std::swap(q_shard[best_x], q_shard[best_y]);
    lightest_col[worst_r] = lightest_col[other] = -1;
    for (auto [row, from_shard, to_shard] :
         {std::tuple{best_x, worst_r, other}, std::tuple{best_y, other, worst_r}}) {
      std::vector<int>& out = rows_of[from_shard];
      out.erase(std::lower_bound(out.begin(), out.end(), row));
      std::vector<int>& in = rows_of[to_shard];
      in.insert(std::lower_bound(in.begin(), in.end(), row), row);
    }
    current = best_time;
  }
}

}  // namespace

double ring_time(const std::vector<std::vector<double>>& work) {
  const int ring = static_cast<int>(work.size());
  return time_of(steps_of(work, ring), ring);
}

// Key shards are balanced to within this of their mean: a group's ring time is at least its
// heaviest key shard, so this is also about the rho_s the rows can reach (1% left ours ~1% above
// the paper's at R = 2; 0.2% gives 0.2-0.7% above the head bound on the Wan and CogVideoX
// workloads, for about the same moved blocks).
constexpr double kKeyTolerance = 0.002;

std::vector<int> balanced_key_shards(const MaskStats::Data& stats, const std::vector<int>& heads,
                                     int ring) {
  return balance_key_shards(stats, heads, ring, kKeyTolerance);
}

RingAssignment balance_ring(const MaskStats::Data& stats, const HeadSets& sets, int ring,
                            std::vector<std::vector<double>> home_work,
                            const std::vector<int>& k_shard, double target_time,
                            int search_rounds) {
  const BlockMask& mask = *stats.mask;
  const int QB = mask.q_blocks();
  RingAssignment out;
  const std::vector<int> home = home_shards(QB, ring);
  out.q_shard = home;
  out.k_shard = home_shards(mask.k_blocks(), ring);
  out.work = std::move(home_work);
  out.time = ring_time(out.work);
  if (ring == 1 || out.time <= target_time) return out;

  out.k_shard = k_shard;
  const std::vector<double> row_mass = row_shard_mass(stats, sets, ring);

  // Uneven shards are allowed by a few blocks when they help.
  std::vector<int> capacity(ring);
  for (int r = 0; r < ring; ++r) {
    const int size = shard_begin(r + 1, QB, ring) - shard_begin(r, QB, ring);
    capacity[r] = size + std::max(1, size / 32);
  }
  std::vector<double> totals(QB, 0.0);
  for (int i = 0; i < QB; ++i)
    for (int c = 0; c < ring; ++c) totals[i] += row_mass[static_cast<size_t>(i) * ring + c];
  const std::vector<int> order = heaviest_first(totals);

  std::vector<int> best = home;
  double best_time = ring_time(work_of(row_mass, ring, home));
  if (best_time > target_time) {
    // Strongest home bias first: the first bias that reaches the target moves the fewest blocks.
    // (Two strengths: sweeping 0.5, 0.25, 0.12, 0.06, 0.03, 0 changed mean rho_s by < 2e-4 on the
    // Wan and CogVideoX workloads, for three times the time.)
    std::vector<double> doubled(static_cast<size_t>(QB) * 2 * ring);
    for (int i = 0; i < QB; ++i) {
      const double* mass = row_mass.data() + static_cast<size_t>(i) * ring;
      double* twice = doubled.data() + static_cast<size_t>(i) * 2 * ring;
      std::copy_n(mass, ring, twice);
      std::copy_n(mass, ring, twice + ring);
    }
    for (double bias : {0.03, 0.0}) {
      std::vector<int> q_shard = greedy_rows_any(doubled, ring, home, capacity, order, bias);
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
