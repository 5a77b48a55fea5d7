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
