// The whole Wan2.1 pipeline from a new-model folder, as a user runs it:
// prompt -> video under SP (4 ranks, Ulysses 2 x Ring 2, and the CFG axis)
// with parity against one rank, an MP4 that ffprobe reads back with the
// right frames, size and codec, the interop files reproducing the run, and
// the mistakes a user makes.
#include <dirent.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <functional>

#include "spdit/checkpoints/checkpoint.h"
#include "spdit/pipelines/new_model.h"
#include "spdit/pipelines/wan_video_pipeline.h"
#include "support/sanitizers.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"

using namespace spdit;
using test::run_command;
using test::TempDir;

namespace {

// One folder for the whole suite: writing it takes a moment.
const std::string& model_dir() {
  static TempDir tmp;
  static std::string dir = [] {
    const std::string d = tmp.path + "/wan-tiny";
    pipelines::write_new_model(d, {"wan", "tiny", 7});
    return d;
  }();
  return dir;
}

bool have_ffprobe() { return std::system("command -v ffprobe >/dev/null 2>&1") == 0; }

std::string probe(const std::string& mp4) {
  return run_command(
             "ffprobe -v error -count_frames -select_streams v:0 -show_entries "
             "stream=codec_name,width,height,nb_read_frames -of default=nw=1 "
             "'" +
             mp4 + "'")
      .output;
}

int count_files(const std::string& dir, const std::string& suffix) {
  int n = 0;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      n += name.size() > suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    }
    closedir(d);
  }
  return n;
}

at::Tensor tensor_in(const std::string& file, const std::string& name) {
  return checkpoints::Checkpoint::open(file).tensor(name).clone();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

#define REQUIRE_BIN()                 \
  SPDIT_SKIP_WITHOUT_SENTENCEPIECE(); \
  if (access(SPDIT_BIN, X_OK) != 0) GTEST_SKIP() << "the spdit command is not built here"

}  // namespace

TEST(WanPipeline, new_model_writes_every_part_of_a_diffusers_wan_folder) {
  const auto files = pipelines::WanFiles::find(model_dir());
  EXPECT_EQ(files.layout, "diffusers");
  EXPECT_TRUE(pipelines::WanFiles::is_wan_folder(model_dir()));
  EXPECT_NE(files.scheduler_config, "");
  pipelines::WanVideoPipeline wan(files);
  EXPECT_EQ(wan.scheduler_config().flow_shift, 3.0);
  const auto e = wan.encode("a red fox");
  EXPECT_EQ(e.sizes(), (std::vector<int64_t>{1, 512, wan.text_dim()}));
}

