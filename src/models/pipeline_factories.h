#pragma once
// Private: each model file provides its pipeline.
#include <stdexcept>
#include <string>

#include "spdit/models/layers.h"
#include "spdit/models/pipeline.h"
#include "spdit/models/precision.h"
#include "spdit/models/skeleton.h"

namespace spdit::models {
std::unique_ptr<Pipeline> make_flux_pipeline(const FluxConfig& c, uint64_t seed, Weights weights,
                                             at::ScalarType dtype);
std::unique_ptr<Pipeline> make_wan_pipeline(const WanConfig& c, uint64_t seed, Weights weights,
                                            at::ScalarType dtype);
std::unique_ptr<Pipeline> make_qwen_image_pipeline(const QwenImageConfig& c, uint64_t seed,
                                                   Weights weights, at::ScalarType dtype);

/// A pipeline's model: seeded random weights in `dtype`, or a skeleton (no
/// weight memory) for a checkpoint to fill (in the dtype it loads them in)
/// or for explaining.
template <typename Holder, typename Config>
Holder build(const Config& c, uint64_t seed, Weights weights, at::ScalarType dtype) {
  if (weights == Weights::kNone) {
    SkeletonScope skeleton;
    return Holder(c);
  }
  if (dtype == at::kFloat) {
    Holder m(c);
    seeded_init(*m, seed);
    return m;
  }
  // Lazy pages, each parameter drawn in fp32 and converted at once: the
  // model never exists whole in fp32.
  Holder m = [&] {
    SkeletonScope skeleton;
    return Holder(c);
  }();
  seeded_init(*m, seed, 1.0, dtype, Holder::ContainedType::keep_in_fp32_modules());
  return m;
}

/// The negative prompt's own generator, seeded from the prompt's: adding it
/// changes none of the draws that existed before it.
inline at::Generator negative_generator(at::Generator& gen) {
  return at::detail::createCPUGenerator(gen.current_seed() ^ 0x9e3779b97f4a7c15ULL);
}

/// Height/width must be positive multiples of 16 (8x VAE, 2x2 patches).
void check_image_size(const RunSize& size);
/// Packed 2x2 positions (S, 3): (frame, row, col).
at::Tensor image_ids(int64_t latent_h, int64_t latent_w, int64_t frame = 0);

/// What the image models (latents packed as 2x2 tokens) share: sizes, seeded
/// text and noise, image positions, the preview.
class PackedImagePipeline : public Pipeline {
 public:
  void check_size(const RunSize& s) const override {
    check_image_size(s);
    if (s.frames != 1) {
      throw std::invalid_argument("spdit: --frames " + std::to_string(s.frames) +
                                  " is for video models (--model wan); " + name() +
                                  " makes images: leave --frames out");
    }
  }
  at::Tensor preview(const at::Tensor& latents) const override {
    return preview_from_packed(latents, latent_h_, latent_w_, channels_ / 4);
  }

 protected:
  PackedImagePipeline(int64_t channels, at::ScalarType dtype)
      : Pipeline(dtype), channels_(channels) {}
  /// Draws text (B, T, text_dim) then noise (B, tokens, channels) from `gen`.
  at::Tensor prepare_packed(const RunSize& s, int64_t text_dim, at::Generator& gen) {
    check_size(s);
    latent_h_ = s.height / 8, latent_w_ = s.width / 8;
    text_ = at::randn({s.batch, s.text_len, text_dim}, gen);
    img_ids_ = image_ids(latent_h_, latent_w_);
    auto noise = at::randn({s.batch, (latent_h_ / 2) * (latent_w_ / 2), channels_}, gen);
    negative_text_ = at::randn(text_.sizes(), negative_generator(gen));
    return noise;
  }
  const at::Tensor& text_of(Branch b) const {
    return b == Branch::kConditional ? text_ : negative_text_;
  }
  static int64_t tokens_of(const RunSize& s) { return (s.height / 16) * (s.width / 16); }

  at::Tensor text_, negative_text_, img_ids_;

 private:
  int64_t channels_;
  int64_t latent_h_ = 0, latent_w_ = 0;
};
}  // namespace spdit::models
