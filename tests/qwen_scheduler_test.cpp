// Qwen-Image's flow-matching schedule (dynamic shift up to 0.9 over 8192
// tokens, stretched to end at shift_terminal 0.02) against QwenImagePipeline
// and diffusers' set_timesteps as transcribed by
// scripts/reference/qwen_scheduler_reference.py: the same float32 arithmetic,
// so the sigmas and timesteps agree bit for bit.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "spdit/pipelines/flow_match_scheduler.h"

using namespace spdit::pipelines;

TEST(QwenImageScheduler, sigmas_and_timesteps_match_diffusers_bit_for_bit) {
  std::ifstream f(std::string(SPDIT_FIXTURES) + "/qwen_scheduler.json");
  const auto doc = nlohmann::json::parse(f);
  const auto config = FlowMatchEulerConfig::from_json(doc["config"].dump(), "qwen_scheduler.json");
  EXPECT_EQ(config.shift_terminal, 0.02);
  EXPECT_EQ(config.max_shift, FlowMatchEulerConfig::qwen_image().max_shift);
  for (const auto& c : doc["cases"]) {
    const int64_t steps = c["steps"], seq = c["image_seq_len"];
    FlowMatchEulerScheduler s(config, steps, seq);
    EXPECT_DOUBLE_EQ(s.mu(), c["mu"].get<double>());
    const auto sigmas = c["sigmas"].get<std::vector<float>>(),
               timesteps = c["timesteps"].get<std::vector<float>>();
    ASSERT_EQ(s.sigmas().size(0), static_cast<int64_t>(sigmas.size()));
    for (int64_t i = 0; i < steps; ++i) {
      EXPECT_EQ(s.sigmas()[i].item<float>(), sigmas[i])
          << steps << " steps, " << seq << " tokens, sigma " << i;
      EXPECT_EQ(s.timesteps()[i].item<float>(), timesteps[i]) << steps << " steps, timestep " << i;
    }
    EXPECT_NEAR(s.sigmas()[steps - 1].item<float>(), 0.02f,
                1e-6f);  // the terminal it was stretched to
  }
}

TEST(QwenImageScheduler, one_step_with_shift_terminal_is_refused) {
  EXPECT_THROW(FlowMatchEulerScheduler(FlowMatchEulerConfig::qwen_image(), 1, 4096),
               std::invalid_argument);
}
