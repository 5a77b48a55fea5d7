#pragma once
// Starts N local ranks of a command with torchrun's environment, prefixes
// their output with the rank, and stops them all when one fails.
#include <string>
#include <vector>

namespace spdit::cli {

struct LaunchOptions {
  int nproc = 1;      // ranks on this node
  int nnodes = 1;     // nodes in the job
  int node_rank = 0;  // this node's index; its ranks are node_rank*nproc + local
  std::string master_addr = "127.0.0.1";
  int master_port = 0;         // 0: pick a free port (single node only)
  double timeout_s = 300;      // process-group timeout given to the ranks
  bool oversubscribe = false;  // allow more than 4 ranks per usable core
  std::string job_id;          // empty: job_id_for() (launch_env.h)
  // For ranks that stop themselves on SIGTERM (spdit serve): the seconds
  // they get before SIGKILL, and whether an interrupt after which every rank
  // exited 0 is a clean stop (exit 0) rather than 128 + the signal.
  double stop_grace_s = 5;
  bool ranks_stop_cleanly = false;
  std::vector<std::string> command;
};

/// Runs the ranks to completion. Returns 0 when all exit 0; otherwise the
/// first failing rank's exit code, or 128 + its signal.
int launch_local(const LaunchOptions& options);

}  // namespace spdit::cli
