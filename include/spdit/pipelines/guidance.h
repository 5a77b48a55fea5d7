#pragma once
// Classifier-free guidance for one denoising step: the velocity with the
// prompt and with the negative prompt, combined as diffusers does,
// uncond + scale * (cond - uncond). With a CFG degree of 2 the two branches
// run at once on the two halves of the world (parallel_state.h): each rank
// computes its branch under SP in its half, then exchanges its velocity with
// its peer of the other half (one all-gather of the fp32 velocity), and both
// combine the same two tensors in the same order -- the result is the serial
// one, bit for bit.
//
//   auto v = guided_velocity(pipe, x, t, /*scale=*/5.0, &config.state());  // parallel if cfg 2
#include <ATen/ATen.h>

#include <functional>
#include <utility>

#include "spdit/models/pipeline.h"
#include "spdit/runtime/parallel_state.h"

namespace spdit::pipelines {

/// Guidance is on when scale > 1 (as diffusers: `guidance_scale > 1`);
/// otherwise the conditional velocity alone. `parallel`: the run's layout
/// (nullptr, or a CFG degree of 1: both branches here, one after the other).
at::Tensor guided_velocity(models::Pipeline& pipe, const at::Tensor& latents, double t,
                           double scale, const ParallelState* parallel);

/// The same for any pipeline: `velocity(conditional)` gives the fp32
/// velocity with the prompt (true) or the negative prompt (false). Guidance
/// is always on here (the caller decides by its scale).
at::Tensor guided_velocity(const std::function<at::Tensor(bool conditional)>& velocity,
                           double scale, const ParallelState* parallel);

/// The two velocities, (conditional, unconditional), each rank holding both:
/// serial, or one per half of the world with a CFG degree of 2 (one
/// all-gather). For pipelines that combine them their own way (Qwen-Image's
/// true_cfg_norm_rescale).
std::pair<at::Tensor, at::Tensor> guidance_branches(
    const std::function<at::Tensor(bool conditional)>& velocity, const ParallelState* parallel);

}  // namespace spdit::pipelines
