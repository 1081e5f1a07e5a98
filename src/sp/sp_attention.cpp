// SpAttention: per-layer plan (PlanCache, P_s rule), a cross-rank check that every rank holds the
// same plan and mask, the executor, and gathered telemetry.
#include "dbsp/sp_attention.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <iomanip>
#include <sstream>

#include "dbsp/error.hpp"
#include "dbsp/imbalance.hpp"
#include "dbsp/sp_estimate.hpp"
#include "sp/stopwatch.hpp"

namespace dbsp {
namespace {

struct PlanFingerprint {
  uint64_t plan = 0;
  uint64_t mask = 0;
  bool operator==(const PlanFingerprint&) const = default;
};

std::string hex(uint64_t value) {
  std::ostringstream out;
  out << "0x" << std::hex << std::setw(16) << std::setfill('0') << value;
  return out.str();
}

// One multiply-xorshift round per 64-bit word: a pass over the mask costs about as much as
// reading it (it runs on every layer call).
struct HashMixer {
  uint64_t hash = 0x9e3779b97f4a7c15ull;
  void operator()(uint64_t value) {
    hash = (hash ^ value) * 0xbf58476d1ce4e5b9ull;
    hash ^= hash >> 31;
  }
};

// Four independent HashMixer lanes, each seeded apart: one lane is a chain of dependent
// multiplies, four keep the multiplier busy (about twice as fast at 720p). Each round is a
// bijection of a lane's state for a given word and of the word for a given state, so changing
// any one word always changes the lane's result.
struct FourLanes {
  HashMixer lane[4];
  FourLanes() {
    for (int l = 0; l < 4; ++l) lane[l].hash += static_cast<uint64_t>(l) * 0x94d049bb133111ebull;
  }
  void mix_into(HashMixer& mix) const {
    for (const HashMixer& l : lane) mix(l.hash);
  }
};

// A block mask's words are hashed in chunks of a fixed size, in parallel, each over four lanes;
// the chunk hashes are then mixed in order. Chunks depend on the mask alone, so the hash does not
// depend on the thread count. At 720p (40 heads, 1182 x 1182 blocks) this is 0.9 M words per
// layer call.
constexpr int64_t kHashChunkWords = int64_t{1} << 14;

uint64_t words_hash(const uint64_t* words, int64_t count) {
  FourLanes lanes;
  HashMixer* lane = lanes.lane;
  int64_t w = 0;
  for (; w + 4 <= count; w += 4) {
    lane[0](words[w]), lane[1](words[w + 1]), lane[2](words[w + 2]), lane[3](words[w + 3]);
  }
  for (; w < count; ++w) lane[w & 3](words[w]);
  HashMixer mix;
  lanes.mix_into(mix);
  return mix.hash;
}

}  // namespace

uint64_t mask_hash(const BlockMask& mask) {
  HashMixer mix;
  const MaskGeometry& g = mask.geometry();
  for (int64_t value : {int64_t{mask.heads()}, g.seq_q, g.seq_k, int64_t{g.block_q},
                        int64_t{g.block_k}, int64_t{mask.q_blocks()}, int64_t{mask.k_blocks()}}) {
    mix(static_cast<uint64_t>(value));
  }
  // Rows are stored back to back: the whole mask is one run of words.
  const int64_t words = int64_t{mask.heads()} * mask.q_blocks() * mask.words_per_row();
  if (words == 0) return mix.hash;
  const uint64_t* bits = mask.row_bits(0, 0);
  const int64_t chunks = (words + kHashChunkWords - 1) / kHashChunkWords;
  std::vector<uint64_t> chunk(static_cast<size_t>(chunks));
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t first = c * kHashChunkWords;
    chunk[c] = words_hash(bits + first, std::min(words, first + kHashChunkWords) - first);
  }
  for (uint64_t value : chunk) mix(value);
  return mix.hash;
}

