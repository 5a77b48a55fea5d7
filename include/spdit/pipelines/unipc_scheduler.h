#pragma once
// diffusers' UniPCMultistepScheduler as Wan2.1 configures it: flow-matching
// sigmas (linspace(1, 1/1000, steps), shifted by flow_shift: 3.0 for 480p,
// 5.0 for 720p), the model's velocity turned into a data prediction
// x0 = x - sigma * v, a UniC corrector then a UniP predictor each step
// (B(h) = expm1(-h) for bh2), order 2 with the lower orders at the start and
// the end. The step coefficients are computed with the same LibTorch float32
// scalar operations as diffusers', so a step gives diffusers' result bit for
// bit (tests/unipc_scheduler_test.cpp).
//
//   auto cfg = UniPCConfig::from_json(text,
//   "Wan2.1-T2V-1.3B-Diffusers/scheduler/scheduler_config.json");
//   UniPCMultistepScheduler s(cfg, /*steps=*/50);
//   for (int64_t i = 0; i < s.steps(); ++i) x = s.step(v(x, s.timesteps()[i]),
//   x);
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

namespace spdit::pipelines {

struct UniPCConfig {
  int64_t num_train_timesteps = 1000;
  double flow_shift = 3.0;
  int64_t solver_order = 2;
  std::string solver_type =
      "bh2";  // the only one: bh1's last step is NaN at flow's final zero sigma
  bool lower_order_final = true;
  std::vector<int64_t> disable_corrector;

  /// Wan2.1-T2V's scheduler_config.json (flow_shift 3.0, 480p; 720p uses 5.0).
  static UniPCConfig wan();
  /// Reads scheduler_config.json; absent fields take diffusers' defaults
  /// (flow_shift, solver_order 2, bh2, lower_order_final). Refuses, naming
  /// `source` and the field, what this scheduler does not implement: a
  /// prediction_type other than flow_prediction, use_flow_sigmas false,
  /// Karras / exponential / beta sigmas, dynamic shifting, thresholding,
  /// solver_p, predict_x0 false, final_sigmas_type other than zero, bh1.
  static UniPCConfig from_json(const std::string& text, const std::string& source);
  std::string to_json() const;
};

class UniPCMultistepScheduler {
 public:
  UniPCMultistepScheduler(const UniPCConfig& config, int64_t steps);

  int64_t steps() const { return timesteps_.size(0); }
  /// (steps) int64, as diffusers gives them to the transformer.
  const at::Tensor& timesteps() const { return timesteps_; }
  /// (steps + 1) float32, ending in 0.
  const at::Tensor& sigmas() const { return sigmas_; }

  /// The next step from the model's velocity at `sample` (the sample of the
  /// previous call's result); returns the sample for the next timestep in
  /// sample's dtype. Throws when called more than steps() times.
  at::Tensor step(const at::Tensor& model_output, const at::Tensor& sample);

 private:
  at::Tensor predictor(const at::Tensor& sample, int64_t order) const;
  at::Tensor corrector(const at::Tensor& model_t, const at::Tensor& last_sample,
                       int64_t order) const;

  UniPCConfig config_;
  at::Tensor timesteps_, sigmas_;
  std::vector<at::Tensor> model_outputs_;  // the last solver_order data predictions, oldest first
  at::Tensor last_sample_;
  int64_t step_index_ = 0, lower_order_nums_ = 0, this_order_ = 1;
};

}  // namespace spdit::pipelines
