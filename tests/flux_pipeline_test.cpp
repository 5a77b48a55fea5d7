// The whole FLUX.1 pipeline from a new-model folder, as a user runs it:
// prompt -> picture under SP with parity against one rank for every layout
// of 2 and 4 ranks, the interop files (encode, --prompt-embeds, --noise,
// --dump, decode) reproducing the run, and the mistakes a user makes.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "spdit/checkpoints/checkpoint.h"
#include "spdit/pipelines/flux_image_pipeline.h"
#include "spdit/pipelines/new_model.h"
#include "support/sanitizers.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"

using namespace spdit;
using test::run_command;
using test::TempDir;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

at::Tensor tensor_in(const std::string& file, const std::string& name) {
  return checkpoints::Checkpoint::open(file).tensor(name).clone();
}

// One folder for the whole suite: writing it takes a moment.
const std::string& model_dir() {
  static TempDir tmp;
  static std::string dir = [] {
    const std::string d = tmp.path + "/flux-tiny";
    pipelines::write_new_model(d, {"flux", "tiny", 5});
    return d;
  }();
  return dir;
}

}  // namespace

TEST(FluxPipeline, PromptToPictureUnderEveryLayoutMatchesOneRank) {
  SPDIT_SKIP_WITHOUT_SENTENCEPIECE();
  if (access(SPDIT_BIN, X_OK) != 0) GTEST_SKIP() << "the spdit command is not built here";
  const std::string base = std::string(SPDIT_BIN) + " run --model-dir " + model_dir() +
                           " --prompt 'a red circle on a blue background' --steps 3 --check";
  // 64 tokens divide by 2 and 4; 80x112 gives 35, which divides by neither.
  for (const char* size : {" --height 128 --width 128", " --height 80 --width 112"}) {
    for (const char* layout :
         {" --ulysses 2", " --ring 2", " --ulysses 4", " --ulysses 2 --ring 2", " --ring 4"}) {
      auto r = run_command(base + size + layout);
      EXPECT_EQ(r.code, 0) << size << layout << "\n" << r.output;
      EXPECT_NE(r.output.find("PASS"), std::string::npos) << size << layout << "\n" << r.output;
    }
  }
}

TEST(FluxPipeline, InteropFilesReproduceTheRun) {
  SPDIT_SKIP_WITHOUT_SENTENCEPIECE();
  if (access(SPDIT_BIN, X_OK) != 0) GTEST_SKIP() << "the spdit command is not built here";
  TempDir tmp;
  const std::string bin = SPDIT_BIN, dir = model_dir(), t = tmp.path;
  // One rank decodes, as `spdit decode` does below (bands round differently
  // in bf16: ParallelDecodeDrawsTheOneRankPicture compares those).
  auto r = run_command(bin + " run --model-dir " + dir +
                       " --prompt 'a yellow triangle' --height 96 --width 128 --steps 2" +
                       " --nproc 2 --vae-parallel off --out " + t + "/a.png --dump " + t +
                       "/a.safetensors --json " + t + "/a.json");
  ASSERT_EQ(r.code, 0) << r.output;
  auto image = tensor_in(t + "/a.safetensors", "image");
  EXPECT_EQ(image.sizes(), (std::vector<int64_t>{1, 96, 128, 3}));
  EXPECT_EQ(image.scalar_type(), at::kByte);
  EXPECT_GT(image.to(at::kFloat).std().item<double>(), 1.0)
      << "a decoded picture, not a flat field";
  auto json = read_file(t + "/a.json");
  for (const char* key : {"\"encode_seconds\"", "\"denoise_seconds\"", "\"decode_seconds\""}) {
    EXPECT_NE(json.find(key), std::string::npos) << key;
  }
  // encode gives the run's embeddings; a run from them and the dumped noise
  // gives the same latents; decode of those latents the same PNG.
  r = run_command(bin + " encode --model-dir " + dir + " --prompt 'a yellow triangle' --out " + t +
                  "/e.safetensors");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(at::equal(tensor_in(t + "/e.safetensors", "prompt_embeds"),
                        tensor_in(t + "/a.safetensors", "prompt_embeds")));
  EXPECT_TRUE(at::equal(tensor_in(t + "/e.safetensors", "pooled_prompt_embeds"),
                        tensor_in(t + "/a.safetensors", "pooled_prompt_embeds")));
  r = run_command(
      bin + " run --model-dir " + dir + " --prompt-embeds " + t + "/e.safetensors --noise " + t +
      "/a.safetensors --height 96 --width 128 --steps 2 --nproc 1 --dump " + t + "/b.safetensors");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_LE(
      (tensor_in(t + "/b.safetensors", "latents") - tensor_in(t + "/a.safetensors", "latents"))
          .abs()
          .max()
          .item<double>(),
      1e-2 * tensor_in(t + "/a.safetensors", "latents").abs().max().item<double>())
      << "one rank against two, bf16";
  r = run_command(bin + " decode --model-dir " + dir + " --latents " + t +
                  "/a.safetensors --height 96 --width 128 --out " + t + "/d.png");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(read_file(t + "/d.png"), read_file(t + "/a.png"))
      << "decode of the dumped latents is the run's picture";
}

