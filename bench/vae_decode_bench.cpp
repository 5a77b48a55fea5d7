// FLUX.1's autoencoder decode on 1 rank and split by rows over P ranks
// (vae/row_bands.h), in one run: median time, speed-up, activation memory
// per rank, bytes moved per rank, and the largest difference from the
// one-rank picture.
//
//   build/bench/spdit_bench_vae [--height 512] [--width 512] [--ranks 1,2] [--repeats 3] [--dtype
//   fp32]
//
// Ranks are threads of this process, one intra-op thread each (so P ranks
// use P cores); their tensors are counted together by the memory meter and
// divided by P. Weights are random at FLUX.1's real dimensions.
#include <ATen/Parallel.h>
#include <stdlib.h>
#include <filesystem>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "spdit/models/precision.h"
#include "spdit/runtime/memory_meter.h"
#include "spdit/runtime/world.h"
#include "spdit/vae/autoencoder_kl.h"
#include "spdit/vae/vae_loader.h"
#include "spdit/vae/vae_writer.h"

using namespace spdit;
using Clock = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::vector<int> parse_ranks(const std::string& text) {
  std::vector<int> out;
  std::stringstream s(text);
  for (std::string part; std::getline(s, part, ',');) out.push_back(std::stoi(part));
  if (out.empty() || out.front() != 1)
    throw std::invalid_argument("--ranks must start with 1 (the reference)");
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> opt = {{"--height", "512"},
                                            {"--width", "512"},
                                            {"--ranks", "1,2"},
                                            {"--repeats", "3"},
                                            {"--dtype", "fp32"}};
  for (int i = 1; i < argc; i += 2) {
    if (!opt.count(argv[i]) || i + 1 >= argc) {
      std::cerr << "usage: spdit_bench_vae [--height H] [--width W] [--ranks 1,2,...] [--repeats "
                   "N] [--dtype fp32|bf16]\n";
      return 2;
    }
    opt[argv[i]] = argv[i + 1];
  }
  try {
    at::set_num_threads(1);
    install_memory_meter();
    const auto dtype = models::parse_dtype(opt["--dtype"]);
    const auto config = vae::AutoencoderKLConfig::flux();
    char tmpl[] = "/tmp/spdit-vae-bench-XXXXXX";
    const std::string dir = mkdtemp(tmpl);
    vae::write_random_autoencoder(dir + "/vae", config, /*seed=*/0);
    vae::AutoencoderKL model = vae::load_autoencoder(dir, dtype).model;
    std::filesystem::remove_all(dir);  // the weights are in memory now

    const int64_t f = config.vae_scale_factor();
    at::manual_seed(0);
    const at::Tensor z = at::randn({1, config.latent_channels, std::stoll(opt["--height"]) / f,
                                    std::stoll(opt["--width"]) / f});
    const int repeats = std::stoi(opt["--repeats"]);
    nlohmann::json rows = nlohmann::json::array();
    at::Tensor reference;
    double one_rank_s = 0;
    std::cout << "FLUX.1 autoencoder decode, " << opt["--height"] << "x" << opt["--width"] << ", "
              << opt["--dtype"] << ", one thread per rank\n";
    for (int p : parse_ranks(opt["--ranks"])) {
      std::vector<double> times;
      int64_t peak = 0, moved = 0;
      at::Tensor image;
      std::mutex mu;
      run_in_process(p, [&](World& w) {
        SequenceParallelConfig bands{1, p};
        bands.setup(w);
        for (int i = 0; i <= repeats; ++i) {  // the first round warms up
          w.barrier();
          int64_t before = 0;
          if (w.rank() == 0) {
            before = reset_tensor_bytes_peak();
            w.counters().reset();
          }
          w.barrier();
          const auto t0 = Clock::now();
          at::Tensor out = p == 1 ? model->decode(z) : model->decode(z, bands);
          const double s = std::chrono::duration<double>(Clock::now() - t0).count();
          w.barrier();
          if (w.rank() != 0) continue;
          std::lock_guard<std::mutex> lock(mu);
          if (i > 0) times.push_back(s);
          peak = std::max(peak, tensor_bytes_peak() - before);
          int64_t bytes = 0;
          for (const auto& [kind, b] : w.counters().snapshot()) bytes += b.received;
          moved = bytes;
          image = out;
        }
      });
      const double m = median(times);
      if (p == 1) {
        reference = image;
        one_rank_s = m;
      }
      const double diff =
          (image.to(at::kDouble) - reference.to(at::kDouble)).abs().max().item<double>();
      std::cout << "  " << p << " rank(s): median " << m << " s, speed-up " << one_rank_s / m
                << "x, activations per rank " << format_bytes(peak / p) << ", received per rank "
                << format_bytes(moved) << ", max |diff| vs 1 rank " << diff << "\n";
      rows.push_back({{"ranks", p},
                      {"median_seconds", m},
                      {"speedup", one_rank_s / m},
                      {"activation_bytes_per_rank", peak / p},
                      {"received_bytes_per_rank", moved},
                      {"max_abs_diff_vs_one_rank", diff}});
    }
    std::cout << nlohmann::json{{"bench", "vae_decode"},
                                {"height", std::stoll(opt["--height"])},
                                {"width", std::stoll(opt["--width"])},
                                {"dtype", opt["--dtype"]},
                                {"runs", rows}}
                     .dump()
              << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "spdit_bench_vae: " << e.what() << std::endl;
    return 1;
  }
}
