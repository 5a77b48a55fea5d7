#pragma once
// Qwen-Image's "true" classifier-free guidance, as diffusers' QwenImagePipeline
// combines its two velocities: the usual uncond + scale (cond - uncond),
// then rescaled per token so that its norm over the channels (the last dim)
// is the conditional velocity's norm. Guidance then steers the direction
// without inflating the magnitude (which a plain scale of 4 would).
//
//   at::Tensor v = true_cfg_norm_rescale(cond, uncond, /*scale=*/4.0);   // (B,
//   tokens, C)
#include <ATen/ATen.h>

namespace spdit::pipelines {

/// comb = uncond + scale (cond - uncond); comb * (|cond| / |comb|), norms
/// over dim -1, in the inputs' dtype, as diffusers computes it. Throws when
/// the two shapes differ.
at::Tensor true_cfg_norm_rescale(const at::Tensor& cond, const at::Tensor& uncond, double scale);

}  // namespace spdit::pipelines
