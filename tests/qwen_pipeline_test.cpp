// Qwen-Image's pipeline. In process: its pieces around the transformer
// against diffusers' numbers (scripts/reference/qwen_pipeline_reference.py:
// the packed noise, the image's RoPE positions, one true-CFG step of the
// dynamic-shift schedule, the one-frame decode with Qwen's mean and std
// through the original Wan VAE). As a user runs it: a new-model folder,
// prompt embeddings from a file, 4 ranks (Ulysses 2 x Ring 2) against one
// rank, a PNG read back, the CFG axis, banded decode and sharded weights,
// and the mistakes a user makes.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <png.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "spdit/checkpoints/checkpoint.h"
#include "spdit/checkpoints/model_checkpoint.h"
#include "spdit/models/qwen_image.h"
#include "spdit/pipelines/new_model.h"
#include "spdit/pipelines/qwen_image_latents.h"
#include "spdit/pipelines/qwen_image_pipeline.h"
#include "spdit/vae/wan_vae_loader.h"
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
    const std::string d = tmp.path + "/qwen-image-tiny";
    pipelines::write_new_model(d, {"qwen-image", "tiny", 5});
    return d;
  }();
  return dir;
}

at::Tensor fixture(const std::string& name) {
  return checkpoints::Checkpoint::open(std::string(SPDIT_FIXTURES) +
                                       "/qwen_pipeline_io.safetensors")
      .tensor(name)
      .clone();
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

// The fixture's picture: 48x80 pixels, latents 6x10, 3x5 packed tokens.
pipelines::FluxLatentGrid fixture_grid() { return pipelines::flux_latent_grid(48, 80); }

// Prompt embeddings as an encoder would give them, for the tiny model's
// 32-wide text: the prompt padded to 7 tokens (mask 0 on the last two), a
// 4-token negative prompt.
std::string write_embeddings(const std::string& dir) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  const std::string path = dir + "/embeds.safetensors";
  checkpoints::write_safetensors(
      path, {{"prompt_embeds", at::randn({1, 7, 32}, gen)},
             {"prompt_embeds_mask", at::tensor({1, 1, 1, 1, 1, 0, 0}, at::kLong).view({1, 7})},
             {"negative_prompt_embeds", at::randn({1, 4, 32}, gen)},
             {"negative_prompt_embeds_mask", at::ones({1, 4}, at::kLong)}});
  return path;
}

// Reads a PNG back with libpng: (H, W, 3) uint8, or undefined if unreadable.
at::Tensor read_png(const std::string& path) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&image, path.c_str())) return {};
  image.format = PNG_FORMAT_RGB;
  auto pixels = at::empty(
      {static_cast<int64_t>(image.height), static_cast<int64_t>(image.width), 3}, at::kByte);
  if (!png_image_finish_read(&image, nullptr, pixels.data_ptr(), 0, nullptr)) return {};
  return pixels;
}

#define REQUIRE_BIN() \
  if (access(SPDIT_BIN, X_OK) != 0) GTEST_SKIP() << "the spdit command is not built here"

}  // namespace

// ---- the pieces, against diffusers ------------------------------------------

TEST(QwenImagePieces, packed_noise_is_prepare_latents_draw_in_the_models_dtype) {
  const auto files = pipelines::QwenImageFiles::find(model_dir());
  pipelines::QwenImagePipeline qwen(files, at::kBFloat16, /*with_text=*/false);
  const auto grid = qwen.grid(48, 80);
  EXPECT_EQ(grid.tokens(), 15);
  EXPECT_TRUE(at::equal(qwen.initial_noise(grid, 7), fixture("noise_bf16").to(at::kFloat)));
  pipelines::QwenImagePipeline qwen32(files, at::kFloat, /*with_text=*/false);
  EXPECT_TRUE(at::equal(qwen32.initial_noise(grid, 7), fixture("noise")));
}

