// One forward of the same model and inputs in fp32 and in bf16, timed
// alternately in one run (so that a shared machine's drift weighs on both
// alike), with the bf16 output's error against fp32:
//
//   build/bench/spdit_bench_dtype [--model flux] [--preset small] [--height 512] [--width 512]
//                                 [--frames 1] [--text-len 64] [--repeats 5] [--threads 1]
//                                 [--weights CHECKPOINT]
//
// With --weights the model is the checkpoint's, loaded once per dtype (in
// place where it is stored in that dtype). Prints medians, their ratio, and a
// JSON line.
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "spdit/checkpoints/model_checkpoint.h"
#include "spdit/models/pipeline.h"
#include "spdit/models/precision.h"

using namespace spdit;
using Clock = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> opt = {
      {"--model", "flux"}, {"--preset", "small"}, {"--height", "512"},
      {"--width", "512"},  {"--frames", "1"},     {"--text-len", "64"},
      {"--repeats", "5"},  {"--threads", "1"},    {"--weights", ""}};
  for (int i = 1; i < argc; i += 2) {
    if (!opt.count(argv[i]) || i + 1 >= argc) {
      std::cerr << "usage: spdit_bench_dtype [--model M] [--preset P] [--height H] [--width W] "
                   "[--frames F] "
                   "[--text-len T] [--repeats N] [--threads N] [--weights CHECKPOINT]\n";
      return 2;
    }
    opt[argv[i]] = argv[i + 1];
  }
  try {
    at::set_num_threads(std::stoi(opt["--threads"]));
    at::NoGradGuard no_grad;
    models::RunSize size{std::stoll(opt["--height"]), std::stoll(opt["--width"]),
                         std::stoll(opt["--frames"]), std::stoll(opt["--text-len"]), 1};
    std::optional<checkpoints::Checkpoint> ckpt;
    std::optional<checkpoints::Identified> found;
    if (!opt["--weights"].empty()) {
      ckpt = checkpoints::Checkpoint::open(opt["--weights"]);
      found = checkpoints::identify(*ckpt);
    }
    auto make = [&](at::ScalarType dtype) {
      return ckpt ? checkpoints::make_pipeline(*ckpt, *found, 1, dtype)
                  : models::make_pipeline(opt["--model"], opt["--preset"], 1,
                                          models::Weights::kSeeded, dtype);
    };
    auto f32 = make(at::kFloat), b16 = make(at::kBFloat16);
    auto x = f32->prepare(size, 2);
    b16->prepare(size, 2);
    at::Tensor out32, out16;
    std::vector<double> t32, t16;
    const int repeats = std::stoi(opt["--repeats"]);
    for (int i = 0; i <= repeats; ++i) {  // the first round warms up
      for (auto [pipe, times, out] :
           {std::tuple{f32.get(), &t32, &out32}, std::tuple{b16.get(), &t16, &out16}}) {
        auto t0 = Clock::now();
        *out = pipe->velocity(x, 0.7);
        if (i > 0) times->push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      }
    }
    const double err =
        (out16 - out32).abs().max().item<double>() / out32.abs().max().item<double>();
    const std::string label =
        found ? found->model + "/" + found->variant : opt["--model"] + "/" + opt["--preset"];
    const double m32 = median(t32), m16 = median(t16);
    std::cout << label << " " << size.height << "x" << size.width << " x" << size.frames
              << ", text " << size.text_len << ", " << opt["--threads"]
              << " thread(s): forward fp32 " << m32 << " s, bf16 " << m16 << " s (median of "
              << repeats << "), bf16 speed-up " << m32 / m16 << "x; bf16 rel err vs fp32 " << err
              << "\n";
    nlohmann::json j = {{"model", label},
                        {"height", size.height},
                        {"width", size.width},
                        {"frames", size.frames},
                        {"text_len", size.text_len},
                        {"threads", std::stoi(opt["--threads"])},
                        {"fp32_seconds", t32},
                        {"bf16_seconds", t16},
                        {"fp32_median_seconds", m32},
                        {"bf16_median_seconds", m16},
                        {"speedup", m32 / m16},
                        {"bf16_rel_err", err}};
    std::cout << j.dump() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "spdit_bench_dtype: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
