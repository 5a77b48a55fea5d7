// Parameter counts of the reference models at a preset, without allocating
// their weights: `spdit run` refuses weights that cannot fit before it
// allocates any (Flux's full preset is 12 billion parameters, 48 GB in fp32).
// The model is built as a skeleton (SkeletonScope: no weight memory), so the
// count is the architecture's own, not a second description of it.
#include <stdexcept>

#include "spdit/models/flux.h"
#include "spdit/models/pipeline.h"
#include "spdit/models/qwen_image.h"
#include "spdit/models/skeleton.h"
#include "spdit/models/wan.h"

namespace spdit::models {
namespace {

int64_t count(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

}  // namespace

int64_t parameter_count(const std::string& model, const std::string& preset) {
  SkeletonScope skeleton;
  if (model == "flux") return count(*FluxTransformer(FluxConfig::preset(preset)));
  if (model == "wan") return count(*WanTransformer(WanConfig::preset(preset)));
  if (model == "qwen-image" || model == "qwen_image") {
    return count(*QwenImageTransformer(QwenImageConfig::preset(preset)));
  }
  throw std::invalid_argument("spdit: unknown model '" + model + "'; use flux, wan or qwen-image");
}

}  // namespace spdit::models
