// Qwen-Image's text encoder (Qwen2.5-VL-7B's text model) at real width:
// hidden 3584, 28 heads of 128, 4 KV heads, intermediate 18944, in BF16,
// one thread, with `layers` decoder layers (default 2) of random weights;
// the time of one layer's forward for a prompt's token count, and that
// times 28 (the 7B's layers). The vocabulary is cut to 4096 rows: the
// embedding lookup costs nothing next to the layers.
//
//   spdit_bench_qwen2_text [layers] [tokens...]      (defaults: 2, 60 and 1058)
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "spdit/text/qwen2_text_model.h"

int main(int argc, char** argv) {
  at::set_num_threads(1);
  const int layers = argc > 1 ? std::atoi(argv[1]) : 2;
  std::vector<int64_t> tokens;
  for (int i = 2; i < argc; ++i) tokens.push_back(std::atoll(argv[i]));
  if (tokens.empty()) tokens = {60, 1058};
  spdit::text::Qwen2TextConfig c;  // Qwen2.5-VL-7B's text model
  c.vocab_size = 4096;
  c.num_hidden_layers = layers;
  at::manual_seed(0);
  spdit::text::Qwen2TextModel model(c);
  for (auto& p : model->parameters()) p.set_data(p.detach().to(at::kBFloat16));
  std::printf("Qwen2.5-VL-7B text model, %d layers, bf16, 1 thread\n", layers);
  for (int64_t s : tokens) {
    const auto ids = at::randint(0, c.vocab_size, {1, s}, at::TensorOptions().dtype(at::kLong));
    model->forward(ids);  // warm-up (oneDNN primitives, first-touch pages)
    const auto t0 = std::chrono::steady_clock::now();
    model->forward(ids);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("tokens %5lld: %.3f s per layer, %.1f s for 28 layers\n", static_cast<long long>(s),
                sec / layers, 28 * sec / layers);
  }
  return 0;
}
