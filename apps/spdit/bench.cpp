// `spdit bench attention|scaling|comm`: the performance figures of
// docs/performance.md, as a table and as JSON. Every figure is a median of
// repeated runs, and every ratio is measured side by side in one run.
#include <ATen/ATen.h>
#include <torch/version.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "bench_serve.h"
#include "commands.h"
#include "machine_info.h"
#include "output_paths.h"
#include "rank_setup.h"
#include "spdit/attention/attention.h"
#include "spdit/attention/comm_model.h"
#include "spdit/hooks/forward_context.h"
#include "spdit/plan/sp_config.h"
#include "spdit/runtime/comm.h"
#include "spdit/runtime/memory_meter.h"
#include "validators.h"

namespace spdit::cli {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Stats {
  double median = 0, min = 0, max = 0;
  std::vector<double> runs;
};

Stats time_runs(int repeats, const std::function<void()>& fn) {
  Stats s;
  fn();  // warm-up
  for (int i = 0; i < repeats; ++i) {
    auto t0 = Clock::now();
    fn();
    s.runs.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  auto sorted = s.runs;
  std::sort(sorted.begin(), sorted.end());
  s.median = sorted[sorted.size() / 2];
  s.min = sorted.front();
  s.max = sorted.back();
  return s;
}

Stats summarise(std::vector<double> runs) {
  Stats s;
  s.runs = runs;
  std::sort(runs.begin(), runs.end());
  s.median = runs[runs.size() / 2];
  s.min = runs.front();
  s.max = runs.back();
  return s;
}

// Runs the functions in turn, repeats rounds, so that the machine's slow
// drift (a shared host) weighs on all alike and their ratios hold still.
std::vector<Stats> time_interleaved(int repeats, const std::vector<std::function<void()>>& fns) {
  for (const auto& fn : fns) fn();  // warm-up
  std::vector<std::vector<double>> runs(fns.size());
  for (int i = 0; i < repeats; ++i) {
    for (size_t f = 0; f < fns.size(); ++f) {
      auto t0 = Clock::now();
      fns[f]();
      runs[f].push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    }
  }
  std::vector<Stats> out;
  for (auto& r : runs) out.push_back(summarise(r));
  return out;
}

json to_json(const Stats& s) {
  return {{"median_s", s.median}, {"min_s", s.min}, {"max_s", s.max}, {"runs_s", s.runs}};
}

// Peak bytes of tensors fn allocated above what was alive before it (exact,
// from the metered allocator; the result fn returns is counted until freed).
int64_t peak_extra_bytes(const std::function<void()>& fn) {
  install_memory_meter();
  const int64_t before = reset_tensor_bytes_peak();
  fn();
  return tensor_bytes_peak() - before;
}

void write_json(const std::string& path, const json& j) {
  if (path.empty()) return;
  std::ofstream f(path);
  f << j.dump(2) << "\n";
  if (!f) throw std::runtime_error("cannot write '" + path + "'");
  std::cout << "wrote " << path << "\n";
}

// ---- attention -------------------------------------------------------------

struct AttentionBench {
  int repeats = 5;
  int64_t block_q = LocalAttentionOptions().block_q, block_k = LocalAttentionOptions().block_k;
  std::string json_path;
  bool quick = false;
  std::vector<int64_t> only;  // H S D of a single case
  std::string device = "cpu";
};

// LibTorch's own fused attention, the bench's yardstick: 1.13 names it
// _scaled_dot_product_attention (a tuple), 2.x scaled_dot_product_attention.
at::Tensor libtorch_sdpa(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v);
#else
  return std::get<0>(at::_scaled_dot_product_attention(q, k, v));
#endif
}

// The GPU's name from nvidia-smi: this binary needs no CUDA headers.
std::string gpu_name() {
  std::string name;
  if (FILE* p =
          popen("nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1", "r")) {
    char buf[256];
    while (fgets(buf, sizeof buf, p)) name += buf;
    pclose(p);
  }
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  return name.empty() ? "unknown (nvidia-smi gave nothing)" : name;
}

// On a CUDA device: spdit's local attention (the kernel it picks: flash,
// efficient or, with SPDIT_DEVICE_ATTENTION=aten, its ATen path) against
// LibTorch's public fused attention of the same build, in bf16, B=1. Each timed run ends by reading
// one value back, which waits for the device; both sides pay it alike.
int bench_attention_cuda(const AttentionBench& o) {
  if (!at::hasCUDA()) {
    throw std::runtime_error(
        "spdit bench attention --device cuda: this LibTorch has no CUDA (at::hasCUDA() is false); "
        "build spdit against a CUDA LibTorch, e.g. the one of a CUDA PyTorch wheel");
  }
  at::NoGradGuard no_grad;
  const auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  json out = {{"machine", machine_info()}, {"device", "cuda"},     {"gpu", gpu_name()},
              {"dtype", "bf16"},           {"block_q", o.block_q}, {"block_k", o.block_k}};
  std::cout << "GPU: " << out["gpu"].get<std::string>() << ", bf16\n\n"
            << std::left << std::setw(26) << "case" << std::right << std::setw(12) << "spdit s"
            << std::setw(12) << "TFLOP/s" << std::setw(14) << "libtorch s" << std::setw(12)
            << "TFLOP/s" << std::setw(14) << "spdit/libtorch"
            << "\n";
  std::vector<std::array<int64_t, 3>> cases = {
      {8, 4096, 64}, {8, 4096, 128}, {8, 16384, 64}, {24, 16384, 128}};
  if (o.quick) cases = {{8, 1024, 64}};
  if (o.only.size() == 3) cases = {{o.only[0], o.only[1], o.only[2]}};
  for (auto [h, sq, d] : cases) {
    auto q = at::randn({1, sq, h, d}, opts), k = at::randn({1, sq, h, d}, opts),
         v = at::randn({1, sq, h, d}, opts);
    const double flops = 4.0 * sq * sq * d * h;
    LocalAttentionOptions lo;
    lo.block_q = o.block_q;
    lo.block_k = o.block_k;
    auto ours = time_runs(o.repeats, [&] { local_attention(q, k, v, lo).out.sum().item<float>(); });
    auto qt = q.transpose(1, 2).contiguous(), kt = k.transpose(1, 2).contiguous(),
         vt = v.transpose(1, 2).contiguous();
    auto theirs = time_runs(o.repeats, [&] { libtorch_sdpa(qt, kt, vt).sum().item<float>(); });
    // The figures count only if both compute the same thing: bf16 outputs
    // of the two, compared in fp32, relative to the largest |v|.
    const double diff = (local_attention(q, k, v, lo).out.to(at::kFloat) -
                         libtorch_sdpa(qt, kt, vt).transpose(1, 2).to(at::kFloat))
                            .abs()
                            .max()
                            .item<double>() /
                        v.abs().max().to(at::kFloat).item<double>();
    const double a = flops / ours.median / 1e12, b = flops / theirs.median / 1e12;
    out["cases"].push_back({{"heads", h},
                            {"max_diff_over_max_v", diff},
                            {"seq", sq},
                            {"head_dim", d},
                            {"tflops", a},
                            {"time", to_json(ours)},
                            {"kernel", local_attention_device_kernel(q, k, v, lo)},
                            {"libtorch_sdpa", {{"tflops", b}, {"time", to_json(theirs)}}},
                            {"ratio", a / b}});
    std::string name =
        "H=" + std::to_string(h) + " S=" + std::to_string(sq) + " d=" + std::to_string(d);
    std::cout << std::left << std::setw(26) << name << std::right << std::fixed
              << std::setprecision(4) << std::setw(12) << ours.median << std::setw(12)
              << std::setprecision(1) << a << std::setw(14) << std::setprecision(4) << theirs.median
              << std::setw(12) << std::setprecision(1) << b << std::setw(14) << std::setprecision(2)
              << a / b << "   " << local_attention_device_kernel(q, k, v, lo)
              << "   max|diff|/max|v| " << std::scientific << std::setprecision(1) << diff
              << std::defaultfloat << "\n";
  }
  write_json(o.json_path, out);
  return 0;
}

// Sets an environment variable while alive (restoring what was there): the
// kernel choices are read on every call, so one process can compare them.
class EnvOverride {
 public:
  EnvOverride(const char* var, const std::string& value) : var_(var) {
    if (const char* old = std::getenv(var)) saved_ = old, had_ = true;
    setenv(var, value.c_str(), 1);
  }
  ~EnvOverride() { had_ ? setenv(var_, saved_.c_str(), 1) : unsetenv(var_); }

