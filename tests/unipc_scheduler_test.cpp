// UniPC for flow matching against diffusers' UniPCMultistepScheduler as
// transcribed by scripts/reference/unipc_reference.py: for each case (steps,
// flow_shift, solver order 1 / 2 / 3) the timesteps, the sigmas and the sample
// after every step, replaying the fixture's seeded model outputs. The
// coefficients are the same LibTorch float32 operations, so the samples must
// agree bit for bit.
#include <gtest/gtest.h>

#include <functional>

#include "spdit/checkpoints/checkpoint.h"
#include "spdit/pipelines/unipc_scheduler.h"

using namespace spdit;
using pipelines::UniPCConfig;
using pipelines::UniPCMultistepScheduler;

namespace {

struct Case {
  int64_t steps;
  double flow_shift;
  int64_t order;
  const char* solver_type;
};
// As CASES in scripts/reference/unipc_reference.py.
const Case kCases[] = {{1, 3.0, 2, "bh2"},  {2, 3.0, 2, "bh2"}, {5, 3.0, 2, "bh2"},
                       {12, 3.0, 2, "bh2"}, {8, 5.0, 2, "bh2"}, {8, 1.0, 2, "bh2"},
                       {6, 3.0, 1, "bh2"},  {7, 3.0, 3, "bh2"}, {50, 5.0, 2, "bh2"}};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(UniPCScheduler, matches_diffusers_bit_for_bit_in_every_case) {
  auto ckpt =
      checkpoints::Checkpoint::open(std::string(SPDIT_FIXTURES) + "/unipc_flow.safetensors");
  int n = 0;
  for (const auto& c : kCases) {
    SCOPED_TRACE("case " + std::to_string(n) + ": " + std::to_string(c.steps) + " steps, shift " +
                 std::to_string(c.flow_shift) + ", order " + std::to_string(c.order) + " " +
                 c.solver_type);
    const std::string p = "case" + std::to_string(n++) + ".";
    UniPCConfig config;
    config.flow_shift = c.flow_shift;
    config.solver_order = c.order;
    config.solver_type = c.solver_type;
    UniPCMultistepScheduler s(config, c.steps);
    ASSERT_TRUE(at::equal(s.timesteps(), ckpt.tensor(p + "timesteps")));
    ASSERT_TRUE(at::equal(s.sigmas(), ckpt.tensor(p + "sigmas")));
    auto x = ckpt.tensor(p + "sample").clone();
    const auto outs = ckpt.tensor(p + "model_outputs"), want = ckpt.tensor(p + "samples");
    for (int64_t i = 0; i < s.steps(); ++i) {
      x = s.step(outs[i], x);
      ASSERT_TRUE(at::equal(x, want[i]))
          << "step " << i << ": max diff " << (x - want[i]).abs().max().item<double>();
    }
  }
}

TEST(UniPCScheduler, wans_config_file_is_read_and_others_are_refused_by_name) {
  const std::string wan =
      R"({"_class_name": "UniPCMultistepScheduler", "beta_end": 0.02, "beta_schedule": "linear",
    "beta_start": 0.0001, "disable_corrector": [], "dynamic_thresholding_ratio": 0.995, "final_sigmas_type": "zero",
    "flow_shift": 5.0, "lower_order_final": true, "num_train_timesteps": 1000, "predict_x0": true,
    "prediction_type": "flow_prediction", "rescale_betas_zero_snr": false, "sample_max_value": 1.0,
    "solver_order": 2, "solver_p": null, "solver_type": "bh2", "steps_offset": 0, "thresholding": false,
    "timestep_spacing": "linspace", "trained_betas": null, "use_beta_sigmas": false,
    "use_exponential_sigmas": false, "use_flow_sigmas": true, "use_karras_sigmas": false})";
  const auto c = UniPCConfig::from_json(wan, "scheduler_config.json");
  EXPECT_EQ(c.flow_shift, 5.0);
  EXPECT_EQ(c.solver_order, 2);
  EXPECT_EQ(c.solver_type, "bh2");
  const auto again = UniPCConfig::from_json(c.to_json(), "round trip");
  EXPECT_EQ(again.flow_shift, 5.0);

  auto msg = error_of([] {
    UniPCConfig::from_json(R"({"prediction_type": "epsilon", "use_flow_sigmas": true})",
                           "a/scheduler_config.json");
  });
  EXPECT_NE(msg.find("a/scheduler_config.json: prediction_type 'epsilon'"), std::string::npos)
      << msg;
  msg = error_of([] {
    UniPCConfig::from_json(
        R"({"prediction_type": "flow_prediction", "use_flow_sigmas": true, "use_karras_sigmas": true})",
        "s.json");
  });
  EXPECT_NE(msg.find("use_karras_sigmas"), std::string::npos) << msg;
  msg = error_of([] {
    UniPCConfig::from_json(
        R"({"prediction_type": "flow_prediction", "use_flow_sigmas": true, "solver_type": "bh1"})",
        "s.json");
  });
  EXPECT_NE(msg.find("solver_type 'bh1'"), std::string::npos) << msg;
  msg = error_of([] { UniPCConfig::from_json("{not json", "s.json"); });
  EXPECT_NE(msg.find("s.json is not JSON"), std::string::npos) << msg;
}

TEST(UniPCScheduler, a_step_past_the_schedule_is_an_error) {
  UniPCMultistepScheduler s(UniPCConfig::wan(), 1);
  auto x = at::ones({1, 2});
  x = s.step(at::zeros({1, 2}), x);
  EXPECT_NE(error_of([&] {
              s.step(at::zeros({1, 2}), x);
            }).find("step 2 of a 1-step schedule"),
            std::string::npos);
}
