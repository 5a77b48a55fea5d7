// Load time and memory of a real-size checkpoint, one rank and several local
// ranks at once (separate processes, as `spdit launch` starts them):
//
//   build/bench/spdit_bench_load [--dir DIR] [--ranks 1,4] [--old]
//
// Writes Wan2.1-T2V-1.3B as Wan publishes it (original names, fp32, 5.68 GB)
// into DIR unless it is there, then per configuration starts the ranks; each
// opens the checkpoint, identifies it, builds the skeleton model, loads it
// (in place: fp32 file, fp32 model) and reads every weight once, as a first
// forward would. Reported per rank: time to load, time to first touch, the
// resident set (anonymous and file pages) and the proportional set (PSS),
// whose sum over ranks shows the pages they share. --old also runs the
// previous loader (read the file into memory, copy into an initialised model).
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "../tests/support/layouts.h"
#include "spdit/checkpoints/model_checkpoint.h"
#include "spdit/models/weights.h"

using namespace spdit;
using Clock = std::chrono::steady_clock;

namespace {

int64_t status_kb(const char* key, const char* file = "/proc/self/status") {
  std::ifstream f(file);
  for (std::string line; std::getline(f, line);) {
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(std::strlen(key)));
  }
  return -1;
}

void write_checkpoint(const std::string& path) {
  // Non-zero data so that every page is really stored and read; small and of
  // both signs (|w| <= 0.01), so that a forward stays finite.
  auto layout = test::wan_original_layout(1536, 8960, 30);
  std::map<std::string, std::pair<at::ScalarType, std::vector<int64_t>>> typed;
  for (const auto& [name, spec] : layout) typed[name] = {at::kFloat, spec.second};
  checkpoints::write_sparse_safetensors(path, typed);
  auto ckpt = checkpoints::Checkpoint::open(path);
  const uint64_t data_start = ckpt.tensors().begin()->second.begin;
  uint64_t end = 0;
  for (const auto& [n, t] : ckpt.tensors()) end = std::max(end, t.end);
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(data_start));
  std::vector<float> chunk(1 << 20);
  for (size_t i = 0; i < chunk.size(); ++i)
    chunk[i] = 0.02f * (static_cast<float>(i * 7919 % 997) / 997.0f - 0.5f);
  for (uint64_t at = data_start; at < end; at += chunk.size() * 4) {
    const uint64_t n = std::min<uint64_t>(chunk.size() * 4, end - at);
    f.write(reinterpret_cast<const char*>(chunk.data()), static_cast<std::streamsize>(n));
  }
}

struct RankResult {
  double load_s = 0, touch_s = 0;
  int64_t rss_kb = 0, anon_kb = 0, file_kb = 0, pss_kb = 0, hwm_kb = 0;
};