 private:
  const char* var_;
  std::string saved_;
  bool had_ = false;
};

// The features the attention kernels choose by, from /proc/cpuinfo's flags.
json cpu_features(const json& machine) {
  const auto flags = machine["flags"].get<std::vector<std::string>>();
  auto has = [&](const char* f) { return std::find(flags.begin(), flags.end(), f) != flags.end(); };
  return {{"avx2", has("avx2")},
          {"avx512", has("avx512f")},
          {"avx512_bf16", has("avx512_bf16")},
          {"amx", has("amx_tile")},
          {"amx_bf16", has("amx_bf16")}};
}

json to_json(const LocalAttentionCpuPlan& p) {
  return {{"kernel", p.kernel}, {"key_block", p.key_block}};
}

std::string blocking_text(const LocalAttentionCpuPlan& p) {
  return p.kernel +
         (p.key_block > 0 ? ", " + std::to_string(p.key_block) + " keys" : std::string());
}

int bench_attention(const AttentionBench& o) {
  if (o.device == "cuda") return bench_attention_cuda(o);
  set_threads_per_rank(1);
  install_memory_meter();
  at::NoGradGuard no_grad;
  const auto machine = machine_info();
  const auto plan64 = local_attention_cpu_plan(64, at::kFloat);
  json out = {{"machine", machine},
              {"features", cpu_features(machine)},
              {"threads", 1},
              {"cpu_kernel", local_attention_cpu_kernel()},
              {"caches",
               {{"l1d_bytes", plan64.l1d_bytes},
                {"l2_bytes", plan64.l2_bytes},
                {"source", plan64.cache_source}}},
              {"block_q", o.block_q},
              {"block_k", o.block_k}};
  // References: single-thread GEMMs through LibTorch, n^3, in each dtype
  // (fp32: OpenBLAS; bf16: whatever this LibTorch's at::mm runs).
  const int64_t n = o.quick ? 512 : 2048;
  auto a = at::randn({n, n}), b = at::randn({n, n});
  auto a16 = a.to(at::kBFloat16), b16 = b.to(at::kBFloat16);
  auto sgemm = [&] { at::mm(a, b); };
  auto bgemm = [&] { at::mm(a16, b16); };
  const double gemm_flops = 2.0 * n * n * n;
  auto gemms = time_interleaved(o.repeats, {sgemm, bgemm});
  out["sgemm"] = {
      {"n", n}, {"gflops", gemm_flops / gemms[0].median / 1e9}, {"time", to_json(gemms[0])}};
  out["bf16_gemm"] = {
      {"n", n}, {"gflops", gemm_flops / gemms[1].median / 1e9}, {"time", to_json(gemms[1])}};
  std::cout
      << "CPU: " << machine["cpu"].get<std::string>() << "; features " << out["features"].dump()
      << "\n"
      << "caches per core: L1d " << plan64.l1d_bytes / 1024 << " KiB, L2 " << plan64.l2_bytes / 1024
      << " KiB (from " << plan64.cache_source << ")\n"
      << "single-thread GEMM " << n << "^3 (median of " << o.repeats << "): fp32 " << std::fixed
      << std::setprecision(1) << out["sgemm"]["gflops"].get<double>() << " GFLOP/s, bf16 "
      << out["bf16_gemm"]["gflops"].get<double>() << " GFLOP/s\n"
      << "kernels: SPDIT_CPU_KERNEL=blas|avx2|avx512, SPDIT_CPU_BF16_KERNEL=avx512_bf16|convert, "
         "SPDIT_ATTENTION_KEY_BLOCK=keys to compare\n\n";
  std::cout << std::left << std::setw(24) << "case" << std::setw(6) << "dtype" << std::setw(22)
            << "kernel, key block" << std::right << std::setw(9) << "median s" << std::setw(9)
            << "GFLOP/s" << std::setw(9) << "% GEMM" << std::setw(13) << "GEMM beside"
            << std::setw(10) << "peak MB" << std::setw(11) << "vs fp32"
            << "\n";
  struct Case {
    int64_t h, s, d;
    bool anchor;
  };
  std::vector<Case> cases;
  if (o.quick) {
    cases = {{8, 512, 64, true}};
  } else if (o.only.size() == 3) {
    cases = {{o.only[0], o.only[1], o.only[2], true}};
  } else {
    for (int64_t d : {64, 128}) {
      for (int64_t sq : {1024, 2048, 4096, 8192, 16384})
        cases.push_back({8, sq, d, sq == 4096 && d == 64});
    }
  }
  for (const auto& c : cases) {
    auto q = at::randn({1, c.s, c.h, c.d}), k = at::randn({1, c.s, c.h, c.d}),
         v = at::randn({1, c.s, c.h, c.d});
    auto q16 = q.to(at::kBFloat16), k16 = k.to(at::kBFloat16), v16 = v.to(at::kBFloat16);
    const double flops = 4.0 * c.s * c.s * c.d * c.h;
    const int reps = c.s >= 16384 ? std::max(5, o.repeats / 2) : o.repeats;
    LocalAttentionOptions lo;
    lo.block_q = o.block_q;
    lo.block_k = o.block_k;
    const auto plan32 = local_attention_cpu_plan(c.d, at::kFloat);
    const auto plan16 = local_attention_cpu_plan(c.d, at::kBFloat16);
    // Every figure of a case from the same minutes: the kernel in each dtype,
    // the GEMM of each dtype, and the fp32 kernel without key blocks (one
    // block of all keys: what blocking gains on this machine).
    auto t = time_interleaved(reps, {[&] { local_attention(q, k, v, lo); }, sgemm,
                                     [&] { local_attention(q16, k16, v16, lo); }, bgemm,
                                     [&] {
                                       EnvOverride whole("SPDIT_ATTENTION_KEY_BLOCK",
                                                         std::to_string(c.s));
                                       local_attention(q, k, v, lo);
                                     }});
    const std::string name =
        "H=" + std::to_string(c.h) + " S=" + std::to_string(c.s) + " d=" + std::to_string(c.d);
    json row = {{"heads", c.h}, {"seq", c.s}, {"head_dim", c.d}};
    auto report = [&](const char* dtype, const LocalAttentionCpuPlan& plan, const Stats& mine,
                      const Stats& gemm, int64_t mem) {
      const double gf = flops / mine.median / 1e9, ggf = gemm_flops / gemm.median / 1e9;
      row[dtype] = {{"gflops", gf},
                    {"fraction_of_gemm", gf / ggf},
                    {"gemm_gflops_interleaved", ggf},
                    {"gemm_time_interleaved", to_json(gemm)},
                    {"plan", to_json(plan)},
                    {"peak_extra_bytes", mem},
                    {"time", to_json(mine)}};
      std::cout << std::left << std::setw(24) << name << std::setw(6) << dtype << std::setw(22)
                << blocking_text(plan) << std::right << std::setw(9) << std::setprecision(3)
                << mine.median << std::setw(9) << std::setprecision(1) << gf << std::setw(8)
                << 100 * gf / ggf << "%" << std::setw(13) << ggf << std::setw(10) << mem / 1e6;
    };
    report("fp32", plan32, t[0], t[1], peak_extra_bytes([&] { local_attention(q, k, v, lo); }));
    std::cout << "\n";
    report("bf16", plan16, t[2], t[3],
           peak_extra_bytes([&] { local_attention(q16, k16, v16, lo); }));
    row["bf16_speedup_over_fp32"] = t[0].median / t[2].median;
    std::cout << std::setw(10) << std::setprecision(2) << t[0].median / t[2].median << "x\n";
    const double ugf = flops / t[4].median / 1e9;
    row["fp32_unblocked"] = {
        {"gflops", ugf}, {"blocked_speedup", t[4].median / t[0].median}, {"time", to_json(t[4])}};
    const double sgemm_beside = row["fp32"]["gemm_gflops_interleaved"].get<double>();
    std::cout << std::left << std::setw(24) << "" << std::setw(6) << "fp32" << std::setw(22)
              << "  one block of all keys" << std::right << std::setw(9) << std::setprecision(3)
              << t[4].median << std::setw(9) << std::setprecision(1) << ugf << std::setw(8)
              << 100 * ugf / sgemm_beside << "%\n";
    if (c.anchor && plan32.kernel != "blas") {
      // The BLAS-block path of the same kernel, for the register tiles' gain.
      EnvOverride blas_kernel("SPDIT_CPU_KERNEL", "blas");
      auto blas = time_runs(reps, [&] { local_attention(q, k, v, lo); });
      const double bgf = flops / blas.median / 1e9;
      row["blas_kernel"] = {{"gflops", bgf}, {"time", to_json(blas)}};
      std::cout << std::left << std::setw(24) << "" << std::setw(6) << "fp32" << std::setw(22)
                << "  blas kernel" << std::right << std::setw(9) << std::setprecision(3)
                << blas.median << std::setw(9) << std::setprecision(1) << bgf << "\n";
    }
    if (c.anchor || c.s <= 2048) {
      // LibTorch's own attention of this build, in its (B, H, S, D) layout.
      auto qt = q.transpose(1, 2).contiguous(), kt = k.transpose(1, 2).contiguous(),
           vt = v.transpose(1, 2).contiguous();
      auto theirs = time_runs(reps, [&] { libtorch_sdpa(qt, kt, vt); });
      const int64_t tmem = peak_extra_bytes([&] { libtorch_sdpa(qt, kt, vt); });
      const double tgf = flops / theirs.median / 1e9;
      row["libtorch_sdpa"] = {
          {"gflops", tgf}, {"peak_extra_bytes", tmem}, {"time", to_json(theirs)}};
      std::cout << std::left << std::setw(24) << "" << std::setw(6) << "fp32" << std::setw(22)
                << "  libtorch sdpa" << std::right << std::setw(9) << std::setprecision(3)
                << theirs.median << std::setw(9) << std::setprecision(1) << tgf << std::setw(31)
                << tmem / 1e6 << "\n";
    }
    out["cases"].push_back(row);
  }
  write_json(o.json_path, out);
  return 0;
}

// ---- scaling ----------------------------------------------------------------

struct ScalingBench {
  std::string model = "flux", preset = "small";
  int64_t height = 1024, width = 2048;
  int steps = 4, rounds = 3;
  std::string json_path;
};

json run_config(const ScalingBench& o, int ranks, int u, int r, int threads) {
  char self[4096] = {0};
  ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  const std::string tmp = "/tmp/spdit_bench_" + std::to_string(getpid()) + ".json";
  std::ostringstream cmd;
  cmd << std::string(self, len > 0 ? len : 0) << " run --model " << o.model << " --preset "
      << o.preset << " --height " << o.height << " --width " << o.width << " --steps " << o.steps
      << " --nproc " << ranks << " --ulysses " << u << " --ring " << r << " --threads " << threads
      << " --json " << tmp << " > /dev/null 2>&1";
  if (std::system(cmd.str().c_str()) != 0)
    throw std::runtime_error("benchmark run failed: " + cmd.str());
  std::ifstream f(tmp);
  json j = json::parse(f);
  std::remove(tmp.c_str());
  return j;
}

int bench_scaling(const ScalingBench& o) {
  struct Config {
    const char* name;
    int ranks, u, r, threads;
  };
  const std::vector<Config> configs = {{"1 rank x 1 thread", 1, 1, 1, 1},
                                       {"1 rank x 2 threads", 1, 1, 1, 2},
                                       {"2 ranks x 1 thread, Ulysses", 2, 2, 1, 1},
                                       {"2 ranks x 1 thread, Ring", 2, 1, 2, 1}};
  json out = {{"machine", machine_info()}, {"model", o.model}, {"preset", o.preset},
              {"height", o.height},        {"width", o.width}, {"steps", o.steps},
              {"rounds", o.rounds}};
  std::cout << o.model << "/" << o.preset << " " << o.height << "x" << o.width << ", " << o.rounds
            << " rounds of every configuration in turn, " << o.steps
            << " forwards each, the first a warm-up;"
            << " median of the other " << o.rounds * (o.steps - 1) << "\n";
  // Rounds, each running every configuration once in an order rotated by one,
  // so that the shared machine's drift over minutes weighs on all alike.
  std::map<std::string, std::vector<double>> pooled;
  std::map<std::string, json> last_run;
  for (int round = 0; round < o.rounds; ++round) {
    for (size_t i = 0; i < configs.size(); ++i) {
      const auto& c = configs[(i + round) % configs.size()];
      auto j = run_config(o, c.ranks, c.u, c.r, c.threads);
      // The first forward warms caches and allocators: it is reported, not counted.
      auto steps = j["step_seconds"].get<std::vector<double>>();
      if (steps.size() > 1) steps.erase(steps.begin());
      pooled[c.name].insert(pooled[c.name].end(), steps.begin(), steps.end());
      last_run[c.name] = j;
      std::cout << "  round " << round + 1 << ": " << c.name << std::endl;
    }
  }
  std::map<std::string, double> median;
  for (const auto& c : configs) {
    auto steps = pooled[c.name];
    std::sort(steps.begin(), steps.end());
    median[c.name] = steps[steps.size() / 2];
    auto j = last_run[c.name];
    j["median_after_warmup_seconds"] = median[c.name];
    j["pooled_step_seconds"] = pooled[c.name];
    out["configs"].push_back({{"name", c.name},
                              {"ranks", c.ranks},
                              {"ulysses", c.u},
                              {"ring", c.r},
                              {"threads", c.threads},
                              {"run", j}});
    std::cout << std::left << std::setw(32) << c.name << std::right << std::fixed
              << std::setprecision(3) << median[c.name] << " s/forward (" << steps.front() << "-"
              << steps.back() << "), tokens " << j["tokens"] << "\n";
  }
  const double one = median["1 rank x 1 thread"], two_threads = median["1 rank x 2 threads"];
  json ratios = {{"ulysses_2x1_vs_1x1", one / median["2 ranks x 1 thread, Ulysses"]},
                 {"ring_2x1_vs_1x1", one / median["2 ranks x 1 thread, Ring"]},
                 {"ulysses_2x1_vs_1x2", two_threads / median["2 ranks x 1 thread, Ulysses"]},
                 {"ring_2x1_vs_1x2", two_threads / median["2 ranks x 1 thread, Ring"]}};
  out["speedups"] = ratios;
  std::cout << "speed-ups: " << ratios.dump() << "\n";

  // Memory (exact, so one forward suffices): every layout of 2, 4 and 8 ranks
  // against the single rank's peak / P. Timings of 4 and 8 ranks on a
  // 2-core machine mean nothing and are not reported.
  const std::vector<Config> memory_only = {
      {"4 ranks, Ulysses 4", 4, 4, 1, 1}, {"4 ranks, Ring 4", 4, 1, 4, 1},
      {"4 ranks, 2 x 2", 4, 2, 2, 1},     {"8 ranks, 2 x 4", 8, 2, 4, 1},
      {"8 ranks, 4 x 2", 8, 4, 2, 1},     {"8 ranks, Ring 8", 8, 1, 8, 1}};
  // Two scopes per run: each forward's activations above what was alive when
  // it started, and the whole loop above weights (it adds the latent and the
  // inputs, which every rank holds whole).
  std::map<std::string, std::pair<int64_t, int64_t>> peak;
  auto record = [&](const std::string& name, const json& run) {
    peak[name] = {run["activation_peak_bytes"].get<int64_t>(),
                  run["loop_peak_bytes"].get<int64_t>()};
  };
  for (const auto& c : out["configs"]) record(c["name"], c["run"]);
  ScalingBench one_step = o;
  one_step.steps = 1;
  for (const auto& c : memory_only) {
    auto j = run_config(one_step, c.ranks, c.u, c.r, c.threads);
    record(c.name, j);
    out["memory_only_configs"].push_back(
        {{"name", c.name}, {"ranks", c.ranks}, {"ulysses", c.u}, {"ring", c.r}, {"run", j}});
  }
  const auto [single_forward, single_loop] = peak["1 rank x 1 thread"];
  std::cout << "\npeak per rank, exact (live tensors), and its ratio to the single rank's / P "
               "(target: at most 1.10)\n"
            << "  " << std::left << std::setw(30) << "configuration" << std::right << std::setw(24)
            << "forward activations" << std::setw(24) << "whole loop"
            << "\n";
  auto all = configs;
  all.insert(all.end(), memory_only.begin(), memory_only.end());
  for (const auto& c : all) {
    const auto [fwd, loop] = peak[c.name];
    const double fwd_over = fwd / (static_cast<double>(single_forward) / c.ranks);
    const double loop_over = loop / (static_cast<double>(single_loop) / c.ranks);
    out["memory"].push_back({{"name", c.name},
                             {"ranks", c.ranks},
                             {"activation_peak_bytes", fwd},
                             {"activation_over_single_per_rank", fwd_over},
                             {"loop_peak_bytes", loop},
                             {"loop_over_single_per_rank", loop_over}});
    std::ostringstream a, b;
    a << std::fixed << std::setprecision(1) << fwd / 1e6 << " MB = " << std::setprecision(3)
      << fwd_over;
    b << std::fixed << std::setprecision(1) << loop / 1e6 << " MB = " << std::setprecision(3)
      << loop_over;
    std::cout << "  " << std::left << std::setw(30) << c.name << std::right << std::setw(24)
              << a.str() << std::setw(24) << b.str() << "\n";
  }
  write_json(o.json_path, out);
  return 0;
}

// ---- comm: byte counters and ring overlap ------------------------------------

struct CommBench {
  int repeats = 5;
  std::string json_path;
};

struct OverlapShape {
  const char* name;
  int64_t sq, sk, h, d;
  double link_factor;  // > 0: simulated link time, in units of the compute-bound case's compute
};

double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

// One Ring step's parts on 2 in-process ranks. The transfer's CPU time (both
// ranks' threads: on loopback, moving bytes is the kernel copying them) is
// measured too: with as many busy ranks as cores, a step can be no faster
// than the cores' share of compute plus that CPU time, whatever the overlap.
json measure_overlap(const OverlapShape& s, int repeats) {
  json row;
  run_in_process(2, [&](World& w) {
    set_threads_per_rank(1);
    auto q = at::randn({1, s.sq, s.h, s.d}), k = at::randn({1, s.sk, s.h, s.d}),
         v = at::randn({1, s.sk, s.h, s.d});
    const Group& g = w.group();
    auto compute = time_runs(repeats, [&] { local_attention(q, k, v); });
    w.barrier();  // the transfer phase's CPU time holds no compute of the other rank
    const double cpu0 = process_cpu_seconds();
    auto transfer = time_runs(repeats, [&] { RingExchange(g, {k, v}).wait(); });
    w.barrier();
    const double transfer_cpu = (process_cpu_seconds() - cpu0) / (repeats + 1);  // + the warm-up
    auto step = time_runs(repeats, [&] {
      RingExchange ex(g, {k, v});
      local_attention(q, k, v);
      ex.wait();
    });
    if (w.rank() == 0) {
      const double cores = std::max(1u, std::thread::hardware_concurrency());
      const double floor =
          (w.size() * compute.median + transfer_cpu) / std::min<double>(cores, w.size());
      const double bound = std::max({compute.median, transfer.median, floor});
      row = {{"sq", s.sq},
             {"sk", s.sk},
             {"heads", s.h},
             {"head_dim", s.d},
             {"compute", to_json(compute)},
             {"transfer", to_json(transfer)},
             {"step", to_json(step)},
             {"transfer_cpu_s", transfer_cpu},
             {"cpu_floor_s", floor},
             {"step_over_slower", step.median / std::max(compute.median, transfer.median)},
             {"step_over_bound", step.median / bound}};
    }
  });
  return row;
}

void print_overlap(const std::string& name, const json& row) {
  std::cout << "  " << std::left << std::setw(15) << name << std::right << std::fixed
            << std::setprecision(4) << " compute " << row["compute"]["median_s"].get<double>()
            << " s, transfer " << row["transfer"]["median_s"].get<double>() << " s (CPU "
            << row["transfer_cpu_s"].get<double>() << " s), step "
            << row["step"]["median_s"].get<double>() << " s = " << std::setprecision(2)
            << row["step_over_slower"].get<double>() << " x the slower; CPU floor "
            << std::setprecision(4) << row["cpu_floor_s"].get<double>()
            << " s, step = " << std::setprecision(2) << row["step_over_bound"].get<double>()
            << " x max(slower, floor)\n";
}

int bench_comm(const CommBench& o) {
  json out = {{"machine", machine_info()}};
  // 1. Counters of one attention call against the formulas, for each layout.
  std::cout << "bytes of one attention call per rank (B=1, N=4099 padded, H=6, d=64, text 77):\n";
  for (auto [u, r] : std::vector<std::pair<int, int>>{{2, 1}, {1, 2}, {4, 1}, {2, 2}, {1, 4}}) {
    json row;
    run_in_process(u * r, [&, u = u, r = r](World& w) {
      set_threads_per_rank(1);
      SequenceParallelConfig cfg{u, r};
      cfg.setup(w);
      SpRegionScope region(cfg);
      const int64_t n = 4099, p = u * r, np = (n + p - 1) / p * p;
      region.context().record_padding(n, np);
      auto x = at::randn({1, np / p, 6, 64});
      auto t = at::randn({1, 77, 6, 64});
      JointText jt{t, t, t};
      w.counters().reset();
      attention(x, x, x, {}, &jt);
      if (w.rank() == 0) {
        auto predicted = attention_comm_bytes({1, n, 77, 6, 64, 4, false}, u, r);
        for (const auto& [kind, b] : w.counters().snapshot()) {
          row[kind] = {{"measured", b.sent}, {"formula", predicted[kind]}};
        }
      }
    });
    out["bytes"][std::to_string(u) + "x" + std::to_string(r)] = row;
    std::cout << "  U=" << u << " R=" << r << ": " << row.dump() << "\n";
  }
  // 2. Ring overlap on 2 ranks: compute alone, transfer alone, one overlapped
  // step; the last case over a slower link, simulated as 1.5x the compute of
  // the first (a sleep, so it costs no CPU).
  std::cout << "\nring step on 2 in-process ranks (1 thread each), median of " << o.repeats
            << ":\n";
  for (const auto& s : std::vector<OverlapShape>{{"compute-bound", 2048, 2048, 8, 64, 0},
                                                 {"balanced", 256, 8192, 8, 64, 0},
                                                 {"transfer-bound", 32, 32768, 8, 128, 0},
                                                 {"slow-link", 2048, 2048, 8, 64, 1.5}}) {
    double link_s = 0;
    if (s.link_factor > 0) {
      link_s =
          s.link_factor * out["ring_overlap"]["compute-bound"]["compute"]["median_s"].get<double>();
      RingExchange::set_simulated_link_time(
          std::chrono::microseconds(static_cast<int64_t>(link_s * 1e6)));
    }
    json row = measure_overlap(s, o.repeats);
    RingExchange::set_simulated_link_time(std::chrono::microseconds(0));
    if (link_s > 0) row["simulated_link_s"] = link_s;
    out["ring_overlap"][s.name] = row;
    print_overlap(s.name, row);
  }
  write_json(o.json_path, out);
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& app, Action& action) {
  auto* cmd =
      app.add_subcommand("bench", "Performance figures: attention kernel, scaling, communication");
  cmd->require_subcommand(1);
  static AttentionBench ab;
  auto* a = cmd->add_subcommand(
      "attention",
      "Local attention kernel in fp32 and bf16 against the single-thread GEMM of "
      "each dtype and LibTorch's SDPA");
  a->add_option("--repeats", ab.repeats, "Runs per figure (median)")
      ->check(whole_number(1, 1000))
      ->capture_default_str();
  a->add_option("--json", ab.json_path, "Write the figures as JSON");
  a->add_flag("--quick", ab.quick, "Small sizes only (smoke test)");
  a->add_option("--case", ab.only,
                "Run one case: H S D (heads, sequence, head dim; each at least 1)")
      ->expected(3)
      ->check(whole_number(1));
  a->add_option("--block-q", ab.block_q, "Query block of the online softmax")
      ->check(whole_number(1))
      ->capture_default_str();
  a->add_option("--block-k", ab.block_k, "Key block of the online softmax")
      ->check(whole_number(1))
      ->capture_default_str();
  a->add_option("--device", ab.device,
                "cpu: against sgemm, one thread; cuda: against LibTorch's fused attention")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  a->callback([&action] {
    action = [] {
      check_can_write(ab.json_path, "--json");  // before the measurements, not after
      return bench_attention(ab);
    };
  });

  static ScalingBench sb;
  auto* s = cmd->add_subcommand("scaling", "One generation on 1 and 2 ranks, and on 2 threads");
  s->add_option("--model", sb.model)
      ->check(CLI::IsMember({"flux", "wan", "qwen-image"}))
      ->capture_default_str();
  s->add_option("--preset", sb.preset)
      ->check(CLI::IsMember({"tiny", "small", "full"}))
      ->capture_default_str();
  s->add_option("--height", sb.height)->check(whole_number(16))->capture_default_str();
  s->add_option("--width", sb.width)->check(whole_number(16))->capture_default_str();
  s->add_option("--steps", sb.steps, "Forwards per configuration and round, the first a warm-up")
      ->check(whole_number(2, 1000))
      ->capture_default_str();
  s->add_option("--rounds", sb.rounds, "Rounds of every configuration in turn (median over all)")
      ->check(whole_number(1, 100))
      ->capture_default_str();
  s->add_option("--json", sb.json_path, "Write the figures as JSON");
  s->callback([&action] {
    action = [] {
      check_can_write(sb.json_path, "--json");  // before the measurements, not after
      return bench_scaling(sb);
    };
  });

  static CommBench cb;
  add_bench_serve_command(*cmd, action);
  auto* c = cmd->add_subcommand("comm", "Byte counters against the formulas; ring overlap");
  c->add_option("--repeats", cb.repeats)->check(whole_number(1, 1000))->capture_default_str();
  c->add_option("--json", cb.json_path, "Write the figures as JSON");
  c->callback([&action] {
    action = [] {
      check_can_write(cb.json_path, "--json");  // before the measurements, not after
      return bench_comm(cb);
    };
  });
}

}  // namespace spdit::cli