TEST(WanPipeline, prompt_to_mp4_on_four_ranks_ulysses_2_ring_2_matches_one_rank) {
  REQUIRE_BIN();
  TempDir tmp;
  const std::string mp4 = tmp.path + "/fox.mp4";
  auto r = run_command(std::string(SPDIT_BIN) + " run --model-dir " + model_dir() +
                       " --prompt 'a red fox runs in the snow' --negative-prompt 'blurry' "
                       "--frames 9 --height 64"
                       " --width 64 --steps 3 --nproc 4 --ulysses 2 --ring 2 --check --out " +
                       mp4 + " --frames-out " + tmp.path + "/frames");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("PASS"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ulysses 2 x ring 2"), std::string::npos) << r.output;
  EXPECT_EQ(count_files(tmp.path + "/frames", ".png"), 9);
  if (!have_ffprobe())
    GTEST_SKIP() << "ffprobe is not installed (apt-get install ffmpeg): the "
                    "MP4 is not read back";
  const auto info = probe(mp4);
  EXPECT_NE(info.find("codec_name=h264"), std::string::npos) << info;
  EXPECT_NE(info.find("width=64"), std::string::npos) << info;
  EXPECT_NE(info.find("height=64"), std::string::npos) << info;
  EXPECT_NE(info.find("nb_read_frames=9"), std::string::npos) << info;
}

TEST(WanPipeline, guidance_on_the_cfg_axis_and_the_euler_scheduler_match_one_rank) {
  REQUIRE_BIN();
  auto r = run_command(std::string(SPDIT_BIN) + " run --model-dir " + model_dir() +
                       " --prompt 'a boat' --frames 5 --height 48 --width 64 "
                       "--steps 2 --nproc 4 --cfg 2"
                       " --ulysses 2 --check");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("cfg 2 x ulysses 2 x ring 1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("PASS"), std::string::npos) << r.output;
  r = run_command(std::string(SPDIT_BIN) + " run --model-dir " + model_dir() +
                  " --prompt 'a boat' --frames 5 --height 48 --width 64 "
                  "--steps 2 --nproc 2 --ring 2"
                  " --scheduler euler --check");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("euler"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("PASS"), std::string::npos) << r.output;
}

TEST(WanPipeline, dumped_embeddings_and_noise_reproduce_the_run) {
  REQUIRE_BIN();
  TempDir tmp;
  const std::string bin = SPDIT_BIN, t = tmp.path;
  auto r = run_command(bin + " run --model-dir " + model_dir() +
                       " --prompt 'a lighthouse' --frames 5 --height 32 "
                       "--width 48 --steps 2 --nproc 1 --dump " +
                       t + "/a.safetensors");
  ASSERT_EQ(r.code, 0) << r.output;
  r = run_command(bin + " run --model-dir " + model_dir() + " --prompt-embeds " + t +
                  "/a.safetensors --noise " + t +
                  "/a.safetensors --frames 5 --height 32 --width 48 --steps 2 "
                  "--nproc 1 --dump " +
                  t + "/b.safetensors");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(at::equal(tensor_in(t + "/a.safetensors", "latents"),
                        tensor_in(t + "/b.safetensors", "latents")));
  EXPECT_TRUE(at::equal(tensor_in(t + "/a.safetensors", "video"),
                        tensor_in(t + "/b.safetensors", "video")));
  EXPECT_EQ(tensor_in(t + "/a.safetensors", "video").sizes(), (std::vector<int64_t>{5, 32, 48, 3}));
}

// The video decoded by 3 ranks together (latent rows 4: bands of 2, 1 and
// 1, each rank's own causal cache) is the one-rank video within one level of
// 255 in fp32; sharded transformer weights give the same latents bit for bit.
TEST(WanPipeline, parallel_decode_and_sharded_weights_match_one_rank) {
  REQUIRE_BIN();
  TempDir tmp;
  const std::string run = std::string(SPDIT_BIN) + " run --model-dir " + model_dir() +
                          " --prompt 'a lighthouse' --frames 5 --height 32 --width 48 --steps 2"
                          " --dtype fp32 --nproc 3 --ring 3";
  auto on = run_command(run + " --dump " + tmp.path + "/on.safetensors");
  ASSERT_EQ(on.code, 0) << on.output;
  EXPECT_NE(on.output.find("decode (3 ranks)"), std::string::npos) << on.output;
  auto off = run_command(run + " --vae-parallel off --shard-weights --check --dump " + tmp.path +
                         "/off.safetensors");
  ASSERT_EQ(off.code, 0) << off.output;
  EXPECT_NE(off.output.find("PASS"), std::string::npos) << off.output;
  EXPECT_TRUE(at::equal(tensor_in(tmp.path + "/on.safetensors", "latents"),
                        tensor_in(tmp.path + "/off.safetensors", "latents")));
  const auto a = tensor_in(tmp.path + "/on.safetensors", "video").to(at::kInt);
  const auto b = tensor_in(tmp.path + "/off.safetensors", "video").to(at::kInt);
  ASSERT_EQ(a.sizes(), b.sizes());
  EXPECT_LE((a - b).abs().max().item<int>(), 1);
}

TEST(WanPipeline, mistakes_are_named) {
  REQUIRE_BIN();
  const std::string base = std::string(SPDIT_BIN) + " run --model-dir " + model_dir() +
                           " --prompt x --steps 1 --nproc 1";
  auto r = run_command(base + " --frames 8 --height 32 --width 32");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("--frames 8: Wan's VAE makes 1 + 4k frames"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("try 5 or 9"), std::string::npos) << r.output;
  r = run_command(base + " --frames 5 --height 40 --width 32");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("multiples of 16"), std::string::npos) << r.output;
  r = run_command(base + " --frames 5 --height 32 --width 32 --scheduler ddim");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("--scheduler"), std::string::npos) << r.output;
  r = run_command(base + " --frames 5 --height 32 --width 32 --cfg-scale 4");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("--guidance"), std::string::npos) << r.output;
}

