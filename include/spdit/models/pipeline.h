#pragma once
// What `spdit run` and `spdit explain` need from a reference model: seeded
// inputs at a requested size, one denoiser evaluation, a preview, and the
// shapes its plan will split and gather (to predict without running).
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include <variant>

#include "spdit/hooks/hookable.h"
#include "spdit/models/flux.h"
#include "spdit/models/qwen_image.h"
#include "spdit/models/wan.h"
#include "spdit/plan/sp_plan.h"

namespace spdit::models {

/// Sizes as the real pipelines take them: pixels; latents are 1/8, patches 2x2.
struct RunSize {
  int64_t height = 256;
  int64_t width = 256;
  int64_t frames = 1;  // video models: (frames - 1) / 4 + 1 latent frames
  int64_t text_len = 64;
  int64_t batch = 1;
};

/// A tensor the plan splits (before or after a module) or gathers.
struct PlanSite {
  std::string path;
  std::string key;                  // parameter, "output N", or "gather N"
  std::vector<int64_t> full_shape;  // on one device
  int64_t dim = 1;
  int64_t text_len = 0;  // PartialInput: leading entries kept whole
  bool gather = false;
};

/// One kind of attention call in a forward.
struct AttentionSite {
  std::string name;
  int64_t count = 0;     // calls per forward
  int64_t tokens = 0;    // sequence tokens (image/video), before padding
  int64_t text_len = 0;  // joint text tokens (replicated)
  int64_t heads = 0;
  int64_t head_dim = 0;
  bool sharded = true;  // false: skip_sp (cross-attention to replicated text)
};

struct ForwardShapes {
  int64_t tokens = 0;
  int64_t elem_bytes = 4;  // of the activations attention moves and the plan gathers
  std::vector<PlanSite> sites;
  std::vector<AttentionSite> attention;
};

/// Classifier-free guidance's two evaluations per step: with the prompt, and
/// with the negative (empty) prompt.
enum class Branch { kConditional, kUnconditional };

class Pipeline {
 public:
  virtual ~Pipeline() = default;
  virtual std::string name() const = 0;
  /// The root module; it declares the plan.
  virtual HookableModule& model() = 0;
  /// Throws naming the flag when the size cannot be served.
  virtual void check_size(const RunSize& size) const = 0;
  /// Seeded noise latents and text conditioning for `size` (the prompt's
  /// and a negative prompt's, from a generator of their own).
  virtual at::Tensor prepare(const RunSize& size, uint64_t seed) = 0;
  /// The denoiser's velocity at flow time t in [0, 1], fp32, for the
  /// prompt or for the negative prompt.
  virtual at::Tensor velocity(const at::Tensor& latents, double t,
                              Branch branch = Branch::kConditional) = 0;
  virtual ForwardShapes shapes(const RunSize& size) const = 0;
  /// (3, h, w) in [0, 1] from final latents, for a PNG.
  virtual at::Tensor preview(const at::Tensor& latents) const = 0;
  /// The dtype the model computes in (its weights', precision.h). Latents
  /// and velocities stay fp32.
  at::ScalarType dtype() const { return dtype_; }

 protected:
  explicit Pipeline(at::ScalarType dtype) : dtype_(dtype) {}

 private:
  at::ScalarType dtype_;
};

/// How a pipeline's model gets its weights: seeded random ones, or none (a
/// skeleton: no weight memory, for a checkpoint to fill, or for `explain`).
enum class Weights { kSeeded, kNone };

/// A reference model's dimensions.
using ModelConfig = std::variant<FluxConfig, WanConfig, QwenImageConfig>;

/// "flux", "wan" or "qwen-image" (also "qwen_image"); preset "tiny", "small"
/// or "full".
ModelConfig preset_config(const std::string& model, const std::string& preset);

/// The pipeline of a model of these dimensions computing in `dtype`;
/// parameters seeded from `seed` (drawn in fp32, then converted, so that
/// every dtype has the same weights) unless `weights` is kNone.
std::unique_ptr<Pipeline> make_pipeline(const ModelConfig& config, uint64_t seed,
                                        Weights weights = Weights::kSeeded,
                                        at::ScalarType dtype = at::kFloat);
std::unique_ptr<Pipeline> make_pipeline(const std::string& model, const std::string& preset,
                                        uint64_t seed, Weights weights = Weights::kSeeded,
                                        at::ScalarType dtype = at::kFloat);

/// The model's modules kept in fp32 when it runs in bf16 or fp16.
std::vector<std::string> keep_in_fp32_modules(const ModelConfig& config);

/// Parameters of make_pipeline(model, preset)'s network, from its
/// configuration alone (nothing is allocated): to refuse weights that cannot
/// fit before building them.
int64_t parameter_count(const std::string& model, const std::string& preset);

/// The model names and presets make_pipeline accepts.
std::vector<std::string> model_names();
std::vector<std::string> preset_names();

/// Latent preview shared by the image models: packed 2x2 tokens back to
/// (C, h, w), first three channels normalised to [0, 1].
at::Tensor preview_from_packed(const at::Tensor& tokens, int64_t latent_h, int64_t latent_w,
                               int64_t channels);

}  // namespace spdit::models
