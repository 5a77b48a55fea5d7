#include "spdit/pipelines/guidance.h"

#include "spdit/runtime/comm.h"

namespace spdit::pipelines {

at::Tensor guided_velocity(models::Pipeline& pipe, const at::Tensor& latents, double t,
                           double scale, const ParallelState* parallel) {
  using models::Branch;
  if (!(scale > 1.0)) return pipe.velocity(latents, t, Branch::kConditional);
  return guided_velocity(
      [&](bool conditional) {
        return pipe.velocity(latents, t,
                             conditional ? Branch::kConditional : Branch::kUnconditional);
      },
      scale, parallel);
}

at::Tensor guided_velocity(const std::function<at::Tensor(bool conditional)>& velocity,
                           double scale, const ParallelState* parallel) {
  auto [cond, uncond] = guidance_branches(velocity, parallel);
  return uncond + scale * (cond - uncond);
}

std::pair<at::Tensor, at::Tensor> guidance_branches(
    const std::function<at::Tensor(bool conditional)>& velocity, const ParallelState* parallel) {
  if (parallel && parallel->cfg_degree() == 2) {
    auto mine = velocity(parallel->layout().cfg_rank == 0);
    // Ordered by cfg_rank: [conditional, unconditional] on both ranks.
    auto both = all_gather(parallel->cfg_group(), mine.unsqueeze(0).contiguous(), 0);
    return {both[0], both[1]};
  }
  auto cond = velocity(true);
  return {cond, velocity(false)};
}

}  // namespace spdit::pipelines