namespace {

// The keys of a fine mask are hashed in chunks of a fixed number of rows, in parallel; the chunk
// hashes are then mixed in order. The chunks depend on the mask alone, so the hash does not depend
// on the thread count.
constexpr int64_t kHashChunkRows = 64;

// One chunk: its rows' end offsets, then its keys, two per 64-bit word, dealt to FourLanes, so
// changing any one key, or one row end inside a chunk, always changes the chunk's hash.
uint64_t chunk_hash(const FineMask& mask, int64_t first_row, int64_t end_row) {
  const std::vector<int64_t>& offset = mask.row_offset();
  HashMixer mix;
  for (int64_t r = first_row; r < end_row; ++r) mix(static_cast<uint64_t>(offset[r + 1]));
  const int32_t* keys = mask.key_index().data();
  const int64_t begin = offset[first_row], end = offset[end_row];
  auto word = [&](int64_t e) {
    if constexpr (std::endian::native == std::endian::little) {
      uint64_t both;  // the same value, in one load
      std::memcpy(&both, keys + e, sizeof(both));
      return both;
    }
    return static_cast<uint32_t>(keys[e]) | uint64_t{static_cast<uint32_t>(keys[e + 1])} << 32;
  };
  FourLanes lanes;
  HashMixer* lane = lanes.lane;
  int64_t e = begin;
  for (; e + 8 <= end; e += 8) {
    lane[0](word(e)), lane[1](word(e + 2)), lane[2](word(e + 4)), lane[3](word(e + 6));
  }
  for (; e + 2 <= end; e += 2) lane[0](word(e));
  if (e < end) lane[1](static_cast<uint32_t>(keys[e]));
  lanes.mix_into(mix);
  return mix.hash;
}

}  // namespace

uint64_t mask_hash(const FineMask& mask) {
  const int64_t rows = static_cast<int64_t>(mask.row_offset().size()) - 1;
  const int64_t chunks = (rows + kHashChunkRows - 1) / kHashChunkRows;
  std::vector<uint64_t> chunk(static_cast<size_t>(chunks));
  const bool parallel = mask.kept() > (int64_t{1} << 16);
#pragma omp parallel for schedule(dynamic, 4) if (parallel)
  for (int64_t c = 0; c < chunks; ++c) {
    chunk[c] = chunk_hash(mask, c * kHashChunkRows, std::min(rows, (c + 1) * kHashChunkRows));
  }
  HashMixer mix;
  mix(0x66696e656d61736bull);  // "finemask": never equal to a block mask's hash by construction
  const MaskGeometry& g = mask.geometry();
  for (int64_t value : {int64_t{mask.heads()}, g.seq_q, g.seq_k, int64_t{g.block_q},
                        int64_t{g.block_k}, mask.kept()}) {
    mix(static_cast<uint64_t>(value));
  }
  for (uint64_t value : chunk) mix(value);
  return mix.hash;
}

void SpTelemetry::add(const SpTelemetry& other) {
  total_ms += other.total_ms;
  setup_ms += other.setup_ms;
  compute_ms += other.compute_ms;
  comm_ms += other.comm_ms;
  wait_ms += other.wait_ms;
  idle_ms += other.idle_ms;
  bytes_sent += other.bytes_sent;
  bytes_received += other.bytes_received;
  bytes_saved += other.bytes_saved;
  ring_steps_computed += other.ring_steps_computed;
  ring_steps_skipped += other.ring_steps_skipped;
  kept_blocks += other.kept_blocks;
}

SpAttention::SpAttention(Communicator& world, Strategy strategy, int layers, SpOptions options,
                         PlannerOptions planner, CostModel cost)
    : executor_(world, options),
      strategy_(strategy),
      layers_(layers),
      plans_(
          layers, world.size(), strategy.policy,
          [&] {
            planner.share_heads = planner.share_heads || strategy.share_heads;
            return planner;
          }(),
          cost, strategy.grid),
      schedule_keys_(static_cast<size_t>(std::max(layers, 0)), 0) {
  // A fixed grid needs one set of sub-communicators; a per-layer choice may use any of them.
  const std::vector<Grid> grids =
      strategy.grid ? std::vector<Grid>{*strategy.grid} : factorizations(world.size());
  executor_.prepare(grids);
}

namespace {

// The key under which the executor keeps a layer's schedule: plan and mask together.
uint64_t reuse_key(uint64_t plan_hash, uint64_t mask_fingerprint) {
  return plan_hash * 0x9e3779b97f4a7c15ull ^ mask_fingerprint;
}

}  // namespace

