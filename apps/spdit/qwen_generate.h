#pragma once
// `spdit run --model-dir` on a Qwen-Image folder: prompt embeddings (or,
// once spdit runs Qwen2.5-VL, a prompt) to a PNG, the transformer under SP
// (and true CFG's two branches on the CFG axis with --cfg 2), the ranks
// decoding with the Wan VAE together (each a band of rows) and rank 0
// writing the picture.
#include <cstdint>
#include <string>

#include "spdit/runtime/world.h"

namespace spdit::cli {

struct QwenGenerateOptions {
  std::string model_dir, prompt, negative_prompt, prompt_embeds, noise, dump, out, json, dtype;
  bool negative_prompt_given = false;
  int64_t height = 1024, width = 1024;  // diffusers' default_sample_size 128 x 8
  int steps = 50;
  uint64_t seed = 42;
  double guidance = 4.0;  // diffusers' true_cfg_scale
  int ulysses = 0, ring = 0, cfg = 1, threads = 1;
  bool check = false;
  bool vae_parallel = true;  // with several ranks, each decodes a band of rows
  bool shard_weights = false;
};

/// One rank's part of the job; rank 0 writes the outputs.
int qwen_generate_rank(World& world, const QwenGenerateOptions& options);

}  // namespace spdit::cli