TEST(QwenImagePieces, image_and_text_rope_match_qwen_embed_rope_with_scale_rope) {
  const auto grid = fixture_grid();
  EXPECT_EQ(pipelines::qwen_img_shape(grid), (std::array<int64_t, 3>{1, 3, 5}));
  // The released model's axes; rows -2..0 and columns -3..1 are centred.
  models::QwenEmbedRope rope(std::vector<int64_t>{16, 56, 56});
  auto out = rope->call({Value(pipelines::qwen_image_ids(grid)), Value(int64_t{5})});
  // diffusers takes the angles in fp32, spdit in fp64: a few ulps apart.
  EXPECT_TRUE(at::allclose(out[0].tensor(), fixture("rope.img_cos"), 0, 1e-5));
  EXPECT_TRUE(at::allclose(out[1].tensor(), fixture("rope.img_sin"), 0, 1e-5));
  EXPECT_TRUE(at::allclose(out[2].tensor(), fixture("rope.txt_cos"), 0, 1e-5));
  EXPECT_TRUE(at::allclose(out[3].tensor(), fixture("rope.txt_sin"), 0, 1e-5));
}

// The transformer the pipeline drives, with the pipeline's positions (img_ids
// for img_shapes [(1, 3, 5)]), against diffusers' QwenImageTransformer2DModel
// (scripts/reference/qwen_transformer_reference.py: hidden 32, 2 blocks, bf16
// weights computed in fp32).
TEST(QwenImagePieces, transformer_with_the_pipelines_positions_matches_diffusers) {
  const std::string dir = std::string(SPDIT_FIXTURES) + "/qwen_tiny";
  auto ckpt = checkpoints::Checkpoint::open(dir);
  const auto found = checkpoints::identify(ckpt);
  ASSERT_EQ(found.model, "qwen-image");
  auto model = checkpoints::build_model(found);
  checkpoints::load_checkpoint(*model, ckpt, found, at::kFloat);
  const auto io =
      checkpoints::Checkpoint::open(std::string(SPDIT_FIXTURES) + "/qwen_tiny_io.safetensors");
  at::NoGradGuard no_grad;
  const auto want = io.tensor("output");
  auto rel_err = [&](const at::Tensor& img_ids) {
    const auto out =
        model
            ->call({io.tensor("hidden_states").clone()},
                   {{"encoder_hidden_states", io.tensor("encoder_hidden_states").clone()},
                    {"timestep", io.tensor("timestep").clone()},
                    {"img_ids", img_ids}})
            .tensor();
    return ((out - want).abs().max() / want.abs().max()).item<double>();
  };
  EXPECT_LT(rel_err(pipelines::qwen_image_ids(fixture_grid())), 1e-5);
  // FLUX.1's uncentred positions are not Qwen-Image's: the check can tell.
  EXPECT_GT(rel_err(pipelines::flux_latent_image_ids(fixture_grid())), 1e-3);
}

TEST(QwenImagePieces, one_true_cfg_step_of_the_folders_schedule_matches_diffusers) {
  const auto files = pipelines::QwenImageFiles::find(model_dir());
  pipelines::QwenImagePipeline qwen(files, at::kBFloat16, /*with_text=*/false);
  const auto s = qwen.schedule(4, fixture_grid());
  EXPECT_TRUE(at::allclose(s.sigmas(), fixture("sigmas"), 0, 1e-7));
  EXPECT_TRUE(at::allclose(s.timesteps(), fixture("timesteps"), 0, 1e-4));
  const auto stepped =
      pipelines::qwen_image_step(s, 1, fixture("noise"), fixture("cond"), fixture("uncond"), 4.0);
  EXPECT_TRUE(at::allclose(stepped, fixture("stepped"), 1e-6, 1e-6))
      << (stepped - fixture("stepped")).abs().max();
  // Without a negative prompt the conditional velocity alone steps.
  const auto plain = pipelines::qwen_image_step(s, 1, fixture("noise"), fixture("cond"), {}, 4.0);
  EXPECT_TRUE(at::allclose(plain, s.step(fixture("cond"), 1, fixture("noise"))));
  EXPECT_FALSE(at::allclose(plain, stepped));
}