PlanCache::Lookup SpAttention::plan_for(int layer, const BlockMask& mask) {
  const std::lock_guard<std::mutex> lock(plans_mutex_);
  return plans_.plan_for(layer, mask);
}

template <class Work>
void SpAttention::start_ahead(int layer, const BlockMask& planned_on, bool device, bool fine,
                              Work&& work) {
  require(layer >= 0 && layer < layers_, "SpAttention::plan_ahead: layer ", layer, " outside [0, ",
          layers_, ")");
  (void)take_ahead(layer, nullptr, device, fine);  // an earlier call for this layer is dropped
  // Only this worker touches the layer's plan and schedule key until take_ahead collects it.
  ahead_.push_back(
      {layer, &planned_on, device, fine, std::async(std::launch::async, std::move(work))});
}

void SpAttention::start_block_ahead(int layer, const SpProblem& problem, const BlockMask& mask,
                                    bool device) {
  start_ahead(layer, mask, device, /*fine=*/false, [this, layer, problem, &mask, device] {
    Prepared prepared;
    prepared.mask_fingerprint = mask_hash(mask);
    prepared.lookup = plan_for(layer, mask);
    const ScheduleReuse reuse{
        layer, reuse_key(prepared.lookup.plan->partition.hash(), prepared.mask_fingerprint)};
    // A schedule the executor keeps for this key is reused as it is.
    if (reuse.key != schedule_keys_[layer]) {
      executor_.prebuild_schedule(problem, mask, prepared.lookup.plan->partition, reuse, device);
    }
    return prepared;
  });
}

void SpAttention::start_fine_ahead(int layer, const SpProblem& problem, const FineMask& mask,
                                   bool device) {
  const BlockMask& covering = mask.covering_blocks();
  start_ahead(layer, covering, device, /*fine=*/true, [this, layer, problem, &mask, &covering] {
    Prepared prepared;
    prepared.mask_fingerprint = mask_hash(mask);
    prepared.lookup = plan_for(layer, covering);
    const Partition& partition = prepared.lookup.plan->partition;
    prepared.fine_ratio = imbalance_ratio(mask, partition);
    const ScheduleReuse reuse{layer, reuse_key(partition.hash(), prepared.mask_fingerprint)};
    if (reuse.key != schedule_keys_[layer]) {
      executor_.prebuild_schedule(problem, mask, partition, reuse);
    }
    return prepared;
  });
}

void SpAttention::plan_ahead(int layer, const SpProblem& problem, const BlockMask& mask) {
  start_block_ahead(layer, problem, mask, /*device=*/false);
}

void SpAttention::plan_ahead_device(int layer, const SpProblem& problem, const BlockMask& mask) {
  start_block_ahead(layer, problem, mask, /*device=*/true);
}

void SpAttention::plan_ahead(int layer, const SpProblem& problem, const FineMask& mask) {
  start_fine_ahead(layer, problem, mask, /*device=*/false);
}

void SpAttention::plan_ahead_device(int layer, const SpProblem& problem, const FineMask& mask) {
  start_fine_ahead(layer, problem, mask, /*device=*/true);
}

std::optional<SpAttention::Prepared> SpAttention::take_ahead(int layer, const BlockMask* mask,
                                                             bool device, bool fine) {
  std::optional<Prepared> taken;
  for (auto it = ahead_.begin(); it != ahead_.end();) {
    if (it->layer != layer) {
      ++it;
      continue;
    }
    if (mask != nullptr && it->mask == mask && it->device == device && it->fine == fine) {
      taken = it->work.get();  // rethrows what the worker threw
    } else {
      // Dropped: only its completion matters (what it threw, the forward meets again itself).
      try {
        (void)it->work.get();
      } catch (const std::exception&) {
      }
    }
    it = ahead_.erase(it);
  }
  return taken;
}

