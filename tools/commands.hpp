// Subcommand registry: each tools/<name>.cpp defines one register function, listed here once.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <vector>

namespace dbsp::cli {

using RegisterCommand = std::function<void(CLI::App&)>;

void register_plan(CLI::App& app);
void register_simulate(CLI::App& app);
void register_attn(CLI::App& app);
#ifdef DBSP_HAVE_RUNTIME
void register_run(CLI::App& app);
#endif

inline std::vector<RegisterCommand> all_commands() {
  return {register_plan, register_simulate, register_attn,
#ifdef DBSP_HAVE_RUNTIME
          register_run
#endif
  };
}

}  // namespace dbsp::cli
