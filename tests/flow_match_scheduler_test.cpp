// The flow-matching Euler schedule against diffusers' numbers
// (tests/fixtures/flux_scheduler.json, from scripts/reference/flux_vae_reference.py:
// FluxPipeline's sigmas and mu through FlowMatchEulerDiscreteScheduler.set_timesteps,
// in numpy float32 as the original computes) for FLUX.1-dev's and
// -schnell's configs at several step counts and image sizes.
//
// Tolerance: sigmas and timesteps within 1 float32 ulp (the same float32
// operations in the same order; exp(mu) from another libm may differ in its
// last bit), mu within 1e-12.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "spdit/pipelines/flow_match_scheduler.h"
#include "spdit/pipelines/flux_latents.h"
#include "support/temp_dir.h"

using namespace spdit::pipelines;

namespace {

nlohmann::json fixture() {
  std::ifstream f(std::string(SPDIT_FIXTURES) + "/flux_scheduler.json");
  return nlohmann::json::parse(f);
}

void expect_ulp_close(const at::Tensor& ours, const std::vector<double>& ref,
                      const std::string& what) {
  ASSERT_EQ(ours.numel(), static_cast<int64_t>(ref.size())) << what;
  const float* p = ours.data_ptr<float>();
  for (size_t i = 0; i < ref.size(); ++i) {
    const float r = static_cast<float>(ref[i]);
    EXPECT_LE(std::fabs(p[i] - r), std::fabs(std::nextafter(r, 2 * r + 1) - r))
        << what << " [" << i << "]";
  }
}

std::string error_of(const std::string& text) {
  try {
    FlowMatchEulerConfig::from_json(text, "scheduler/scheduler_config.json");
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(FlowMatchScheduler, SigmasAndTimestepsAreDiffusersForDevAndSchnell) {
  const auto doc = fixture();
  ASSERT_GE(doc["cases"].size(), 7u);
  for (const auto& c : doc["cases"]) {
    const std::string name = c["config"].get<std::string>() + " " + c["steps"].dump() + " steps " +
                             c["height"].dump() + "x" + c["width"].dump();
    const auto config = FlowMatchEulerConfig::from_json(
        doc["configs"][c["config"].get<std::string>()].dump(), name);
    const auto grid = flux_latent_grid(c["height"].get<int64_t>(), c["width"].get<int64_t>());
    EXPECT_EQ(grid.tokens(), c["image_seq_len"].get<int64_t>()) << name;
    FlowMatchEulerScheduler s(config, c["steps"].get<int64_t>(), grid.tokens());
    EXPECT_NEAR(s.mu(), c["mu"].get<double>(), 1e-12) << name;
    EXPECT_EQ(s.steps(), c["steps"].get<int64_t>());
    expect_ulp_close(s.sigmas(), c["sigmas"].get<std::vector<double>>(), name + " sigmas");
    expect_ulp_close(s.timesteps(), c["timesteps"].get<std::vector<double>>(), name + " timesteps");
  }
}

TEST(FlowMatchScheduler, PresetsAreTheReleasedConfigs) {
  const auto doc = fixture();
  for (const auto& [name, preset] : {std::pair{"dev", FlowMatchEulerConfig::flux_dev()},
                                     std::pair{"schnell", FlowMatchEulerConfig::flux_schnell()}}) {
    const auto parsed = FlowMatchEulerConfig::from_json(doc["configs"][name].dump(), name);
    EXPECT_EQ(parsed.use_dynamic_shifting, preset.use_dynamic_shifting) << name;
    EXPECT_EQ(parsed.shift, preset.shift) << name;
    EXPECT_EQ(FlowMatchEulerConfig::from_json(preset.to_json(), name).to_json(), preset.to_json())
        << name;
  }
  // schnell: no shift, the plain linspace with a final 0.
  FlowMatchEulerScheduler s(FlowMatchEulerConfig::flux_schnell(), 4, 4096);
  EXPECT_TRUE(at::equal(s.sigmas(), at::tensor({1.0f, 0.75f, 0.5f, 0.25f, 0.0f})));
  EXPECT_TRUE(at::equal(s.timesteps(), at::tensor({1000.0f, 750.0f, 500.0f, 250.0f})));
}

TEST(FlowMatchScheduler, AnEulerStepIsDiffusersStep) {
  const auto doc = fixture();
  const auto& st = doc["step"];
  const auto shape = st["shape"].get<std::vector<int64_t>>();
  auto tensor = [&](const char* key) {
    return at::tensor(st[key].get<std::vector<float>>()).reshape(shape);
  };
  FlowMatchEulerScheduler s(
      FlowMatchEulerConfig::flux_dev(), st["steps"].get<int64_t>(),
      flux_latent_grid(st["height"].get<int64_t>(), st["width"].get<int64_t>()).tokens());
  const at::Tensor out =
      s.step(tensor("model_output"), st["index"].get<int64_t>(), tensor("sample"));
  EXPECT_LE((out - tensor("prev_sample")).abs().max().item<float>(), 1e-6f);
  // bf16 in, bf16 out (the pipeline's latents keep the transformer's dtype).
  EXPECT_EQ(s.step(tensor("model_output").to(at::kBFloat16), 0, tensor("sample")).scalar_type(),
            at::kBFloat16);
  EXPECT_THROW(s.step(tensor("model_output"), s.steps(), tensor("sample")), std::out_of_range);
  EXPECT_THROW(s.step(tensor("model_output"), 0, tensor("sample").reshape({-1})),
               std::invalid_argument);
}

TEST(FlowMatchScheduler, OptionsItDoesNotImplementAreRefusedByName) {
  EXPECT_EQ(error_of(R"({"shift": 1.0})"), "");
  EXPECT_NE(error_of(R"({"use_karras_sigmas": true})").find("use_karras_sigmas"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"shift_terminal": 1.5})").find("shift_terminal"), std::string::npos);
  EXPECT_NE(error_of(R"({"time_shift_type": "linear"})").find("time_shift_type"),
            std::string::npos);
  EXPECT_NE(
      error_of(R"({"_class_name": "UniPCMultistepScheduler"})").find("UniPCMultistepScheduler"),
      std::string::npos);
  EXPECT_NE(error_of(R"({"shift": "3"})").find("'shift'"), std::string::npos);
  EXPECT_NE(error_of(R"({"base_image_seq_len": 256, "max_image_seq_len": 256})")
                .find("max_image_seq_len"),
            std::string::npos);
  EXPECT_NE(error_of("[1]").find("scheduler/scheduler_config.json"), std::string::npos);
  EXPECT_THROW(FlowMatchEulerScheduler(FlowMatchEulerConfig::flux_dev(), 0, 4096),
               std::invalid_argument);
}

TEST(FlowMatchScheduler, AModelFoldersConfigIsReadOrItsAbsenceNamed) {
  spdit::test::TempDir dir;
  try {
    FlowMatchEulerConfig::from_model_dir(dir.path);
    FAIL() << "read a config that is not there";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(dir.path + "/scheduler/scheduler_config.json"),
              std::string::npos)
        << e.what();
  }
  std::filesystem::create_directories(dir.path + "/scheduler");
  std::ofstream(dir.path + "/scheduler/scheduler_config.json")
      << FlowMatchEulerConfig::flux_dev().to_json();
  EXPECT_TRUE(FlowMatchEulerConfig::from_model_dir(dir.path).use_dynamic_shifting);
  std::ofstream(dir.path + "/scheduler/scheduler_config.json") << R"({"use_beta_sigmas": true})";
  try {
    FlowMatchEulerConfig::from_model_dir(dir.path);
    FAIL() << "accepted beta sigmas";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("scheduler/scheduler_config.json: sets 'use_beta_sigmas'"),
              std::string::npos)
        << e.what();
  }
}