TEST(WanPipeline, a_folder_that_is_not_wan_names_what_it_lacks) {
  TempDir tmp;
  const auto msg = error_of([&] { pipelines::WanFiles::find(tmp.path); });
  EXPECT_NE(msg.find("models_t5_umt5-xxl-enc-bf16.pth"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Wan2.1_VAE.pth"), std::string::npos) << msg;
}

TEST(WanPipeline, the_original_release_layout_runs_from_wans_own_files) {
  REQUIRE_BIN();
  // Wan's names everywhere: the transformer (config.json + safetensors),
  // Wan2.1_VAE.pth and models_t5_umt5-xxl-enc-bf16.pth (torch.save zips from
  // the reference scripts), google/umt5-xxl/spiece.model.
  TempDir tmp;
  const std::string fx = SPDIT_FIXTURES, d = tmp.path + "/Wan2.1-T2V-tiny";
  const std::string setup =
      "mkdir -p " + d + "/google/umt5-xxl && ln -s " + fx + "/wan_tiny/config.json " + d +
      "/config.json && ln -s " + fx + "/wan_tiny/diffusion_pytorch_model.safetensors " + d +
      "/diffusion_pytorch_model.safetensors && ln -s " + fx +
      "/wan_vae_tiny/original/Wan2.1_VAE.pth " + d + "/Wan2.1_VAE.pth && ln -s " + fx +
      "/wan_text/umt5_wan.pth " + d + "/models_t5_umt5-xxl-enc-bf16.pth && ln -s " + fx +
      "/text/t5_tokenizer/spiece.model " + d + "/google/umt5-xxl/spiece.model";
  ASSERT_EQ(std::system(setup.c_str()), 0);
  const auto files = pipelines::WanFiles::find(d);
  EXPECT_EQ(files.layout, "wan-original");
  const std::string mp4 = tmp.path + "/v.mp4";
  auto r = run_command(std::string(SPDIT_BIN) + " run --model-dir " + d +
                       " --prompt 'a fox' --frames 5 --height 32 --width 32 "
                       "--steps 2 --nproc 2 --ulysses 2 --check"
                       " --out " +
                       mp4);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("wan-original"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("PASS"), std::string::npos) << r.output;
  if (!have_ffprobe())
    GTEST_SKIP() << "ffprobe is not installed (apt-get install ffmpeg): the "
                    "MP4 is not read back";
  EXPECT_NE(probe(mp4).find("nb_read_frames=5"), std::string::npos) << probe(mp4);
}

TEST(WanPipeline, encode_and_decode_commands_reproduce_the_run) {
  REQUIRE_BIN();
  TempDir tmp;
  const std::string bin = SPDIT_BIN, t = tmp.path,
                    size = " --frames 5 --height 32 --width 32 --steps 2 --nproc 1";
  auto r = run_command(bin + " run --model-dir " + model_dir() +
                       " --prompt 'a kite' --negative-prompt 'rain'" + size + " --dump " + t +
                       "/a.safetensors");
  ASSERT_EQ(r.code, 0) << r.output;
  r = run_command(bin + " encode --model-dir " + model_dir() +
                  " --prompt 'a kite' --negative-prompt 'rain' --out " + t + "/e.safetensors");
  ASSERT_EQ(r.code, 0) << r.output;
  // The same encoder; `run` computes with one thread per rank, `encode` with
  // LibTorch's default: sums may round in another order.
  for (const char* name : {"prompt_embeds", "negative_prompt_embeds"}) {
    EXPECT_TRUE(at::allclose(tensor_in(t + "/a.safetensors", name),
                             tensor_in(t + "/e.safetensors", name), 1e-5, 1e-6))
        << name;
  }
  r = run_command(bin + " decode --model-dir " + model_dir() + " --latents " + t +
                  "/a.safetensors --out " + t + "/d.mp4");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("(5 frames)"), std::string::npos) << r.output;
}
