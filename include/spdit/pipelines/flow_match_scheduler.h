#pragma once
// diffusers' FlowMatchEulerDiscreteScheduler as FluxPipeline drives it:
// sigmas = linspace(1, 1/steps, steps), shifted (FLUX.1-dev: exponentially by
// mu, which grows with the image's token count between base_shift and
// max_shift; schnell: by the fixed `shift`, 1.0), timesteps = sigmas * 1000,
// a final sigma 0, and Euler steps x + (sigma_next - sigma) * v.
//
//   auto cfg = FlowMatchEulerConfig::from_json(text, "FLUX.1-dev/scheduler/scheduler_config.json");
//   FlowMatchEulerScheduler s(cfg, /*steps=*/28, /*image_seq_len=*/4096);
//   for (int64_t i = 0; i < s.steps(); ++i) x = s.step(v(x, s.timesteps()[i]), i, x);
#include <ATen/ATen.h>

#include <string>

namespace spdit::pipelines {

struct FlowMatchEulerConfig {
  int64_t num_train_timesteps = 1000;
  double shift = 1.0;
  bool use_dynamic_shifting = false;
  double base_shift = 0.5;
  double max_shift = 1.15;
  int64_t base_image_seq_len = 256;
  int64_t max_image_seq_len = 4096;
  /// Stretches the shifted sigmas so that the last one is this value (0: off),
  /// as diffusers' stretch_shift_to_terminal (Qwen-Image: 0.02).
  double shift_terminal = 0.0;

  /// FLUX.1-dev's scheduler_config.json (dynamic shifting; shift 3.0 unused).
  static FlowMatchEulerConfig flux_dev();
  /// FLUX.1-schnell's (no dynamic shifting, shift 1.0: the plain linspace).
  static FlowMatchEulerConfig flux_schnell();
  /// Qwen-Image's (dynamic shifting between 0.5 and 0.9 over 256..8192
  /// tokens, shift_terminal 0.02).
  static FlowMatchEulerConfig qwen_image();
  /// Reads scheduler_config.json; absent fields take diffusers' defaults.
  /// Refuses, naming `source` and the field, options this scheduler does not
  /// implement (Karras / exponential / beta sigmas,
  /// invert_sigmas, stochastic sampling, linear time shift).
  static FlowMatchEulerConfig from_json(const std::string& text, const std::string& source);
  std::string to_json() const;
  /// Reads `model_dir`/scheduler/scheduler_config.json (diffusers' layout).
  /// Throws naming the file when it is missing or unreadable; a folder of
  /// Black Forest Labs' files has none, and the caller picks flux_dev() or
  /// flux_schnell() by the transformer's variant.
  static FlowMatchEulerConfig from_model_dir(const std::string& model_dir);
};

/// FluxPipeline's calculate_shift: mu, linear in the image's token count
/// through (base_image_seq_len, base_shift) and (max_image_seq_len, max_shift).
double flux_time_shift_mu(int64_t image_seq_len, const FlowMatchEulerConfig& c);

class FlowMatchEulerScheduler {
 public:
  /// The schedule FluxPipeline sets for `steps` steps and an image of
  /// `image_seq_len` packed latent tokens ((H/16) * (W/16)).
  FlowMatchEulerScheduler(const FlowMatchEulerConfig& config, int64_t steps, int64_t image_seq_len);

  int64_t steps() const { return timesteps_.size(0); }
  /// (steps) float32: the transformer's timestep (Flux divides it by 1000).
  const at::Tensor& timesteps() const { return timesteps_; }
  /// (steps + 1) float32, ending in 0.
  const at::Tensor& sigmas() const { return sigmas_; }
  double mu() const { return mu_; }

  /// Step `index`: sample + (sigma[index + 1] - sigma[index]) * model_output,
  /// the product in model_output's dtype, the sum in float32, returned in
  /// model_output's dtype (as diffusers' step).
  at::Tensor step(const at::Tensor& model_output, int64_t index, const at::Tensor& sample) const;

 private:
  at::Tensor timesteps_, sigmas_;
  double mu_ = 0;
};

}  // namespace spdit::pipelines