// Every rank measures once all have touched their weights, so that the
// proportional set divides each shared page among all of them.
RankResult run_rank(const std::string& path, bool old_loader, int ready_fd, int go_fd) {
  RankResult r;
  auto t0 = Clock::now();
  std::shared_ptr<HookableModule> model;
  std::optional<checkpoints::Checkpoint> keep;
  if (old_loader) {
    // As spdit loaded before checkpoints/: an initialised model, the whole
    // file read into memory, parsed into tensors, copied into the model.
    models::WanTransformer wan(models::WanConfig::preset("full"));
    std::ifstream f(path, std::ios::binary);
    std::stringstream bytes;
    bytes << f.rdbuf();
    std::map<std::string, at::Tensor> named;
    for (auto& [name, t] : models::parse_safetensors(bytes.str(), path)) {
      named[checkpoints::wan_original_to_diffusers(name)] = t;
    }
    models::load_weights(*wan, std::move(named), path);
    model = wan.ptr();
  } else {
    keep = checkpoints::Checkpoint::open(path);
    auto found = checkpoints::identify(*keep);
    model = checkpoints::build_model(found);
    checkpoints::load_checkpoint(*model, *keep, found);
  }
  auto t1 = Clock::now();
  double sum = 0;
  for (const auto& p : model->parameters()) sum += p.sum().item<double>();
  auto t2 = Clock::now();
  if (sum == 42.0) std::cerr << "";  // keep the reads
  char c = 1;
  if (write(ready_fd, &c, 1) != 1 || read(go_fd, &c, 1) != 1) _exit(1);
  r.load_s = std::chrono::duration<double>(t1 - t0).count();
  r.touch_s = std::chrono::duration<double>(t2 - t1).count();
  r.rss_kb = status_kb("VmRSS:");
  r.hwm_kb = status_kb("VmHWM:");
  r.anon_kb = status_kb("RssAnon:");
  r.file_kb = status_kb("RssFile:");
  r.pss_kb = status_kb("Pss:", "/proc/self/smaps_rollup");
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "/tmp/spdit-load-bench";
  std::vector<int> ranks = {1, 4};
  bool old_loader = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--dir" && i + 1 < argc)
      dir = argv[++i];
    else if (a == "--ranks" && i + 1 < argc) {
      ranks.clear();
      std::stringstream ss(argv[++i]);
      for (std::string n; std::getline(ss, n, ',');) ranks.push_back(std::stoi(n));
    } else if (a == "--old")
      old_loader = true;
    else {
      std::cerr << "usage: spdit_bench_load [--dir DIR] [--ranks 1,4] [--old]\n";
      return 2;
    }
  }
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/diffusion_pytorch_model.safetensors";
  if (access(path.c_str(), R_OK) != 0) {
    std::cout << "writing Wan2.1-T2V-1.3B (fp32, original names) to " << path << "..." << std::endl;
    write_checkpoint(path);
  }
  std::cout << "checkpoint " << path << ": "
            << checkpoints::Checkpoint::open(path).data_bytes() / 1e9
            << " GB of weights (page cache warm after the first run)\n";
  std::vector<std::pair<std::string, int>> configs;
  for (int n : ranks) configs.push_back({"mapped, in place", n});
  if (old_loader) configs.push_back({"read + copy (previous loader)", 1});
  for (const auto& [what, n] : configs) {
    std::vector<std::pair<pid_t, int>> kids;
    int ready[2], go[2];
    if (pipe(ready) != 0 || pipe(go) != 0) return 1;
    for (int r = 0; r < n; ++r) {
      int fds[2];
      if (pipe(fds) != 0) return 1;
      pid_t pid = fork();
      if (pid == 0) {
        close(fds[0]);
        at::set_num_threads(1);
        RankResult res = run_rank(path, what != "mapped, in place", ready[1], go[0]);
        if (write(fds[1], &res, sizeof res) != sizeof res) _exit(1);
        _exit(0);
      }
      close(fds[1]);
      kids.push_back({pid, fds[0]});
    }
    for (int r = 0; r < n; ++r) {
      char c;
      if (read(ready[0], &c, 1) != 1) return 1;
    }
    const std::string all(static_cast<size_t>(n), 'g');
    if (write(go[1], all.data(), all.size()) != n) return 1;
    close(ready[0]), close(ready[1]), close(go[0]), close(go[1]);
    double load_max = 0, touch_max = 0;
    int64_t rss = 0, pss = 0, anon = 0, hwm = 0;
    for (auto& [pid, fd] : kids) {
      RankResult res;
      const bool ok = read(fd, &res, sizeof res) == sizeof res;
      close(fd);
      int status = 0;
      waitpid(pid, &status, 0);
      if (!ok) {
        std::cerr << "a rank failed\n";
        return 1;
      }
      load_max = std::max(load_max, res.load_s);
      touch_max = std::max(touch_max, res.touch_s);
      rss += res.rss_kb, pss += res.pss_kb, anon += res.anon_kb, hwm = std::max(hwm, res.hwm_kb);
    }
    std::printf(
        "%-32s ranks %d: load %.2f s, first touch %.2f s (slowest rank); resident summed %.2f GB "
        "(anonymous %.2f GB), PSS summed %.2f GB, peak resident per rank %.2f GB\n",
        what.c_str(), n, load_max, touch_max, rss / 1e6, anon / 1e6, pss / 1e6, hwm / 1e6);
  }
  return 0;
}
