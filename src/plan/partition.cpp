// Grids, partitions and their invariants.
#include "dbsp/partition.hpp"

#include <algorithm>
#include <cctype>

#include "dbsp/block_layout.hpp"
#include "dbsp/error.hpp"
#include "plan/home_shards.hpp"

namespace dbsp {

std::string Grid::name() const {
  // Built by appends: g++ 12 reports a false -Wrestrict on "U" + std::to_string(...).
  std::string out("U");
  out.append(std::to_string(ulysses)).append("R").append(std::to_string(ring));
  return out;
}

std::vector<Grid> factorizations(int ranks) {
  require(ranks >= 1, "factorizations: rank count must be >= 1, got ", ranks);
  std::vector<Grid> grids;
  for (int ring = 1; ring <= ranks; ++ring) {
    if (ranks % ring == 0) grids.push_back(Grid{ranks / ring, ring});
  }
  return grids;
}

Grid parse_grid(const std::string& text) {
  std::string s;
  for (char c : text) s.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  int u = 0, r = 0;
  char tail = 0;
  if (std::sscanf(s.c_str(), "u%dr%d%c", &u, &r, &tail) == 2 ||
      std::sscanf(s.c_str(), "%dx%d%c", &u, &r, &tail) == 2) {
    require(u >= 1 && r >= 1, "grid '", text, "': degrees must be >= 1");
    return Grid{u, r};
  }
  fail("grid '", text, "': expected UxR (e.g. 4x2) or U4R2");
}

Partition Partition::contiguous(Grid grid, int heads, int q_blocks, int k_blocks) {
  require(grid.ulysses >= 1 && grid.ring >= 1, "Partition: grid degrees must be >= 1, got ",
          grid.name());
  Partition p;
  p.grid = grid;
  p.heads = heads;
  p.q_blocks = q_blocks;
  p.k_blocks = k_blocks;
  p.head_group.resize(heads);
  for (int h = 0; h < heads; ++h) p.head_group[h] = home_shard(h, heads, grid.ulysses);
  p.q_shard.assign(grid.ulysses, plan::home_shards(q_blocks, grid.ring));
  p.k_shard.assign(grid.ulysses, plan::home_shards(k_blocks, grid.ring));
  return p;
}

std::vector<int> Partition::heads_of(int group) const {
  std::vector<int> out;
  for (int i = 0; i < heads; ++i) {
    const int h = head_order.empty() ? i : head_order[i];
    if (head_group[h] == group) out.push_back(h);
  }
  for (const HeadSplit& split : head_splits) {
    if (split.group == group) out.push_back(split.head);
  }
  return out;
}

BlockRange Partition::rows_of(int group, int head) const {
  for (const HeadSplit& split : head_splits) {
    if (split.head != head) continue;
    if (split.group == group) return split.rows;
    if (head_group[head] != group) return {};
    // The owner keeps the other side (the split's rows are a prefix or a suffix).
    return split.rows.begin == 0 ? BlockRange{split.rows.end, q_blocks}
                                 : BlockRange{0, split.rows.begin};
  }
  return head_group[head] == group ? BlockRange{0, q_blocks} : BlockRange{};
}

std::vector<int> Partition::q_blocks_of(int group, int shard) const {
  std::vector<int> out;
  for (int i = 0; i < q_blocks; ++i) {
    if (q_shard[group][i] == shard) out.push_back(i);
  }
  return out;
}

std::vector<int> Partition::k_blocks_of(int group, int shard) const {
  std::vector<int> out;
  for (int j = 0; j < k_blocks; ++j) {
    if (k_shard[group][j] == shard) out.push_back(j);
  }
  return out;
}

int Partition::max_group_heads() const {
  std::vector<int> count(static_cast<size_t>(grid.ulysses), 0);
  for (int g : head_group) ++count[g];
  for (const HeadSplit& split : head_splits) ++count[split.group];
  return count.empty() ? 0 : *std::max_element(count.begin(), count.end());
}

double Partition::moved_blocks() const {
  if (heads == 0) return 0;
  double moved = 0;
  const std::vector<int> q_home = plan::home_shards(q_blocks, grid.ring);
  const std::vector<int> k_home = plan::home_shards(k_blocks, grid.ring);
  for (int g = 0; g < grid.ulysses; ++g) {
    const double share = double(std::count(head_group.begin(), head_group.end(), g)) / heads;
    int off_home = 0;
    for (int i = 0; i < q_blocks; ++i) off_home += q_shard[g][i] != q_home[i];
    for (int j = 0; j < k_blocks; ++j) off_home += k_shard[g][j] != k_home[j];
    moved += share * off_home;
  }
  return moved;
}

void Partition::validate() const {
  require(grid.ulysses >= 1 && grid.ring >= 1, "Partition: invalid grid ", grid.name());
  require(static_cast<int>(head_group.size()) == heads, "Partition: head_group has ",
          head_group.size(), " entries for ", heads, " heads");
  for (int h = 0; h < heads; ++h) {
    require(head_group[h] >= 0 && head_group[h] < grid.ulysses, "Partition: head ", h,
            " assigned to group ", head_group[h], " outside [0, ", grid.ulysses, ")");
  }
  if (!head_order.empty()) {
    require(static_cast<int>(head_order.size()) == heads, "Partition: head_order has ",
            head_order.size(), " entries for ", heads, " heads");
    std::vector<bool> seen(static_cast<size_t>(heads), false);
    for (int h : head_order) {
      require(h >= 0 && h < heads && !seen[h], "Partition: head_order is not a permutation of [0, ",
              heads, ") (head ", h, ")");
      seen[h] = true;
    }
  }
  std::vector<bool> split(static_cast<size_t>(heads), false);
  for (const HeadSplit& s : head_splits) {
    require(grid.ring == 1,
            "Partition: heads split between groups need a grid without a ring, got ", grid.name());
    require(s.head >= 0 && s.head < heads && !split[s.head], "Partition: split head ", s.head,
            " outside [0, ", heads, ") or split twice");
    split[s.head] = true;
    require(s.group >= 0 && s.group < grid.ulysses && s.group != head_group[s.head],
            "Partition: head ", s.head, " split to group ", s.group,
            ": must be another group than its owner ", head_group[s.head], " inside [0, ",
            grid.ulysses, ")");
    require(s.rows.begin >= 0 && s.rows.begin < s.rows.end && s.rows.end <= q_blocks &&
                (s.rows.begin == 0) != (s.rows.end == q_blocks),
            "Partition: split of head ", s.head, " takes query blocks [", s.rows.begin, ", ",
            s.rows.end, "): must be a non-empty proper prefix or suffix of [0, ", q_blocks, ")");
  }
  require(static_cast<int>(q_shard.size()) == grid.ulysses &&
              static_cast<int>(k_shard.size()) == grid.ulysses,
          "Partition: need one block assignment per Ulysses group (", grid.ulysses, ")");
  for (int g = 0; g < grid.ulysses; ++g) {
    require(static_cast<int>(q_shard[g].size()) == q_blocks &&
                static_cast<int>(k_shard[g].size()) == k_blocks,
            "Partition: group ", g, " assigns ", q_shard[g].size(), " query and ",
            k_shard[g].size(), " key blocks; expected ", q_blocks, " and ", k_blocks);
    for (int s : q_shard[g]) {
      require(s >= 0 && s < grid.ring, "Partition: query shard ", s, " outside [0, ", grid.ring,
              ")");
    }
    for (int s : k_shard[g]) {
      require(s >= 0 && s < grid.ring, "Partition: key shard ", s, " outside [0, ", grid.ring, ")");
    }
  }
}

uint64_t Partition::hash() const {
  // FNV-1a over the plain integers: identical on every rank and platform.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](int64_t value) {
    for (int b = 0; b < 8; ++b) {
      h ^= static_cast<uint64_t>(value >> (8 * b)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  mix(grid.ulysses);
  mix(grid.ring);
  mix(heads);
  mix(q_blocks);
  mix(k_blocks);
  for (int g : head_group) mix(g);
  for (const auto& shards : q_shard)
    for (int s : shards) mix(s);
  for (const auto& shards : k_shard)
    for (int s : shards) mix(s);
  for (int o : head_order) mix(o);          // nothing when ascending: such plans hash as before
  for (const HeadSplit& s : head_splits) {  // nothing without splits, likewise
    mix(s.head);
    mix(s.group);
    mix(s.rows.begin);
    mix(s.rows.end);
  }
  return h;
}

}  // namespace dbsp
