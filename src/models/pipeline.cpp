#include "spdit/models/pipeline.h"

#include <stdexcept>

#include "pipeline_factories.h"

namespace spdit::models {

std::vector<std::string> model_names() { return {"flux", "wan", "qwen-image"}; }
std::vector<std::string> preset_names() { return {"tiny", "small", "full"}; }

ModelConfig preset_config(const std::string& model, const std::string& preset) {
  bool known_preset = false;
  for (const auto& p : preset_names()) known_preset |= p == preset;
  if (!known_preset) {
    throw std::invalid_argument("spdit: unknown preset '" + preset + "'; use tiny, small or full");
  }
  if (model == "flux") return FluxConfig::preset(preset);
  if (model == "wan") return WanConfig::preset(preset);
  if (model == "qwen-image" || model == "qwen_image") return QwenImageConfig::preset(preset);
  throw std::invalid_argument("spdit: unknown model '" + model + "'; use flux, wan or qwen-image");
}

std::unique_ptr<Pipeline> make_pipeline(const ModelConfig& config, uint64_t seed, Weights weights,
                                        at::ScalarType dtype) {
  check_dtype_runs(dtype);
  if (auto* c = std::get_if<FluxConfig>(&config))
    return make_flux_pipeline(*c, seed, weights, dtype);
  if (auto* c = std::get_if<WanConfig>(&config)) return make_wan_pipeline(*c, seed, weights, dtype);
  return make_qwen_image_pipeline(std::get<QwenImageConfig>(config), seed, weights, dtype);
}

std::unique_ptr<Pipeline> make_pipeline(const std::string& model, const std::string& preset,
                                        uint64_t seed, Weights weights, at::ScalarType dtype) {
  return make_pipeline(preset_config(model, preset), seed, weights, dtype);
}

std::vector<std::string> keep_in_fp32_modules(const ModelConfig& config) {
  if (std::holds_alternative<FluxConfig>(config))
    return FluxTransformerImpl::keep_in_fp32_modules();
  if (std::holds_alternative<WanConfig>(config)) return WanTransformerImpl::keep_in_fp32_modules();
  return QwenImageTransformerImpl::keep_in_fp32_modules();
}

void check_image_size(const RunSize& s) {
  auto check = [](int64_t v, const char* flag) {
    if (v < 16 || v % 16 != 0) {
      throw std::invalid_argument(std::string("spdit: ") + flag + " " + std::to_string(v) +
                                  " must be a positive multiple of 16 (latents are 1/8 of the "
                                  "image, patches 2x2)");
    }
  };
  check(s.height, "--height");
  check(s.width, "--width");
  if (s.text_len < 1) {
    throw std::invalid_argument("spdit: --text-len " + std::to_string(s.text_len) +
                                " must be at least 1");
  }
  if (s.batch < 1) throw std::invalid_argument("spdit: batch must be at least 1");
}

at::Tensor image_ids(int64_t latent_h, int64_t latent_w, int64_t frame) {
  auto rows =
      at::arange(latent_h / 2, at::kLong).view({-1, 1}).expand({latent_h / 2, latent_w / 2});
  auto cols =
      at::arange(latent_w / 2, at::kLong).view({1, -1}).expand({latent_h / 2, latent_w / 2});
  return at::stack({at::full_like(rows, frame), rows, cols}, -1).reshape({-1, 3});
}

at::Tensor preview_from_packed(const at::Tensor& tokens, int64_t lh, int64_t lw, int64_t channels) {
  // (B, (h/2)(w/2), C*4) -> (C, h, w) of the first sample.
  auto x = tokens[0]
               .view({lh / 2, lw / 2, channels, 2, 2})
               .permute({2, 0, 3, 1, 4})
               .reshape({channels, lh, lw});
  auto rgb = x.narrow(0, 0, std::min<int64_t>(3, channels)).to(at::kFloat);
  auto lo = rgb.amin({1, 2}, true), hi = rgb.amax({1, 2}, true);
  return ((rgb - lo) / (hi - lo + 1e-6)).clamp(0, 1);
}

}  // namespace spdit::models
