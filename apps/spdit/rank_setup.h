#pragma once
// What every rank-running subcommand does around its work: join the job,
// set thread counts, agree with its peers, start local ranks when asked.
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "launcher.h"
#include "spdit/runtime/world.h"

namespace spdit::cli {

/// The command line as main() received it, for relaunching.
void remember_command_line(int argc, char** argv);

/// LibTorch's and OpenBLAS's threads, so ranks on one machine do not fight.
void set_threads_per_rank(int threads);

/// (U, R) from the world size and the flags (0 = not given), for the
/// world / `cfg` ranks of one guidance branch; a `cfg` that does not divide
/// the world is refused naming both.
std::pair<int, int> resolve_degrees(int world_size, int ulysses, int ring, int cfg = 1);

/// Every rank must have been started with the same settings, given as
/// (flag, value); a mismatch is reported on every rank, naming the rank, the
/// flag and both values, instead of a hang or a wrong result.
void check_ranks_agree(World& world,
                       const std::vector<std::pair<std::string, std::string>>& settings);

/// Joins the launcher's job, or runs as a single in-process rank.
int run_as_rank(const std::function<int(World&)>& body);

/// Starts `n` local ranks of this same command line, without `flag` and its
/// value; `oversubscribe` as `spdit launch --oversubscribe`.
int relaunch_self_with_ranks(int n, const std::string& flag, bool oversubscribe = false);
/// The same with launch options of the caller's (nproc and the rest set;
/// the command is filled in here).
int relaunch_self(LaunchOptions options, const std::string& flag);

/// Peak resident memory of this process (VmHWM).
int64_t peak_rss_bytes();
/// Resets the peak to the current resident size (Linux clear_refs) and
/// returns that size.
int64_t reset_peak_rss();

}  // namespace spdit::cli