TEST(QwenImagePieces, one_frame_decode_with_qwens_mean_and_std_matches_the_original_vae) {
  // The Wan VAE fixture's weights under Qwen-Image's class name.
  TempDir tmp;
  const std::string fx = std::string(SPDIT_FIXTURES) + "/wan_vae_tiny/diffusers";
  ASSERT_EQ(std::system(
                ("ln -s " + fx + "/diffusion_pytorch_model.safetensors " + tmp.path + "/").c_str()),
            0);
  std::ifstream in(fx + "/config.json");
  auto config = nlohmann::json::parse(in);
  config["_class_name"] = "AutoencoderKLQwenImage";
  std::ofstream(tmp.path + "/config.json") << config.dump();
  auto vae = vae::load_wan_vae(tmp.path, at::kFloat).model;

  const auto grid = fixture_grid();
  const auto z = pipelines::unpack_qwen_latents(fixture("stepped"), grid);
  EXPECT_EQ(z.sizes(), (std::vector<int64_t>{1, 16, 1, 6, 10}));
  EXPECT_TRUE(at::allclose(vae::denormalize_wan_latents(z, vae->config()), fixture("denormalized"),
                           1e-6, 1e-6));
  const auto image = pipelines::qwen_decode_latents(vae, fixture("stepped"), grid);
  ASSERT_EQ(image.sizes(), (std::vector<int64_t>{1, 48, 80, 3}));
  // fp32 sums in another order may round a pixel to the next level.
  EXPECT_LE((image.to(at::kLong) - fixture("image")).abs().max().item<int64_t>(), 1);
}

TEST(QwenImagePieces, masked_prompt_tokens_are_dropped_as_encode_prompt_does) {
  const auto e = at::arange(15, at::kFloat).view({1, 5, 3});
  const auto kept = pipelines::keep_masked_tokens(
      {e, at::tensor({1, 1, 0, 1, 0}, at::kLong).view({1, 5})}, "prompt_embeds");
  EXPECT_TRUE(at::equal(kept.embeds, e.index_select(1, at::tensor({0, 1, 3}, at::kLong))));
  EXPECT_TRUE(at::equal(kept.mask, at::ones({1, 3}, at::kLong)));
  EXPECT_TRUE(at::equal(pipelines::keep_masked_tokens({e, {}}, "prompt_embeds").embeds, e));
  auto msg = error_of([&] {
    pipelines::keep_masked_tokens({e, at::zeros({1, 5}, at::kLong)}, "negative_prompt_embeds");
  });
  EXPECT_NE(msg.find("negative_prompt_embeds_mask is all zeros"), std::string::npos) << msg;
  msg = error_of([&] { pipelines::keep_masked_tokens({e, at::ones({1, 4})}, "prompt_embeds"); });
  EXPECT_NE(msg.find("prompt_embeds_mask must be (1, 5)"), std::string::npos) << msg;
}

TEST(QwenImagePieces, a_masked_prompt_runs_as_its_valid_tokens_alone) {
  pipelines::QwenImagePipeline qwen(pipelines::QwenImageFiles::find(model_dir()), at::kFloat,
                                    /*with_text=*/false);
  const auto grid = qwen.grid(32, 32);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(2);
  const auto e = at::randn({1, 6, 32}, gen), neg = at::randn({1, 3, 32}, gen);
  const auto mask = at::tensor({1, 1, 1, 1, 0, 0}, at::kLong).view({1, 6});
  const auto noise = qwen.initial_noise(grid, 1);
  const auto masked = qwen.denoise(noise, {{e, mask}, {neg, {}}}, grid, 2, 4.0);
  const auto trimmed = qwen.denoise(noise, {{e.narrow(1, 0, 4), {}}, {neg, {}}}, grid, 2, 4.0);
  EXPECT_TRUE(at::equal(masked, trimmed));
  // ... and the padding would have mattered, and so does the negative prompt.
  EXPECT_FALSE(at::allclose(masked, qwen.denoise(noise, {{e, {}}, {neg, {}}}, grid, 2, 4.0)));
  EXPECT_FALSE(at::allclose(masked, qwen.denoise(noise, {{e, mask}, {}}, grid, 2, 4.0)));
}

