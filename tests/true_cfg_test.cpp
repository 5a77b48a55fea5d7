// Qwen-Image's norm-preserving true CFG against diffusers' QwenImagePipeline
// lines (scripts/reference/true_cfg_reference.py): the same LibTorch
// operations, so float32 and bfloat16 agree bit for bit.
#include <gtest/gtest.h>

#include "spdit/checkpoints/checkpoint.h"
#include "spdit/pipelines/true_cfg.h"

using namespace spdit;

TEST(TrueCfg, matches_qwen_images_pipeline_bit_for_bit) {
  auto ckpt = checkpoints::Checkpoint::open(std::string(SPDIT_FIXTURES) + "/true_cfg.safetensors");
  const auto cond = ckpt.tensor("cond"), uncond = ckpt.tensor("uncond");
  for (double scale : {4.0, 1.5}) {
    const std::string s = scale == 4.0 ? "4.0" : "1.5";
    EXPECT_TRUE(at::equal(pipelines::true_cfg_norm_rescale(cond, uncond, scale),
                          ckpt.tensor("f32_scale" + s)))
        << s;
    const auto bf =
        pipelines::true_cfg_norm_rescale(cond.to(at::kBFloat16), uncond.to(at::kBFloat16), scale);
    EXPECT_TRUE(at::equal(bf, ckpt.tensor("bf16_scale" + s))) << s;
  }
}

TEST(TrueCfg, keeps_the_conditional_norm_per_token_and_its_direction_is_plain_cfg) {
  const auto cond = at::randn({2, 5, 16}, at::kDouble), uncond = at::randn({2, 5, 16}, at::kDouble);
  const auto v = pipelines::true_cfg_norm_rescale(cond, uncond, 4.0);
  EXPECT_TRUE(at::allclose(v.norm(2, {-1}), cond.norm(2, {-1})));
  const auto plain = uncond + 4.0 * (cond - uncond);
  EXPECT_TRUE(at::allclose(v / v.norm(2, {-1}, true), plain / plain.norm(2, {-1}, true)));
  EXPECT_THROW(pipelines::true_cfg_norm_rescale(cond, uncond.narrow(1, 0, 4), 4.0),
               std::invalid_argument);
}
