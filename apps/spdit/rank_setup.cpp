#include "rank_setup.h"

#include <ATen/Parallel.h>
#include <unistd.h>

#include <algorithm>
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

std::pair<int, int> resolve_degrees(int world, int u, int r, int cfg) {
  if (cfg < 1 || world % cfg != 0) {
    throw std::invalid_argument("--cfg " + std::to_string(cfg) + " does not divide the " +
                                std::to_string(world) + " ranks");
  }
  world /= cfg;
  if (!u && !r) u = world, r = 1;
  if (!u) u = r > 0 && world % r == 0 ? world / r : 0;
  if (!r) r = u > 0 && world % u == 0 ? world / u : 0;
  if (u <= 0 || r <= 0 || u * r != world) {
    // compute_rank_layout words the error with the numbers.
    compute_rank_layout(0, world, u > 0 ? u : 1, r > 0 ? r : world + 1);
  }
  return {u, r};
}

namespace {

// The strings of every rank, through the integer all-gather: lengths first,
// then the characters, padded to the longest.
std::vector<std::string> all_gather_strings(World& world, const std::string& mine) {
  auto lengths = all_gather_ints(world.group(), {static_cast<int64_t>(mine.size())});
  const int64_t longest = *std::max_element(lengths.begin(), lengths.end());
  std::vector<int64_t> chars(static_cast<size_t>(longest), 0);
  for (size_t i = 0; i < mine.size(); ++i) chars[i] = static_cast<unsigned char>(mine[i]);
  auto all = all_gather_ints(world.group(), chars);
  std::vector<std::string> out;
  for (int r = 0; r < world.size(); ++r) {
    std::string s;
    for (int64_t i = 0; i < lengths[r]; ++i) s += static_cast<char>(all[r * longest + i]);
    out.push_back(s);
  }
  return out;
}

}  // namespace

void check_ranks_agree(World& world,
                       const std::vector<std::pair<std::string, std::string>>& settings) {
  std::vector<int64_t> hashes;
  for (const auto& [flag, value] : settings) {
    hashes.push_back(static_cast<int64_t>(std::hash<std::string>{}(value) >> 1));
  }
  auto all = all_gather_ints(world.group(), hashes);
  const size_t n = hashes.size();
  for (int r = 1; r < world.size(); ++r) {
    for (size_t i = 0; i < n; ++i) {
      if (all[r * n + i] == all[i]) continue;
      // Every rank found the same first difference; they fetch both values
      // together so that each can name them.
      auto values = all_gather_strings(world, settings[i].second);
      auto shown = [](const std::string& v) {
        return v.empty() ? std::string("(not given)") : "'" + v + "'";
      };
      throw std::runtime_error(
          "rank " + std::to_string(r) + " was started with other settings than rank 0: " +
          settings[i].first + " is " + shown(values[r]) + " on rank " + std::to_string(r) +
          " but " + shown(values[0]) + " on rank 0; start every rank with the same command line");
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

int relaunch_self_with_ranks(int n, const std::string& flag, bool oversubscribe) {
  LaunchOptions lo;
  lo.nproc = n;
  lo.oversubscribe = oversubscribe;
  return relaunch_self(lo, flag);
}

int relaunch_self(LaunchOptions lo, const std::string& flag) {
  if (const double t = timeout_from_env(); t > 0) lo.timeout_s = t;
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