TEST(QwenImagePieces, new_model_writes_a_diffusers_qwen_image_folder) {
  EXPECT_TRUE(pipelines::QwenImageFiles::is_qwen_image_folder(model_dir()));
  const auto files = pipelines::QwenImageFiles::find(model_dir());
  EXPECT_EQ(files.text_encoder, model_dir() + "/text_encoder");  // Qwen2.5-VL's text side
  EXPECT_EQ(files.tokenizer, model_dir() + "/tokenizer");
  std::ifstream in(model_dir() + "/vae/config.json");
  EXPECT_EQ(nlohmann::json::parse(in)["_class_name"], "AutoencoderKLQwenImage");
  pipelines::QwenImagePipeline qwen(files, at::ScalarType::Undefined, /*with_text=*/false);
  EXPECT_EQ(qwen.dtype(), at::kBFloat16);
  EXPECT_EQ(qwen.scheduler_config().max_shift, 0.9);
  EXPECT_EQ(qwen.scheduler_config().max_image_seq_len, 8192);
  EXPECT_EQ(qwen.scheduler_config().shift_terminal, 0.02);
  EXPECT_TRUE(qwen.scheduler_config().use_dynamic_shifting);
  // The folder's text side turns a prompt into embeddings as wide as the
  // transformer's text input, one row per token (the template's prefix dropped).
  pipelines::QwenImagePipeline with_text(files);
  const auto e = with_text.encode("a red fox");
  EXPECT_EQ(e.embeds.dim(), 3);
  EXPECT_EQ(e.embeds.size(2), 32);
  EXPECT_GE(e.embeds.size(1), 3);
  EXPECT_EQ(e.mask.sum().item<int64_t>(), e.embeds.size(1));
  // Without one, the message says how to go on.
  auto without = files;
  without.text_encoder.clear();
  const auto msg = error_of([&] { pipelines::QwenImagePipeline no_text(without); });
  EXPECT_NE(msg.find("--prompt-embeds"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Qwen2.5-VL"), std::string::npos) << msg;
}

// ---- as a user runs it ------------------------------------------------------

TEST(QwenImagePipeline, embeddings_to_png_on_four_ranks_ulysses_2_ring_2_match_one_rank) {
  REQUIRE_BIN();
  TempDir tmp;
  const std::string png = tmp.path + "/fox.png", dump = tmp.path + "/run.safetensors";
  auto r = run_command(std::string(SPDIT_BIN) + " run --model-dir " + model_dir() +
                       " --prompt-embeds " + write_embeddings(tmp.path) +
                       " --height 64 --width 96 --steps 3 --nproc 4 --ulysses 2 --ring 2 --check"
                       " --out " +
                       png + " --dump " + dump);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("PASS"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ulysses 2 x ring 2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("true CFG 4"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("decode (4 ranks)"), std::string::npos) << r.output;
  const auto pixels = read_png(png);
  ASSERT_TRUE(pixels.defined()) << "libpng cannot read " << png;
  EXPECT_EQ(pixels.sizes(), (std::vector<int64_t>{64, 96, 3}));
  EXPECT_TRUE(at::equal(pixels, tensor_in(dump, "image")[0]));
  EXPECT_GT(pixels.to(at::kFloat).std().item<double>(), 1.0);  // a picture, not one colour
}

// The "done when": a prompt through the folder's own text encoder,
// 4 ranks as Ulysses 2 x Ring 2, --check, a PNG.
TEST(QwenImagePipeline, prompt_to_png_on_four_ranks_ulysses_2_ring_2_matches_one_rank) {
  REQUIRE_BIN();
  TempDir tmp;
  const std::string png = tmp.path + "/fox.png", dump = tmp.path + "/run.safetensors";
  auto r = run_command(std::string(SPDIT_BIN) + " run --model-dir " + model_dir() +
                       " --prompt 'a red fox in the snow' --negative-prompt 'blurry'"
                       " --height 32 --width 48 --steps 2 --nproc 4 --ulysses 2 --ring 2 --check"
                       " --out " +
                       png + " --dump " + dump);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("PASS"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("true CFG 4"), std::string::npos) << r.output;
  const auto pixels = read_png(png);
  ASSERT_TRUE(pixels.defined()) << "libpng cannot read " << png;
  EXPECT_EQ(pixels.sizes(), (std::vector<int64_t>{32, 48, 3}));
  // The embeddings the run used are the library encoder's for the same prompt.
  pipelines::QwenImagePipeline qwen(pipelines::QwenImageFiles::find(model_dir()));
  const auto e = qwen.encode("a red fox in the snow");
  const auto used = tensor_in(dump, "prompt_embeds");
  ASSERT_EQ(used.sizes(), e.embeds.sizes());
  EXPECT_TRUE(at::allclose(used.to(at::kFloat), e.embeds.to(at::kFloat), 1e-2, 1e-2));
  EXPECT_GT(used.to(at::kFloat).abs().max().item<double>(), 0.0);
}

TEST(QwenImagePipeline, true_cfg_on_the_cfg_axis_and_sharded_weights_match_one_rank) {
  REQUIRE_BIN();
  TempDir tmp;
  const std::string embeds = write_embeddings(tmp.path);
  const std::string base = std::string(SPDIT_BIN) + " run --model-dir " + model_dir() +
                           " --prompt-embeds " + embeds + " --height 32 --width 48 --steps 2";
  auto r = run_command(base + " --nproc 4 --cfg 2 --ulysses 2 --check --dump " + tmp.path +
                       "/cfg.safetensors");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("cfg 2 x ulysses 2 x ring 1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("PASS"), std::string::npos) << r.output;
  // In fp32 the tolerance is 1e-5 (x 4 for the guidance scale).
  r = run_command(base +
                  " --dtype fp32 --nproc 2 --ring 2 --shard-weights --vae-parallel off"
                  " --check");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("tol=4.000e-05 PASS"), std::string::npos) << r.output;
  // The dump reproduces the run on one rank (the same noise and embeddings).
  r = run_command(base + " --nproc 1 --noise " + tmp.path + "/cfg.safetensors --dump " + tmp.path +
                  "/one.safetensors");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto a = tensor_in(tmp.path + "/cfg.safetensors", "latents");
  const auto b = tensor_in(tmp.path + "/one.safetensors", "latents");
  EXPECT_TRUE(at::allclose(a, b, 2e-2, 2e-2)) << (a - b).abs().max();
  // The dump keeps the embeddings as given, mask and all.
  EXPECT_EQ(tensor_in(tmp.path + "/one.safetensors", "prompt_embeds_mask").sum().item<int64_t>(),
            5);
}

TEST(QwenImagePipeline, mistakes_are_named) {
  REQUIRE_BIN();
  TempDir tmp;
  const std::string base = std::string(SPDIT_BIN) + " run --model-dir " + model_dir() +
                           " --height 32 --width 32 --steps 1";
  // A folder without its text side (as some downloads are) takes embeddings.
  const std::string bare = tmp.path + "/bare";
  std::filesystem::copy(model_dir(), bare, std::filesystem::copy_options::recursive);
  std::filesystem::remove_all(bare + "/text_encoder");
  const std::string bare_base =
      std::string(SPDIT_BIN) + " run --model-dir " + bare + " --height 32 --width 32 --steps 1";
  auto r = run_command(bare_base + " --prompt 'a fox' --nproc 1");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("--prompt-embeds FILE"), std::string::npos) << r.output;
  r = run_command(std::string(SPDIT_BIN) + " encode --model-dir " + bare +
                  " --prompt 'a fox' --out " + tmp.path + "/e.safetensors");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("--prompt-embeds FILE"), std::string::npos) << r.output;
  // --cfg 2 without a negative prompt: one branch only.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  checkpoints::write_safetensors(tmp.path + "/pos.safetensors",
                                 {{"prompt_embeds", at::randn({1, 3, 32}, gen)}});
  r = run_command(base + " --prompt-embeds " + tmp.path + "/pos.safetensors --nproc 2 --cfg 2");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("negative_prompt_embeds in the --prompt-embeds file"), std::string::npos)
      << r.output;
  r = run_command(base + " --prompt-embeds " + tmp.path +
                  "/pos.safetensors --negative-prompt blurry --nproc 1");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("--negative-prompt is text for the encoder"), std::string::npos)
      << r.output;
  // Embeddings of the wrong width for this transformer.
  checkpoints::write_safetensors(tmp.path + "/wide.safetensors",
                                 {{"prompt_embeds", at::randn({1, 3, 48}, gen)}});
  r = run_command(base + " --prompt-embeds " + tmp.path + "/wide.safetensors --nproc 1");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("prompt_embeds must be (1, L, 32)"), std::string::npos) << r.output;
  // Latents decoded at another size than they were made at: 2x2 packed tokens
  // are a 32x32 picture, not 32x48.
  checkpoints::write_safetensors(tmp.path + "/lat.safetensors",
                                 {{"latents", at::randn({1, 4, 64}, gen)}});
  r = run_command(std::string(SPDIT_BIN) + " decode --model-dir " + model_dir() + " --latents " +
                  tmp.path + "/lat.safetensors --height 32 --width 48 --out " + tmp.path +
                  "/lat.png");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("a 32x48 image has 6 packed tokens: give the size it was made at"),
            std::string::npos)
      << r.output;
}