// The decode split by rows over 3 ranks (latent 10 rows: bands of 4, 3 and
// 3) draws the picture one rank draws, in fp32 within one level of 255.
TEST(FluxPipeline, ParallelDecodeDrawsTheOneRankPicture) {
  SPDIT_SKIP_WITHOUT_SENTENCEPIECE();
  if (access(SPDIT_BIN, X_OK) != 0) GTEST_SKIP() << "the spdit command is not built here";
  TempDir tmp;
  const std::string run =
      std::string(SPDIT_BIN) + " run --model-dir " + model_dir() +
      " --prompt 'a blue square' --height 80 --width 112 --steps 2 --dtype fp32 --nproc 3";
  auto on =
      run_command(run + " --dump " + tmp.path + "/on.safetensors --json " + tmp.path + "/on.json");
  ASSERT_EQ(on.code, 0) << on.output;
  EXPECT_NE(on.output.find("decode (3 ranks)"), std::string::npos) << on.output;
  EXPECT_NE(read_file(tmp.path + "/on.json").find("\"decode_ranks\": 3"), std::string::npos);
  auto off = run_command(run + " --vae-parallel off --dump " + tmp.path + "/off.safetensors");
  ASSERT_EQ(off.code, 0) << off.output;
  EXPECT_TRUE(at::equal(tensor_in(tmp.path + "/on.safetensors", "latents"),
                        tensor_in(tmp.path + "/off.safetensors", "latents")));
  const auto a = tensor_in(tmp.path + "/on.safetensors", "image").to(at::kInt);
  const auto b = tensor_in(tmp.path + "/off.safetensors", "image").to(at::kInt);
  ASSERT_EQ(a.sizes(), b.sizes());
  EXPECT_LE((a - b).abs().max().item<int>(), 1);
  EXPECT_GT(a.to(at::kFloat).std().item<double>(), 1.0) << "a decoded picture, not a flat field";
  // The same with each rank keeping a third of the transformer's blocks: the
  // same latents, bit for bit, and --check still passes.
  auto sharded =
      run_command(run + " --shard-weights --check --dump " + tmp.path + "/sh.safetensors");
  ASSERT_EQ(sharded.code, 0) << sharded.output;
  EXPECT_NE(sharded.output.find("PASS"), std::string::npos) << sharded.output;
  EXPECT_TRUE(at::equal(tensor_in(tmp.path + "/sh.safetensors", "latents"),
                        tensor_in(tmp.path + "/on.safetensors", "latents")));
  // Misused: a value it does not know, and the flag without a model folder.
  auto bad = run_command(run + " --vae-parallel maybe");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.output.find("--vae-parallel"), std::string::npos) << bad.output;
  bad = run_command(std::string(SPDIT_BIN) + " run --preset tiny --nproc 1 --vae-parallel on");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.output.find("--model-dir"), std::string::npos) << bad.output;
}

TEST(FluxPipeline, MistakesAreSaidClearly) {
  SPDIT_SKIP_WITHOUT_SENTENCEPIECE();
  if (access(SPDIT_BIN, X_OK) != 0) GTEST_SKIP() << "the spdit command is not built here";
  TempDir tmp;
  const std::string bin = SPDIT_BIN, dir = model_dir();
  // A folder missing its autoencoder.
  const std::string broken = tmp.path + "/broken";
  run_command("cp -r " + dir + " " + broken + " && rm -rf " + broken + "/vae");
  auto r = run_command(bin + " run --model-dir " + broken +
                       " --prompt x --height 64 --width 64 --nproc 1");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("lacks vae/"), std::string::npos) << r.output;
  r = run_command(bin + " run --prompt x --nproc 1 --preset tiny");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("give the model folder with --model-dir"), std::string::npos) << r.output;
  r = run_command(bin + " run --model-dir " + dir + " --preset tiny --prompt x --nproc 1");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("--model-dir runs the model folder's own pipeline"), std::string::npos)
      << r.output;
  r = run_command(bin + " run --model-dir " + dir + " --nproc 1");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("--model-dir needs the prompt"), std::string::npos) << r.output;
  // A prompt longer than CLIP's 77 tokens is cut with a warning, and runs.
  std::string long_prompt;
  for (int i = 0; i < 60; ++i) long_prompt += "red blue ";
  r = run_command(bin + " run --model-dir " + dir + " --prompt '" + long_prompt +
                  "' --height 64 --width 64 --steps 1 --nproc 1");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("truncated"), std::string::npos) << r.output;
}

