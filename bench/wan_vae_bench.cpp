// Wan2.1's video autoencoder at real size (random weights): decode time and
// working memory (tensor bytes beyond the output video, by the memory meter)
// for a few latent lengths, showing that frame-by-frame decoding through the
// causal cache keeps memory flat as the video grows:
//
//   build/bench/spdit_bench_wan_vae [--size 8] [--frames 2,6] [--dtype
//   fp32,bf16] [--threads N]
//
// --size is the latent height and width (output 8x that); --frames the
// latent frame counts (output 1 + 4 (T - 1) frames).
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "spdit/runtime/memory_meter.h"
#include "spdit/vae/wan_vae.h"

using namespace spdit;

namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t size = 8;
  std::string frames = "2,6", dtypes = "fp32,bf16";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--size")
      size = std::stoll(v);
    else if (a == "--frames")
      frames = v;
    else if (a == "--dtype")
      dtypes = v;
    else if (a == "--threads")
      at::set_num_threads(std::stoi(v));
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  install_memory_meter();
  std::printf("Wan2.1 VAE decode, latents %lldx%lld (video %lldx%lld), %d threads\n",
              (long long)size, (long long)size, (long long)(8 * size), (long long)(8 * size),
              at::get_num_threads());
  std::printf("%-5s %14s %12s %14s %16s\n", "dtype", "latent frames", "frames", "seconds",
              "working memory");
  for (const auto& d : split(dtypes)) {
    const at::ScalarType dtype = d == "bf16" ? at::kBFloat16 : at::kFloat;
    vae::WanVae model(vae::WanVaeConfig::wan21(), dtype);
    for (auto& p : model->named_parameters(true)) {
      const bool gamma =
          p.key().size() > 6 && p.key().compare(p.key().size() - 6, 6, ".gamma") == 0;
      at::Tensor v = gamma ? at::ones(p.value().sizes()) : at::randn(p.value().sizes()) * 0.02;
      p.value().set_data(v.to(dtype));
    }
    for (const auto& f : split(frames)) {
      const at::Tensor z = at::randn({1, 16, std::stoll(f), size, size});
      const int64_t before = reset_tensor_bytes_peak();
      const auto t0 = std::chrono::steady_clock::now();
      const at::Tensor video = model->decode(z);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const int64_t working = tensor_bytes_peak() - before - video.numel() * video.element_size();
      std::printf("%-5s %14s %12lld %14.2f %16s\n", d.c_str(), f.c_str(), (long long)video.size(2),
                  s, format_bytes(working).c_str());
    }
  }
  return 0;
}
