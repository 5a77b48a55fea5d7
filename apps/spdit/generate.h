#pragma once
// `spdit run --model-dir`: a prompt to a picture through a whole FLUX.1
// folder, the transformer under SP.
#include <cstdint>
#include <string>

#include "spdit/runtime/world.h"

namespace spdit::cli {

struct GenerateOptions {
  std::string model_dir, prompt, prompt_embeds, noise, dump, out, json, dtype;
  // 0: the folder's _spdit_run_defaults, else 1024 x 1024, the variant's
  // steps (dev 28, schnell 4) and T5 length (dev 512, schnell 256).
  int64_t height = 0, width = 0, max_sequence_length = 0;
  int steps = 0;
  uint64_t seed = 42;
  double guidance = 3.5;
  // True CFG (diffusers' true_cfg_scale): below 0 (not given) takes the
  // folder's _spdit_run_defaults, else 1 (off); 0 or 1 given: off. The negative prompt is empty
  // unless given; `cfg` 2 runs its two branches on two halves of the ranks.
  double true_cfg_scale = -1;
  std::string negative_prompt;
  bool negative_prompt_given = false;
  int cfg = 1;
  int ulysses = 0, ring = 0, threads = 1;
  bool check = false;
  bool vae_parallel = true;  // with several ranks, each decodes a band of rows
  bool shard_weights = false;
};

/// One rank's part of the job; rank 0 decodes and writes the outputs.
int generate_rank(World& world, const GenerateOptions& options);

}  // namespace spdit::cli