template <class Fingerprint, class Run>
SpLayerReport SpAttention::forward_with(int layer, const BlockMask& mask,
                                        const BlockMask* ahead_mask, bool device, bool fine,
                                        Fingerprint&& fingerprint, Run&& run) {
  require(layer >= 0 && layer < layers_, "SpAttention: layer ", layer, " outside [0, ", layers_,
          ")");
  Communicator& world = executor_.world();
  const std::optional<Prepared> ready = take_ahead(layer, ahead_mask, device, fine);
  const PlanCache::Lookup lookup = ready ? ready->lookup : plan_for(layer, mask);
  const Partition& partition = lookup.plan->partition;

  // Every rank must run the same plan on the same mask, or the routing tables disagree.
  const PlanFingerprint mine{partition.hash(), ready ? ready->mask_fingerprint : fingerprint()};
  const std::vector<PlanFingerprint> all = world.all_gather(mine, "sp plan hash check");
  for (int p = 0; p < world.size(); ++p) {
    if (all[p] == all[0]) continue;
    fail("SpAttention: layer ", layer, ": rank ", p, " holds plan ", hex(all[p].plan), " on mask ",
         hex(all[p].mask), " but rank 0 holds plan ", hex(all[0].plan), " on mask ",
         hex(all[0].mask), "; every rank must pass the same mask and planner settings");
  }

  SpLayerReport report;
  report.layer = layer;
  report.grid = partition.grid;
  report.plan_hash = mine.plan;
  report.replanned = lookup.replanned;
  report.predicted_ratio = lookup.current_ratio;
  report.predicted_ms = lookup.plan->predicted.total_ms;
  report.planned_ahead = ready.has_value();
  if (ready && fine) report.predicted_ratio = ready->fine_ratio;
  // The executor keeps this layer's schedule while plan and mask stay the same.
  const ScheduleReuse reuse{layer, reuse_key(mine.plan, mine.mask)};
  schedule_keys_[layer] = 0;  // unknown until the run has kept it
  report.telemetry = run(partition, reuse);
  schedule_keys_[layer] = reuse.key;
  report.per_rank = world.all_gather(report.telemetry, "sp telemetry gather");
  double max_compute = 0, sum_compute = 0;
  for (const SpTelemetry& t : report.per_rank) {
    max_compute = std::max(max_compute, t.compute_ms);
    sum_compute += t.compute_ms;
  }
  const double mean = sum_compute / static_cast<double>(report.per_rank.size());
  report.measured_ratio = mean > 0 ? max_compute / mean : 1.0;
  return report;
}

namespace {

// Elements of one batch element of this rank's query (and output) shard and key (and value)
// shard.
struct ShardElements {
  int64_t q = 0, k = 0;
  ShardElements(const SpProblem& problem, int rank, int ranks) {
    const int64_t row = int64_t{problem.heads} * problem.head_dim;
    q = sequence_shard(problem.q_layout(), rank, ranks).tokens() * row;
    k = sequence_shard(problem.k_layout(), rank, ranks).tokens() * row;
  }
};

// Runs `one(b)` for every batch element; telemetry summed, the first element's flags kept.
template <class One>
SpTelemetry over_batch(const SpProblem& problem, One&& one) {
  require(problem.batch >= 1, "SpAttention: batch must be >= 1, got ", problem.batch);
  SpTelemetry sum = one(0);
  for (int b = 1; b < problem.batch; ++b) sum.add(one(b));
  return sum;
}

}  // namespace

SpLayerReport SpAttention::forward(int layer, const SpProblem& problem, const BlockMask& mask,
                                   const float* q, const float* k, const float* v, float* out) {
  Communicator& world = executor_.world();
  const ShardElements n(problem, world.rank(), world.size());
  return forward_with(
      layer, mask, &mask, /*device=*/false, /*fine=*/false, [&] { return mask_hash(mask); },
      [&](const Partition& partition, ScheduleReuse reuse) {
        return over_batch(problem, [&](int b) {
          return executor_.run(problem, mask, partition, q + b * n.q, k + b * n.k, v + b * n.k,
                               out + b * n.q, reuse);
        });
      });
}

