#pragma once
// Each subcommand of `spdit` lives in its own file and registers itself here.
#include <CLI/CLI.hpp>

#include <functional>

namespace spdit::cli {

/// A subcommand's body; returns the process exit code.
using Action = std::function<int()>;

/// Each adds its subcommand to `app` and sets `action` when it is chosen.
void add_launch_command(CLI::App& app, Action& action);
void add_layout_command(CLI::App& app, Action& action);
void add_run_command(CLI::App& app, Action& action);
void add_explain_command(CLI::App& app, Action& action);
void add_bench_command(CLI::App& app, Action& action);
void add_inspect_command(CLI::App& app, Action& action);
void add_new_model_command(CLI::App& app, Action& action);
void add_encode_command(CLI::App& app, Action& action);
void add_decode_command(CLI::App& app, Action& action);
void add_serve_command(CLI::App& app, Action& action);
void add_train_demo_command(CLI::App& app, Action& action);

/// All of the above: the `spdit` command line.
inline void add_all_commands(CLI::App& app, Action& action) {
  app.require_subcommand(1);
  add_launch_command(app, action);
  add_layout_command(app, action);
  add_run_command(app, action);
  add_explain_command(app, action);
  add_bench_command(app, action);
  add_inspect_command(app, action);
  add_new_model_command(app, action);
  add_encode_command(app, action);
  add_decode_command(app, action);
  add_serve_command(app, action);
  add_train_demo_command(app, action);
}

}  // namespace spdit::cli
