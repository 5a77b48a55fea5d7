#pragma once
// What a run will move and what cannot work, computed from the model's plan
// shapes without running it; shared by `spdit explain` and `spdit run`.
#include <map>
#include <string>
#include <vector>

#include "spdit/models/pipeline.h"

namespace spdit::cli {

struct StepPrediction {
  int64_t sp_size = 1;
  int64_t padded_tokens = 0;
  int64_t tokens_per_rank = 0;
  std::map<std::string, int64_t> bytes;  // per forward (one denoising step), by counter kind
  std::vector<std::string> notes;        // works, but the user should know
  std::vector<std::string> errors;       // cannot work; each says how to fix it
  int64_t total_bytes() const;
};

/// Classifier-free guidance as a run does it: off (one forward per step),
/// serial (two forwards per step on the same ranks) or parallel (the two
/// branches on the two halves of the world, their velocities exchanged once
/// per step).
enum class Guidance { kOff, kSerial, kParallel };

/// What --cfg-scale and --cfg ask for: guidance is on above scale 1.
inline Guidance guidance_of(double cfg_scale, int cfg) {
  return !(cfg_scale > 1) ? Guidance::kOff : cfg == 2 ? Guidance::kParallel : Guidance::kSerial;
}

/// Bytes per denoising step of one rank.
StepPrediction predict_step(const models::ForwardShapes& shapes, const models::RunSize& size,
                            int64_t ulysses, int64_t ring, Guidance guidance = Guidance::kOff);

/// Adds the all-gathers of --shard-weights: `per_forward` bytes for each
/// forward of a step (two with serial guidance).
void add_sharded_weights(StepPrediction& p, int64_t per_forward, Guidance guidance);

/// Throws with every error of `p`, joined.
void throw_if_impossible(const StepPrediction& p);

}  // namespace spdit::cli
