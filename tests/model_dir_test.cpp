// Model folders: written by new-model, read as users download them, and the
// errors a folder missing a part gets.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "spdit/checkpoints/model_checkpoint.h"
#include "spdit/pipelines/model_dir.h"
#include "spdit/pipelines/new_model.h"
#include "support/sanitizers.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"

using namespace spdit;
using test::error_of;
using test::TempDir;

TEST(ModelDir, NewModelWritesAFolderWhoseTransformerIsThePreset) {
  SPDIT_SKIP_WITHOUT_SENTENCEPIECE();  // FLUX.1's folder has a T5 tokenizer
  TempDir tmp;
  for (const std::string model : {"flux", "wan", "qwen-image"}) {
    const std::string dir = tmp.path + "/" + model;
    pipelines::write_new_model(dir, {model, "tiny", 7});
    auto md = pipelines::ModelDir::open(dir + "/");
    EXPECT_EQ(md.pipeline_class(), model == "flux"  ? "FluxPipeline"
                                   : model == "wan" ? "WanPipeline"
                                                    : "QwenImagePipeline");
    auto ckpt = checkpoints::Checkpoint::open(md.component("transformer"));
    auto found = checkpoints::identify(ckpt);
    EXPECT_EQ(found.model, model);
    EXPECT_EQ(found.stored_dtype, model == "wan" ? at::kFloat : at::kBFloat16)
        << "as the model is published";
    EXPECT_EQ(checkpoints::diffusers_config_json(found.config),
              checkpoints::diffusers_config_json(models::preset_config(model, "tiny")));
    // The weights are the seeded model's, rounded to the stored dtype.
    auto pipe = checkpoints::make_pipeline(ckpt, found, 0, at::kFloat);
    auto seeded = models::make_pipeline(model, "tiny", 7);
    auto want = seeded->model().named_parameters(true);
    for (const auto& p : pipe->model().named_parameters(true)) {
      EXPECT_TRUE(at::equal(p.value(), want[p.key()].to(found.stored_dtype).to(at::kFloat)))
          << model << " " << p.key();
    }
  }
  const auto again = error_of([&] { pipelines::write_new_model(tmp.path + "/flux", {}); });
  EXPECT_NE(again.find("exists and is not empty"), std::string::npos) << again;
  EXPECT_NE(error_of([&] {
              pipelines::write_new_model(tmp.path + "/x", {"sdxl", "tiny", 0});
            }).find("unknown model 'sdxl'"),
            std::string::npos);
}

TEST(ModelDir, AMissingPartIsNamedWithWhatTheFolderShouldHold) {
  TempDir tmp;
  EXPECT_NE(
      error_of([&] { pipelines::ModelDir::open(tmp.path + "/none"); }).find("is not a folder"),
      std::string::npos);
  EXPECT_NE(error_of([&] { pipelines::ModelDir::open(tmp.path); }).find("has no model_index.json"),
            std::string::npos);
  std::ofstream(tmp.path + "/model_index.json") << "{not json";
  EXPECT_NE(error_of([&] { pipelines::ModelDir::open(tmp.path); }).find("is not valid JSON"),
            std::string::npos);
  std::ofstream(tmp.path + "/model_index.json") << R"({"_class_name": "FluxPipeline",
      "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
      "transformer": ["diffusers", "FluxTransformer2DModel"], "vae": ["diffusers", "AutoencoderKL"],
      "image_encoder": [null, null]})";
  auto md = pipelines::ModelDir::open(tmp.path);
  EXPECT_EQ(md.components().size(), 4u) << "null components are left out";
  const auto vae = error_of([&] { md.component("vae"); });
  EXPECT_NE(vae.find("has no vae/ (model_index.json lists it: AutoencoderKL)"), std::string::npos)
      << vae;
  EXPECT_NE(vae.find("ae.safetensors beside model_index.json also serves"), std::string::npos)
      << vae;
  EXPECT_NE(vae.find("A FluxPipeline folder holds scheduler/ (FlowMatchEulerDiscreteScheduler), "
                     "text_encoder/"),
            std::string::npos)
      << vae;
  const auto all = error_of([&] { md.require({"scheduler", "transformer", "vae"}); });
  EXPECT_NE(all.find("lacks scheduler/, transformer/, vae/"), std::string::npos) << all;
  // Black Forest Labs' files stand in for transformer/ and vae/.
  std::ofstream(tmp.path + "/ae.safetensors") << "x";
  std::ofstream(tmp.path + "/flux1-dev.safetensors") << "x";
  EXPECT_EQ(md.component("vae"), tmp.path + "/ae.safetensors");
  EXPECT_EQ(md.component("transformer"), tmp.path + "/flux1-dev.safetensors");
}

TEST(ModelDir, NewModelCommandThenRunOnItsTransformer) {
  if (access(SPDIT_BIN, X_OK) != 0) GTEST_SKIP() << "the spdit command is not built here";
  TempDir tmp;
  auto r = test::run_command(std::string(SPDIT_BIN) + " new-model --model qwen-image --out " +
                             tmp.path + "/q");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("wrote " + tmp.path + "/q: scheduler/ transformer/"), std::string::npos)
      << r.output;
  r = test::run_command(
      std::string(SPDIT_BIN) + " run --weights " + tmp.path +
      "/q/transformer --height 64 --width 64 --text-len 5 --steps 1 --nproc 2 --check");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("bf16"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("PASS"), std::string::npos) << r.output;
  r = test::run_command(std::string(SPDIT_BIN) + " new-model --out " + tmp.path + "/q");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("exists and is not empty"), std::string::npos) << r.output;
}

// _spdit_run_defaults: sizes and counts whole, scales any positive number;
// anything else is refused naming the key.
TEST(ModelDir, RunDefaultsAreWholeSizesAndPositiveScales) {
  TempDir tmp;
  auto folder = [&](const std::string& defaults) {
    std::ofstream(tmp.path + "/model_index.json")
        << R"({"_class_name": "FluxPipeline", "_spdit_run_defaults": )" << defaults << "}";
    return tmp.path;
  };
  auto md = pipelines::ModelDir::open(folder(R"({"height": 128, "true_cfg_scale": 4.5})"));
  EXPECT_EQ(md.run_defaults().at("height"), 128);
  EXPECT_EQ(md.run_defaults().at("true_cfg_scale"), 4.5);
  for (const auto& [bad, words] : std::vector<std::pair<std::string, std::string>>{
           {R"({"height": 128.5})", "_spdit_run_defaults.height must be a positive whole number"},
           {R"({"true_cfg_scale": -1})", "true_cfg_scale must be a positive number"},
           {R"({"true_cfg_scale": "4"})", "true_cfg_scale must be a positive number"}}) {
    const auto what = error_of([&] { pipelines::ModelDir::open(folder(bad)); });
    EXPECT_NE(what.find(words), std::string::npos) << bad << ": " << what;
  }
}
