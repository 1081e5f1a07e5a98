// Sharded mask estimation on host communicators (sp_estimate.hpp): each rank pools its own blocks,
// the pooled keys are all-gathered as doubles, each rank selects its own query rows, the rows'
// bits are all-gathered. Pooling and selection are the single-process estimator's own code
// (mask/estimate_parts.hpp), so the mask equals estimate_block_mask's bit for bit.
#include "dbsp/sp_estimate.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "dbsp/error.hpp"
#include "mask/estimate_parts.hpp"

namespace dbsp {
namespace {

// What each rank found before any data moves. Every rank gathers every rank's check, so a bad
// shard makes all of them throw instead of leaving the others waiting in the exchange.
struct RankCheck {
  enum Status : int32_t { ok, bad_arguments, null_input, non_finite_q, non_finite_k };
  int32_t status = ok;
  int32_t head = 0;    // non-finite input: the first bad element's head
  int64_t token = 0;   // ... and global token
  uint64_t shape = 0;  // fingerprint of the problem and options: must agree across ranks
};

uint64_t shape_fingerprint(const SpProblem& problem, const EstimateOptions& options) {
  uint64_t hash = 0x9e3779b97f4a7c15ull;
  auto mix = [&hash](uint64_t value) {
    hash = (hash ^ value) * 0xbf58476d1ce4e5b9ull;
    hash ^= hash >> 31;
  };
  auto bits = [](double value) {
    uint64_t out;
    std::memcpy(&out, &value, sizeof out);
    return out;
  };
  const MaskGeometry& g = problem.geometry;
  for (int64_t value : {int64_t{problem.heads}, int64_t{problem.head_dim}, g.seq_q, g.seq_k,
                        int64_t{g.block_q}, int64_t{g.block_k}, int64_t{options.block_q},
                        int64_t{options.block_k}, int64_t{options.keep_diagonal}}) {
    mix(static_cast<uint64_t>(value));
  }
  mix(bits(options.tau));
  mix(bits(options.scale));
  mix(options.sink_blocks.size());
  for (int sink : options.sink_blocks) mix(static_cast<uint64_t>(sink));
  return hash;
}

// The first non-finite element of a shard [tokens, heads, head_dim] starting at `first_token`.
// Pooled sums of finite floats cannot overflow a double, so pooled blocks are finite iff their
// tokens are: only a block whose mean is not finite is searched.
bool find_non_finite(const float* x, const std::vector<double>& pooled, const SequenceShard& shard,
                     int block, int heads, int head_dim, RankCheck& check) {
  const int64_t row = int64_t{heads} * head_dim;
  for (size_t e = 0; e < pooled.size(); ++e) {
    if (std::isfinite(pooled[e])) continue;
    const int64_t local_block = static_cast<int64_t>(e) / row;
    for (int64_t t = local_block * block; t < shard.tokens(); ++t) {
      for (int64_t i = 0; i < row; ++i) {
        if (std::isfinite(x[t * row + i])) continue;
        check.token = shard.first_token + t;
        check.head = static_cast<int32_t>(i / head_dim);
        return true;
      }
    }
  }
  return false;
}

// Every rank throws when any rank's check failed, naming the first such rank.
void agree_or_throw(Communicator& world, const RankCheck& mine, const std::string& my_error) {
  const std::vector<RankCheck> all = world.all_gather(mine, "estimate_mask_sharded input check");
  // Arguments are the same on every rank in a correct call: each rank then says what is wrong.
  if (mine.status == RankCheck::bad_arguments) fail(my_error);
  for (int p = 0; p < world.size(); ++p) {
    const RankCheck& c = all[p];
    const std::string who =
        "estimate_mask_sharded: rank " + std::to_string(p) + " of " + std::to_string(world.size());
    switch (c.status) {
      case RankCheck::ok:
        break;
      case RankCheck::bad_arguments:
        fail(who, " rejected its arguments (its error says why)");
      case RankCheck::null_input:
        fail(who, ": q or k is null but its shard holds tokens");
      case RankCheck::non_finite_q:
      case RankCheck::non_finite_k:
        fail(who, ": its ", c.status == RankCheck::non_finite_q ? "Q" : "K",
             " shard holds a NaN or Inf (token ", c.token, ", head ", c.head, ")");
    }
    if (c.shape != all[0].shape) {
      fail(who,
           " was called with another problem or options than rank 0; every rank must pass "
           "the same");
    }
  }
}

// Sizes of each rank's part of a block-major array (`per_block` elements per block), and where
// each part goes in the whole.
struct Parts {
  std::vector<int64_t> counts, offsets;
  Parts(const BlockLayout& layout, int ranks, int64_t per_block) {
    for (int p = 0; p < ranks; ++p) {
      const SequenceShard s = sequence_shard(layout, p, ranks);
      counts.push_back((s.end_block - s.first_block) * per_block);
      offsets.push_back(s.first_block * per_block);
    }
  }
};

}  // namespace

BlockMask estimate_mask_sharded(Communicator& world, const SpProblem& problem, const float* q,
                                const float* k, const EstimateOptions& options) {
  const int rank = world.rank(), ranks = world.size();
  const int heads = problem.heads, head_dim = problem.head_dim;
  const MaskGeometry& geometry = problem.geometry;
  // Checks every rank makes alike (same problem and options everywhere) ...
  require(world.memory() == MemorySpace::host,
          "estimate_mask_sharded: needs a host communicator (e.g. MPI), got ", world.backend(),
          "; use estimate_mask_sharded_device_bf16 on the device path");
  RankCheck mine;
  mine.shape = shape_fingerprint(problem, options);
  std::string my_error;
  SequenceShard q_shard, k_shard;
  try {
    require(options.block_q == geometry.block_q && options.block_k == geometry.block_k,
            "estimate_mask_sharded: options' blocks ", options.block_q, " x ", options.block_k,
            " differ from the problem's geometry ", geometry.block_q, " x ", geometry.block_k);
    estimate_parts::validate(geometry.seq_q, geometry.seq_k, heads, head_dim, options);
    q_shard = sequence_shard(problem.q_layout(), rank, ranks);
    k_shard = sequence_shard(problem.k_layout(), rank, ranks);
  } catch (const Error& e) {
    mine.status = RankCheck::bad_arguments;
    my_error = e.what();
  }
  // ... and the ones only this rank can make, agreed on before any data moves.
  std::vector<double> pooled_q, pooled_k;
  if (mine.status == RankCheck::ok) {
    if ((q_shard.tokens() > 0 && q == nullptr) || (k_shard.tokens() > 0 && k == nullptr)) {
      mine.status = RankCheck::null_input;
    } else {
      pooled_q = estimate_parts::mean_pool_all_heads(q, q_shard.tokens(), heads, head_dim,
                                                     geometry.block_q);
      pooled_k = estimate_parts::mean_pool_all_heads(k, k_shard.tokens(), heads, head_dim,
                                                     geometry.block_k);
      if (find_non_finite(q, pooled_q, q_shard, geometry.block_q, heads, head_dim, mine)) {
        mine.status = RankCheck::non_finite_q;
      } else if (find_non_finite(k, pooled_k, k_shard, geometry.block_k, heads, head_dim, mine)) {
        mine.status = RankCheck::non_finite_k;
      }
    }
  }
  agree_or_throw(world, mine, my_error);

  // Every key block's pooled key, [k_blocks][heads][head_dim], in doubles as the single-process
  // estimator scores them.
  const int64_t pooled_row = int64_t{heads} * head_dim;
  const Parts k_parts(problem.k_layout(), ranks, pooled_row);
  std::vector<double> all_k(static_cast<size_t>(geometry.k_blocks()) * pooled_row);
  const std::vector<int64_t> same_for_all(static_cast<size_t>(ranks), int64_t{0});
  world.all_to_all_v(pooled_k.data(), std::vector<int64_t>(ranks, k_parts.counts[rank]),
                     same_for_all, all_k.data(), k_parts.counts, k_parts.offsets,
                     "estimate_mask_sharded pooled keys");

  // This rank's query rows of every head, [q blocks][heads][words]: block-major, so that the
  // ranks' parts concatenate into the mask's rows.
  BlockMask mask(heads, geometry);
  const int words = mask.words_per_row();
  const int local_blocks = q_shard.end_block - q_shard.first_block;
  std::vector<uint64_t> rows(static_cast<size_t>(local_blocks) * heads * words, 0);
#pragma omp parallel for schedule(dynamic)
  for (int h = 0; h < heads; ++h) {
    estimate_parts::BlockSelector selector(geometry, head_dim, options);
    for (int i = 0; i < local_blocks; ++i) {
      selector.select(pooled_q.data() + i * pooled_row + int64_t{h} * head_dim,
                      all_k.data() + int64_t{h} * head_dim, pooled_row, q_shard.first_block + i,
                      rows.data() + (int64_t{i} * heads + h) * words);
    }
  }
  const Parts q_parts(problem.q_layout(), ranks, int64_t{heads} * words);
  std::vector<uint64_t> all_rows(static_cast<size_t>(geometry.q_blocks()) * heads * words);
  world.all_to_all_v(rows.data(), std::vector<int64_t>(ranks, q_parts.counts[rank]), same_for_all,
                     all_rows.data(), q_parts.counts, q_parts.offsets,
                     "estimate_mask_sharded mask rows");
  for (int i = 0; i < geometry.q_blocks(); ++i) {
    for (int h = 0; h < heads; ++h) {
      const uint64_t* row = all_rows.data() + (int64_t{i} * heads + h) * words;
      std::copy(row, row + words, mask.row_bits(h, i));
    }
  }
  return mask;
}

}  // namespace dbsp
