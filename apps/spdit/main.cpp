// `spdit`: one binary, one small file per subcommand.
#include <c10/util/Exception.h>

#include <exception>
#include <iostream>
#include <new>

#include "commands.h"
#include "error_text.h"
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
  auto fail = [&](const std::string& what) {
    const std::string oom = spdit::cli::out_of_memory_advice(what);
    std::cerr << "spdit " << app.get_subcommands().front()->get_name()
              << ": error: " << (oom.empty() ? spdit::cli::clean_error_text(what) : oom)
              << std::endl;
    return 1;
  };
  try {
    return action();
  } catch (const c10::Error& e) {
    return fail(e.what_without_backtrace());
  } catch (const std::bad_alloc& e) {
    return fail(e.what());
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}
