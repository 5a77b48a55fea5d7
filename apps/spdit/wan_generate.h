#pragma once
// `spdit run --model-dir` on a Wan2.1 folder: a prompt to a video, the
// transformer under SP (and the guidance branches on the CFG axis with
// --cfg 2), the ranks decoding with the Wan VAE together (each a band of
// rows) and rank 0 writing the MP4.
#include <cstdint>
#include <string>

#include "spdit/runtime/world.h"

namespace spdit::cli {

struct WanGenerateOptions {
  std::string model_dir, prompt, negative_prompt, prompt_embeds, noise, dump, out, frames_out, json,
      dtype;
  std::string scheduler = "unipc";
  int64_t height = 480, width = 832, frames = 81;
  int steps = 50;
  uint64_t seed = 42;
  double guidance = 5.0;
  int fps = 16;
  int ulysses = 0, ring = 0, cfg = 1, threads = 1;
  bool check = false;
  bool vae_parallel = true;  // with several ranks, each decodes a band of rows
  bool shard_weights = false;
};

/// One rank's part of the job; rank 0 decodes and writes the outputs.
int wan_generate_rank(World& world, const WanGenerateOptions& options);

}  // namespace spdit::cli