// schnell: no guidance embedder, no time shift, 4 steps and 256 T5 tokens by
// default; --guidance is not used by it.
TEST(FluxPipeline, SchnellRunsItsOwnDefaults) {
  SPDIT_SKIP_WITHOUT_SENTENCEPIECE();
  if (access(SPDIT_BIN, X_OK) != 0) GTEST_SKIP() << "the spdit command is not built here";
  TempDir tmp;
  pipelines::NewModelOptions o{"flux", "tiny", 9};
  o.variant = "schnell";
  pipelines::write_new_model(tmp.path + "/schnell", o);
  EXPECT_NE(read_file(tmp.path + "/schnell/scheduler/scheduler_config.json")
                .find("\"use_dynamic_shifting\": false"),
            std::string::npos);
  auto r = run_command(
      std::string(SPDIT_BIN) + " run --model-dir " + tmp.path +
      "/schnell --prompt 'a green square' --height 64 --width 64 --nproc 2 --check --dump " +
      tmp.path + "/s.safetensors");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("(flux schnell, bf16) 64x64, 4 steps"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("PASS"), std::string::npos) << r.output;
  EXPECT_EQ(tensor_in(tmp.path + "/s.safetensors", "prompt_embeds").size(1), 256);
  o.model = "wan";
  EXPECT_NE(test::error_of([&] {
              pipelines::write_new_model(tmp.path + "/w", o);
            }).find("the variants are FLUX.1's"),
            std::string::npos);
}

// True CFG (diffusers' true_cfg_scale with a negative prompt): the formula
// step by step, off when it should be, and the same result serial, under SP
// and with its two branches on two halves of the ranks (--cfg 2).
TEST(FluxPipeline, TrueCfgIsDiffusersFormula) {
  SPDIT_SKIP_WITHOUT_SENTENCEPIECE();
  pipelines::FluxImagePipeline flux(pipelines::ModelDir::open(model_dir()), at::kFloat);
  const auto grid = flux.grid(64, 64);
  const auto noise = flux.initial_noise(grid, 3);
  const auto pos = flux.encode("a red circle"), neg = flux.encode("");
  const auto plain = flux.denoise(noise, pos, grid, 2, 3.5);
  // Off: no negative, or a scale of 1.
  EXPECT_TRUE(at::equal(flux.denoise(noise, pos, grid, 2, 3.5, {nullptr, 4.0}), plain));
  EXPECT_TRUE(at::equal(flux.denoise(noise, pos, grid, 2, 3.5, {&neg, 1.0}), plain));
  // The prompt as its own negative: neg + s * 0 is the prompt's velocity.
  EXPECT_TRUE(at::equal(flux.denoise(noise, pos, grid, 2, 3.5, {&pos, 4.0}), plain));
  // One step by hand: x + (sigma_1 - sigma_0) * (neg + s (pos - neg)).
  const auto guided = flux.denoise(noise, pos, grid, 1, 3.5, {&neg, 4.0});
  const auto pos_step = flux.denoise(noise, pos, grid, 1, 3.5);
  const auto neg_step = flux.denoise(noise, neg, grid, 1, 3.5);
  // Each step is x + dt * v, so the guided step is neg_step + s (pos_step - neg_step).
  const auto expected = neg_step + 4.0 * (pos_step - neg_step);
  EXPECT_LE((guided - expected).abs().max().item<double>(),
            1e-5 * expected.abs().max().item<double>());
  EXPECT_GT((guided - pos_step).abs().max().item<double>(), 1e-3) << "guidance changes the step";
  // A negative prompt of the wrong width is named.
  pipelines::FluxPrompt bad{at::zeros({1, 4, 7}), neg.pooled_prompt_embeds};
  try {
    flux.denoise(noise, pos, grid, 1, 3.5, {&bad, 4.0});
    ADD_FAILURE() << "a negative prompt of the wrong width ran";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("negative_prompt_embeds"), std::string::npos) << e.what();
  }
}