SpLayerReport SpAttention::forward(int layer, const SpProblem& problem, const FineMask& mask,
                                   const float* q, const float* k, const float* v, float* out) {
  Communicator& world = executor_.world();
  const ShardElements n(problem, world.rank(), world.size());
  const Partition* used = nullptr;
  SpLayerReport report = forward_with(
      layer, mask.covering_blocks(), &mask.covering_blocks(), /*device=*/false, /*fine=*/true,
      [&] { return mask_hash(mask); },
      [&](const Partition& partition, ScheduleReuse reuse) {
        used = &partition;
        return over_batch(problem, [&](int b) {
          return executor_.run(problem, mask, partition, q + b * n.q, k + b * n.k, v + b * n.k,
                               out + b * n.q, reuse);
        });
      });
  if (!report.planned_ahead) report.predicted_ratio = imbalance_ratio(mask, *used);
  return report;
}

SpLayerReport SpAttention::forward_device_bf16(int layer, const SpProblem& problem,
                                               const BlockMask& mask, const void* q, const void* k,
                                               const void* v, void* out) {
  Communicator& world = executor_.world();
  const ShardElements n(problem, world.rank(), world.size());
  const int64_t q_bytes = 2 * n.q, k_bytes = 2 * n.k;  // bf16
  auto in = [](const void* p, int64_t offset) { return static_cast<const char*>(p) + offset; };
  return forward_with(
      layer, mask, &mask, /*device=*/true, /*fine=*/false, [&] { return mask_hash(mask); },
      [&](const Partition& partition, ScheduleReuse reuse) {
        return over_batch(problem, [&](int b) {
          return executor_.run_device_bf16(problem, mask, partition, in(q, b * q_bytes),
                                           in(k, b * k_bytes), in(v, b * k_bytes),
                                           static_cast<char*>(out) + b * q_bytes, reuse);
        });
      });
}

SpLayerReport SpAttention::forward_device_bf16(int layer, const SpProblem& problem,
                                               const FineMask& mask, const void* q, const void* k,
                                               const void* v, void* out) {
  Communicator& world = executor_.world();
  const ShardElements n(problem, world.rank(), world.size());
  const int64_t q_bytes = 2 * n.q, k_bytes = 2 * n.k;  // bf16
  auto in = [](const void* p, int64_t offset) { return static_cast<const char*>(p) + offset; };
  const Partition* used = nullptr;
  SpLayerReport report = forward_with(
      layer, mask.covering_blocks(), &mask.covering_blocks(), /*device=*/true, /*fine=*/true,
      [&] { return mask_hash(mask); },
      [&](const Partition& partition, ScheduleReuse reuse) {
        used = &partition;
        return over_batch(problem, [&](int b) {
          return executor_.run_device_bf16(problem, mask, partition, in(q, b * q_bytes),
                                           in(k, b * k_bytes), in(v, b * k_bytes),
                                           static_cast<char*>(out) + b * q_bytes, reuse);
        });
      });
  if (!report.planned_ahead) report.predicted_ratio = imbalance_ratio(mask, *used);
  return report;
}

namespace {

// Estimates the layer's mask with `estimate`, then runs the layer on it with `forward`.
template <class Estimate, class Forward>
SpLayerReport estimate_then_forward(Estimate&& estimate, Forward&& forward) {
  const sp::Stopwatch watch;
  BlockMask mask = estimate();
  const double estimate_ms = watch.elapsed_ms();
  SpLayerReport report = forward(mask);
  report.estimate_ms = estimate_ms;
  report.estimated_mask = std::move(mask);
  return report;
}

}  // namespace

SpLayerReport SpAttention::forward(int layer, const SpProblem& problem,
                                   const EstimateOptions& estimate, const float* q, const float* k,
                                   const float* v, float* out) {
  return estimate_then_forward(
      [&] { return estimate_mask_sharded(executor_.world(), problem, q, k, estimate); },
      [&](const BlockMask& mask) { return forward(layer, problem, mask, q, k, v, out); });
}

SpLayerReport SpAttention::forward_device_bf16(int layer, const SpProblem& problem,
                                               const EstimateOptions& estimate, const void* q,
                                               const void* k, const void* v, void* out) {
  return estimate_then_forward(
      [&] {
        if (!estimate_workspace_) estimate_workspace_ = make_estimate_workspace();
        return estimate_mask_sharded_device_bf16(executor_.world(), problem, q, k, estimate,
                                                 estimate_workspace_.get());
      },
      [&](const BlockMask& mask) {
        return forward_device_bf16(layer, problem, mask, q, k, v, out);
      });
}

}  // namespace dbsp
