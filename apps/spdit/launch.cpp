// `spdit launch`: torchrun's standalone mode, for local ranks.
#include "launcher.h"

#include "commands.h"
#include "validators.h"

namespace spdit::cli {

void add_launch_command(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand(
      "launch", "Start N local ranks of a command with RANK/WORLD_SIZE/MASTER_* set");
  static LaunchOptions opts;
  cmd->add_option("--nproc", opts.nproc, "Number of ranks")->required()->check(whole_number(1));
  cmd->add_option("--nnodes", opts.nnodes, "Nodes in the job (default 1)")->check(whole_number(1));
  cmd->add_option("--node-rank", opts.node_rank, "This node's index (default 0)")
      ->check(whole_number(0));
  cmd->add_option("--master-addr", opts.master_addr, "Address of node 0 (default 127.0.0.1)");
  cmd->add_option("--master-port", opts.master_port, "Rendezvous port (default: a free one)")
      ->check(whole_number(1, 65535));
  cmd->add_option("--timeout", opts.timeout_s,
                  "Seconds a rank may wait for a peer before failing (default 300)")
      ->check(positive_seconds());
  cmd->add_flag("--oversubscribe", opts.oversubscribe,
                "Allow more than 4 ranks per usable core (slow; for tests of correctness)");
  cmd->add_option("command", opts.command, "CMD [ARGS...] after --")->required();
  cmd->callback([&action] { action = [] { return launch_local(opts); }; });
}

}  // namespace spdit::cli
