// `spdit`: one binary, one small file per subcommand.
#include <exception>
#include <iostream>

#include "commands.h"
#include "rank_setup.h"

int main(int argc, char** argv) {
  CLI::App app{"spdit: sequence-parallel diffusion transformers on LibTorch"};
  spdit::cli::Action action;
  spdit::cli::add_all_commands(app, action);
  spdit::cli::remember_command_line(argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return action();
  } catch (const std::exception& e) {
    std::cerr << "spdit " << app.get_subcommands().front()->get_name() << ": error: " << e.what()
              << std::endl;
    return 1;
  }
}