TEST(FluxPipeline, TrueCfgUnderSpAndOnTheCfgAxisMatchesOneRank) {
  SPDIT_SKIP_WITHOUT_SENTENCEPIECE();
  if (access(SPDIT_BIN, X_OK) != 0) GTEST_SKIP() << "the spdit command is not built here";
  TempDir tmp;
  const std::string bin = SPDIT_BIN, t = tmp.path;
  const std::string base = bin + " run --model-dir " + model_dir() +
                           " --prompt 'a red circle' --negative-prompt 'a blue square'" +
                           " --cfg-scale 3 --steps 2 --dtype fp32 --check";
  // 80x112: 35 tokens, which 2 does not divide.
  for (const char* layout : {" --nproc 1", " --nproc 2 --ulysses 2", " --nproc 2 --cfg 2",
                             " --nproc 4 --cfg 2 --ring 2", " --nproc 4 --ulysses 2 --ring 2"}) {
    for (const char* size : {" --height 64 --width 64", " --height 80 --width 112"}) {
      auto r = run_command(base + layout + size);
      EXPECT_EQ(r.code, 0) << layout << size << "\n" << r.output;
      EXPECT_NE(r.output.find("PASS"), std::string::npos) << layout << size << "\n" << r.output;
      EXPECT_NE(r.output.find("true CFG 3"), std::string::npos) << r.output;
    }
  }
  // The two halves give the serial result bit for bit (one all-gather, the
  // same combination in the same order).
  auto serial = run_command(base + " --nproc 1 --height 64 --width 64 --dump " + t + "/s.st");
  auto halves =
      run_command(base + " --nproc 2 --cfg 2 --height 64 --width 64 --dump " + t + "/h.st");
  ASSERT_EQ(serial.code, 0) << serial.output;
  ASSERT_EQ(halves.code, 0) << halves.output;
  EXPECT_TRUE(at::equal(tensor_in(t + "/s.st", "latents"), tensor_in(t + "/h.st", "latents")));
  // The dump carries the negative pair; a run from it reproduces the run.
  auto again =
      run_command(bin + " run --model-dir " + model_dir() + " --prompt-embeds " + t +
                  "/s.st --noise " + t + "/s.st --cfg-scale 3 --steps 2 --dtype fp32 --nproc 1 " +
                  "--height 64 --width 64 --dump " + t + "/a.st");
  ASSERT_EQ(again.code, 0) << again.output;
  EXPECT_TRUE(at::equal(tensor_in(t + "/s.st", "latents"), tensor_in(t + "/a.st", "latents")));
}

TEST(FluxPipeline, TrueCfgMistakesAreSaid) {
  SPDIT_SKIP_WITHOUT_SENTENCEPIECE();
  if (access(SPDIT_BIN, X_OK) != 0) GTEST_SKIP() << "the spdit command is not built here";
  TempDir tmp;
  const std::string bin = SPDIT_BIN, t = tmp.path;
  const std::string base =
      bin + " run --model-dir " + model_dir() + " --height 64 --width 64 --steps 1 --dtype fp32";
  auto said = [](const std::string& command, const std::string& words) {
    auto r = run_command(command);
    EXPECT_NE(r.code, 0) << command << "\n" << r.output;
    EXPECT_NE(r.output.find(words), std::string::npos) << command << "\n" << r.output;
  };
  // A negative prompt that nothing would use.
  said(base + " --prompt x --negative-prompt y --nproc 1", "--negative-prompt is true CFG's");
  // Two halves with one branch.
  said(base + " --prompt x --cfg 2 --nproc 2", "--cfg 2 runs true CFG's two branches");
  // Halves of an odd world.
  said(base + " --prompt x --cfg 2 --cfg-scale 3 --nproc 3", "does not divide");
  // Embeddings without negatives, when true CFG is asked for.
  auto r =
      run_command(bin + " encode --model-dir " + model_dir() + " --prompt x --out " + t + "/e.st");
  ASSERT_EQ(r.code, 0) << r.output;
  said(base + " --prompt-embeds " + t + "/e.st --cfg-scale 3 --nproc 1",
       "holds no tensor 'negative_prompt_embeds'");
  said(base + " --prompt-embeds " + t + "/e.st --cfg-scale 3 --negative-prompt y --nproc 1",
       "--negative-prompt is text for the encoders");
}
