// Strategy names on the command line and in reports.
#include <cctype>
#include <string>

#include "dbsp/error.hpp"
#include "dbsp/sp_attention.hpp"

namespace dbsp {

std::string Strategy::name() const {
  std::string base;
  if (policy == Policy::static_split) {
    if (grid && grid->ring == 1) return "ulysses";
    if (grid && grid->ulysses == 1) return "ring";
    base = "usp";
  } else {
    base = to_string(policy);
    if (policy == Policy::dbsp && share_heads) base = "dbsp-shared";
  }
  if (!grid) return base;
  return base + ":" + std::to_string(grid->ulysses) + "x" + std::to_string(grid->ring);
}

Strategy parse_strategy(std::string_view text, int ranks) {
  require(ranks >= 1, "parse_strategy: rank count must be >= 1, got ", ranks);
  std::string lower;
  for (char c : text)
    lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  const size_t colon = lower.find(':');
  const std::string head = lower.substr(0, colon);
  std::optional<Grid> grid;
  if (colon != std::string::npos) grid = parse_grid(lower.substr(colon + 1));
  Strategy strategy;
  if (head == "ulysses" || head == "ring") {
    require(!grid, "strategy '", text, "': ", head, " takes no grid (use usp:UxR)");
    strategy.grid = head == "ulysses" ? Grid{ranks, 1} : Grid{1, ranks};
    return strategy;
  }
  if (head == "usp") {
    strategy.grid = grid;
  } else if (head == "dbsp" || head == "dbsp-paper" || head == "dbsp-shared") {
    strategy.policy = parse_policy(head == "dbsp-shared" ? "dbsp" : head);
    strategy.share_heads = head == "dbsp-shared";
    strategy.grid = grid;
  } else {
    fail("strategy '", text,
         "': expected ulysses, ring, usp[:UxR], dbsp-paper[:UxR], dbsp[:UxR] or "
         "dbsp-shared[:UxR]");
  }
  require(!strategy.grid || strategy.grid->ranks() == ranks, "strategy '", text, "': grid ",
          strategy.grid ? strategy.grid->name() : "", " needs ",
          strategy.grid ? strategy.grid->ranks() : 0, " ranks; running with ", ranks);
  return strategy;
}

}  // namespace dbsp
