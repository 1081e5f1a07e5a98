// Cost-model rates as command-line options, shared by plan and simulate.
#pragma once

#include <CLI/CLI.hpp>

#include "dbsp/planner.hpp"

namespace dbsp::cli {

inline void add_cost_options(CLI::App& command, CostModel& cost) {
  command.add_option("--us-per-block", cost.us_per_block, "compute time per kept block-head (us)")
      ->capture_default_str();
  command
      .add_option("--us-per-row-step", cost.us_per_row_step,
                  "fixed time per (query block, head) row and ring step (us)")
      ->capture_default_str();
  command.add_option("--link-gbps", cost.link_gbytes_per_s, "link bandwidth per rank (GB/s)")
      ->capture_default_str();
  command
      .add_option("--move-gbps", cost.move_gbytes_per_s,
                  "effective bandwidth of moved blocks' extra all-to-all (GB/s)")
      ->capture_default_str();
  command.add_option("--latency-us", cost.link_latency_us, "link latency (us)")
      ->capture_default_str();
  command
      .add_option("--copy-gbps", cost.copy_gbytes_per_s,
                  "bytes per second a rank's staging copies move (packing before a transfer, "
                  "unpacking after, rows kept on the rank; GB/s; 0: free)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
}

}  // namespace dbsp::cli
