#include "rank_setup.h"

#include <ATen/Parallel.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "launcher.h"
#include "spdit/runtime/comm.h"
#include "spdit/runtime/parallel_state.h"

extern "C" void openblas_set_num_threads(int) __attribute__((weak));

namespace spdit::cli {
namespace {
std::vector<std::string> g_argv;
}

void remember_command_line(int argc, char** argv) { g_argv.assign(argv, argv + argc); }

void set_threads_per_rank(int threads) {
  at::set_num_threads(threads);
  if (openblas_set_num_threads) openblas_set_num_threads(threads);
}

std::pair<int, int> resolve_degrees(int world, int u, int r) {
  if (!u && !r) u = world, r = 1;
  if (!u) u = r > 0 && world % r == 0 ? world / r : 0;
  if (!r) r = u > 0 && world % u == 0 ? world / u : 0;
  if (u <= 0 || r <= 0 || u * r != world) {
    // compute_rank_layout words the error with the numbers.
    compute_rank_layout(0, world, u > 0 ? u : 1, r > 0 ? r : world + 1);
  }
  return {u, r};
}

void check_ranks_agree(World& world, const std::vector<std::string>& settings) {
  std::vector<int64_t> hashes;
  for (const auto& s : settings) hashes.push_back(static_cast<int64_t>(std::hash<std::string>{}(s) >> 1));
  auto all = all_gather_ints(world.group(), hashes);
  const size_t n = hashes.size();
  for (int r = 1; r < world.size(); ++r) {
    for (size_t i = 0; i < n; ++i) {
      if (all[r * n + i] != all[i]) {
        throw std::runtime_error("rank " + std::to_string(r) + " was started with other settings than rank 0 (setting #" +
                                 std::to_string(i) + (world.rank() == r || world.rank() == 0 ? ", here '" + settings[i] + "'" : std::string()) +
                                 "); start every rank with the same command line");
      }
    }
  }
}

int run_as_rank(const std::function<int(World&)>& body) {
  if (launched_by_launcher()) {
    auto world = init_from_env();
    int code = body(*world);
    return code;
  }
  int code = 0;
  run_in_process(1, [&](World& w) { code = body(w); });
  return code;
}

int relaunch_self_with_ranks(int n, const std::string& flag) {
  LaunchOptions lo;
  lo.nproc = n;
  if (const char* t = std::getenv("SPDIT_TIMEOUT")) lo.timeout_s = std::atof(t);
  char self[4096] = {0};
  ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  lo.command.push_back(len > 0 ? std::string(self, len) : g_argv.at(0));
  for (size_t i = 1; i < g_argv.size(); ++i) {
    if (g_argv[i] == flag) {
      ++i;  // and its value
      continue;
    }
    if (g_argv[i].rfind(flag + "=", 0) == 0) continue;
    lo.command.push_back(g_argv[i]);
  }
  return launch_local(lo);
}

namespace {
int64_t status_bytes(const std::string& field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      std::istringstream is(line.substr(field.size() + 1));
      int64_t kb = 0;
      is >> kb;
      return kb * 1024;
    }
  }
  return 0;
}
}  // namespace

int64_t peak_rss_bytes() { return status_bytes("VmHWM"); }

int64_t reset_peak_rss() {
  { std::ofstream("/proc/self/clear_refs") << "5"; }
  return status_bytes("VmRSS");
}

}  // namespace spdit::cli
