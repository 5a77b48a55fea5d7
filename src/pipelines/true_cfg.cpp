#include "spdit/pipelines/true_cfg.h"

#include <stdexcept>
#include <string>

namespace spdit::pipelines {

at::Tensor true_cfg_norm_rescale(const at::Tensor& cond, const at::Tensor& uncond, double scale) {
  if (!cond.sizes().equals(uncond.sizes())) {
    throw std::invalid_argument(
        "spdit: true CFG: the conditional velocity " + std::string(c10::str(cond.sizes())) +
        " and the unconditional one " + std::string(c10::str(uncond.sizes())) + " differ in shape");
  }
  const auto comb = uncond + scale * (cond - uncond);
  const auto cond_norm = at::norm(cond, 2, {-1}, /*keepdim=*/true);
  const auto comb_norm = at::norm(comb, 2, {-1}, /*keepdim=*/true);
  return comb * (cond_norm / comb_norm);
}

}  // namespace spdit::pipelines
