// The `dbsp` command line. Each subcommand lives in its own file and registers itself here.
#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>

#include "commands.hpp"
#include "dbsp/error.hpp"
#include "host_memory.hpp"

int main(int argc, char** argv) {
  dbsp::cli::keep_freed_host_memory();
  CLI::App app{"dbsp: dual-balanced sequence parallelism and fine-grained sparse attention"};
  app.require_subcommand(1);
  for (const auto& register_command : dbsp::cli::all_commands()) register_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const dbsp::Error& e) {
    std::cerr << "dbsp: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "dbsp: internal error: " << e.what() << "\n";
    return 3;
  }
  return 0;
}
