// Wan2.1's video autoencoder against the ORIGINAL implementation's numbers,
// and its causal cache, memory, loading and writing.
//
// scripts/reference/wan_vae_reference.py ran Wan's own wan/modules/vae.py
// (WanVAE_, unchanged) at a tiny size (base_dim 4, dim_mult [1, 2, 2, 2], one
// residual block per level, 16 latent channels; Wan2.1's structure: 4x in
// time, 8x in space) with seeded random weights, stored them in both
// published layouts (Wan's Wan2.1_VAE.pth via torch.save, and diffusers'
// vae/ folder renamed as diffusers' converter does), and stored decode's
// output for 3 latent frames (9 video frames) and encode's moments for a
// 9-frame video, both computed chunk by chunk through the original feat_cache.
//
// Tolerance: max |ours - reference| / max |reference| <= kRelTol (float32
// on both sides; the reference's attention in float64, the rest float32
// rounding in another order).
#include "spdit/vae/wan_vae.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>

#include "spdit/checkpoints/checkpoint.h"
#include "spdit/runtime/memory_meter.h"
#include "spdit/vae/wan_vae_loader.h"
#include "spdit/vae/wan_vae_names.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"

using namespace spdit;

namespace {

constexpr double kRelTol = 1e-5;

std::string fixture(const std::string& name) { return std::string(SPDIT_FIXTURES) + "/" + name; }

at::Tensor io(const std::string& name) {
  static const auto ckpt = checkpoints::Checkpoint::open(fixture("wan_vae_tiny_io.safetensors"));
  return ckpt.tensor(name);
}

double rel_err(const at::Tensor& ours, const at::Tensor& ref) {
  EXPECT_EQ(ours.sizes(), ref.sizes());
  return ((ours.to(at::kDouble) - ref.to(at::kDouble)).abs().max() /
          ref.to(at::kDouble).abs().max())
      .item<double>();
}

vae::LoadedWanVae load(const std::string& layout, at::ScalarType dtype = at::kFloat) {
  return vae::load_wan_vae(
      fixture(layout == "wan" ? "wan_vae_tiny/original/Wan2.1_VAE.pth" : "wan_vae_tiny/diffusers"),
      dtype);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(WanVaeReference, BothLayoutsLoadTheSameDimensionsAndNumbers) {
  const auto d = load("diffusers");
  const auto w = load("wan");
  EXPECT_EQ(d.layout, "diffusers");
  EXPECT_EQ(w.layout, "wan-original");
  // Wan's file has no config: its dimensions come from the shapes.
  EXPECT_EQ(w.model->config().to_json(), d.model->config().to_json());
  EXPECT_EQ(d.model->config().base_dim, 4);
  EXPECT_EQ(d.model->config().dim_mult, (std::vector<int64_t>{1, 2, 2, 2}));
  EXPECT_EQ(d.model->config().num_res_blocks, 1);
  auto wp = w.model->named_parameters(true);
  int64_t compared = 0;
  for (const auto& p : d.model->named_parameters(true)) {
    ASSERT_TRUE(wp.contains(p.key())) << p.key();
    EXPECT_TRUE(at::equal(p.value(), wp[p.key()])) << p.key();
    ++compared;
  }
  EXPECT_EQ(compared, static_cast<int64_t>(wp.size()));
  // fp32 files computing in fp32: every tensor is used in place.
  EXPECT_EQ(d.converted, 0);
  EXPECT_EQ(w.converted, 0);
  EXPECT_EQ(w.in_place, compared);
}

TEST(WanVaeReference, DecodeMatchesTheOriginalInBothLayouts) {
  for (const std::string layout : {"diffusers", "wan"}) {
    auto loaded = load(layout);
    const at::Tensor video = loaded.model->decode(io("input.latents"));
    EXPECT_EQ(video.sizes(), (std::vector<int64_t>{1, 3, 9, 24, 32}));
    EXPECT_LE(rel_err(video, io("output.decoded")), kRelTol) << layout;
  }
}

TEST(WanVaeReference, EncodeMatchesTheOriginalInBothLayouts) {
  for (const std::string layout : {"diffusers", "wan"}) {
    auto loaded = load(layout);
    const at::Tensor moments = loaded.model->encode_moments(io("input.video"));
    ASSERT_EQ(moments.sizes(), (std::vector<int64_t>{1, 32, 3, 3, 4}));
    EXPECT_LE(rel_err(moments.narrow(1, 0, 16), io("output.mu")), kRelTol) << layout;
    EXPECT_LE(rel_err(moments.narrow(1, 16, 16), io("output.log_var")), kRelTol) << layout;
    // Wan's WanVAE.encode scales by Wan2.1's mean and std:
    // normalize_wan_latents.
    const at::Tensor normalized = vae::normalize_wan_latents(
        loaded.model->encode_mean(io("input.video")), loaded.model->config());
    EXPECT_LE(rel_err(normalized, io("output.mu_scaled")), kRelTol) << layout;
  }
}

TEST(WanVaeReference, BFloat16DecodeStaysCloseToTheOriginal) {
  auto loaded = load("diffusers", at::kBFloat16);
  EXPECT_GT(loaded.converted, 0);
  const at::Tensor video = loaded.model->decode(io("input.latents"));
  EXPECT_EQ(video.scalar_type(), at::kBFloat16);
  // bf16 keeps 8 bits of mantissa, and these random weights amplify
  // rounding: the original code itself, run in bf16 on these weights, lands
  // 0.18 from its float32 output (rounding the weights alone: 0.08), so
  // the bound is that plus a margin; ours measured 0.17.
  EXPECT_LE(rel_err(video, io("output.decoded")), 0.25);
}

TEST(WanVaeCausalCache, ChunksOfAnySizeGiveTheFramePerFrameResult) {
  auto loaded = load("diffusers");
  const at::Tensor z = at::randn({2, 16, 5, 3, 2}, at::TensorOptions().dtype(at::kFloat));
  const at::Tensor per_frame = loaded.model->decode(z);
  ASSERT_EQ(per_frame.sizes(), (std::vector<int64_t>{2, 3, 17, 24, 16}));
  for (int64_t chunk : {2, 4, 100}) {  // 100: every frame after the first in one go
    EXPECT_LE(rel_err(loaded.model->decode_chunked(z, chunk), per_frame), 1e-5) << chunk;
  }
  // The batch's videos are decoded apart: the second alone gives the same.
  EXPECT_LE(rel_err(loaded.model->decode(z.narrow(0, 1, 1)), per_frame.narrow(0, 1, 1)), 1e-5);
}

TEST(WanVaeCausalCache, EncodeChunksOfAnySizeGiveTheReferenceChunking) {
  auto loaded = load("wan");
  const at::Tensor video = io("input.video");
  const at::Tensor reference_chunks = loaded.model->encode_moments(video);
  for (int64_t chunk : {2, 100}) {
    EXPECT_LE(rel_err(loaded.model->encode_moments_chunked(video, chunk), reference_chunks), 1e-5)
        << chunk;
  }
}

TEST(WanVaeCausalCache, LaterFramesDoNotChangeEarlierOnes) {
  // Causal in time: decoding the first 2 latent frames gives the first 5
  // frames of decoding all 4.
  auto loaded = load("diffusers");
  const at::Tensor z = at::randn({1, 16, 4, 2, 3});
  const at::Tensor all = loaded.model->decode(z);
  EXPECT_LE(rel_err(loaded.model->decode(z.narrow(2, 0, 2)), all.narrow(2, 0, 5)), 1e-5);
}

TEST(WanVaeMemory, WorkingMemoryDoesNotGrowWithTheNumberOfFrames) {
  install_memory_meter();
  auto loaded = load("diffusers");
  auto working = [&](int64_t latent_frames) {
    const at::Tensor z = at::randn({1, 16, latent_frames, 8, 8});
    const int64_t before = reset_tensor_bytes_peak();
    const at::Tensor video = loaded.model->decode(z);
    // What the decode held beyond its own output (which grows, as it must).
    return tensor_bytes_peak() - before - video.numel() * video.element_size();
  };
  const int64_t two = working(2), six = working(6);
  EXPECT_GT(two, 0);
  // Frame by frame, three times the frames must not mean three times the
  // memory: only the latents themselves (4 KB a frame here) and allocation
  // order (which chunk's output is still alive at the peak) may differ.
  EXPECT_LE(six, two * 1.05) << "2 latent frames: " << two << " bytes, 6: " << six;
}

TEST(WanVaeInputs, WrongShapesAreRefusedNamingTheShape) {
  auto loaded = load("diffusers");
  const std::string decode = error_of([&] { loaded.model->decode(at::zeros({1, 4, 2, 3, 3})); });
  EXPECT_NE(decode.find("(B, 16, T, h, w), not (1, 4, 2, 3, 3)"), std::string::npos) << decode;
  const std::string frames = error_of([&] {
    loaded.model->encode_moments(at::zeros({1, 3, 6, 16, 16}));
  });
  EXPECT_NE(frames.find("F = 1 + 4k frames"), std::string::npos) << frames;
  EXPECT_NE(frames.find("(1, 3, 6, 16, 16)"), std::string::npos) << frames;
  const std::string chunk = error_of([&] {
    loaded.model->decode_chunked(at::zeros({1, 16, 2, 3, 3}), 0);
  });
  EXPECT_NE(chunk.find("at least 1, not 0"), std::string::npos) << chunk;
}

TEST(WanVaeLatents, NormalizeAndDenormalizeArePerChannelInverses) {
  const auto c = vae::WanVaeConfig::wan21();
  const at::Tensor z = at::randn({2, 16, 3, 2, 2});
  const at::Tensor n = vae::normalize_wan_latents(z, c);
  // Channel 7: (z - 1.5508) / 2.0743, as Wan's WanVAE scales it.
  EXPECT_TRUE(at::allclose(n.select(1, 7), (z.select(1, 7) - 1.5508) / 2.0743, 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(vae::denormalize_wan_latents(n, c), z, 1e-5, 1e-5));
  const std::string msg = error_of([&] {
    vae::denormalize_wan_latents(at::zeros({1, 4, 2, 2}), c);
  });
  EXPECT_NE(msg.find("16 channels"), std::string::npos) << msg;
}

TEST(WanVaeConfig, FrameCountsAndPresets) {
  const auto c = vae::WanVaeConfig::wan21();
  EXPECT_EQ(c.spatial_scale_factor(), 8);
  EXPECT_EQ(c.temporal_scale_factor(), 4);
  EXPECT_EQ(c.frames_for_latent_frames(21), 81);
  EXPECT_EQ(c.latent_frames_for_frames(81), 21);
  const std::string msg = error_of([&] { c.latent_frames_for_frames(80); });
  EXPECT_NE(msg.find("1 + 4k frames (1, 5, 9, ...), not 80"), std::string::npos) << msg;
  const auto t = vae::WanVaeConfig::tiny();
  EXPECT_EQ(t.spatial_scale_factor(), 8);
  EXPECT_EQ(t.temporal_scale_factor(), 4);
  EXPECT_EQ(vae::WanVaeConfig::from_json(t.to_json(), "tiny").to_json(), t.to_json());
}

TEST(WanVaeConfig, RefusesWhatItCannotBuildNamingTheField) {
  auto err = [](const std::string& json) {
    return error_of([&] { vae::WanVaeConfig::from_json(json, "x/vae/config.json"); });
  };
  EXPECT_NE(err(R"({"_class_name": "AutoencoderKL"})").find("not of AutoencoderKLWan"),
            std::string::npos);
  EXPECT_NE(err(R"({"is_residual": true})").find("Wan2.2"), std::string::npos);
  EXPECT_NE(err(R"({"attn_scales": [0.5]})").find("attn_scales"), std::string::npos);
  EXPECT_NE(err(R"({"latents_mean": [0.1, 0.2]})").find("one value per latent channel (16)"),
            std::string::npos);
  EXPECT_NE(err(R"({"temperal_downsample": [true]})").find("temperal_downsample has 1 flags"),
            std::string::npos);
  EXPECT_NE(err(R"({"z_dim": "16"})").find("x/vae/config.json: field 'z_dim' should be an integer"),
            std::string::npos);
  // Qwen-Image's class is the same network.
  EXPECT_EQ(
      vae::WanVaeConfig::from_json(R"({"_class_name": "AutoencoderKLQwenImage"})", "q").base_dim,
      96);
}

TEST(WanVaeNames, TheTwoLayoutsMapBothWays) {
  const auto c = vae::WanVaeConfig::wan21();
  EXPECT_EQ(vae::wan_vae_name_to_diffusers("decoder.upsamples.3.resample.1.weight", c),
            "decoder.up_blocks.0.upsamplers.0.resample.1.weight");
  EXPECT_EQ(vae::wan_vae_name_to_diffusers("decoder.upsamples.4.residual.2.weight", c),
            "decoder.up_blocks.1.resnets.0.conv1.weight");
  EXPECT_EQ(vae::wan_vae_name_to_diffusers("encoder.downsamples.2.resample.1.bias", c),
            "encoder.down_blocks.2.resample.1.bias");
  EXPECT_EQ(vae::wan_vae_name_to_diffusers("encoder.middle.1.to_qkv.weight", c),
            "encoder.mid_block.attentions.0.to_qkv.weight");
  EXPECT_EQ(vae::wan_vae_name_to_diffusers("decoder.middle.2.residual.3.gamma", c),
            "decoder.mid_block.resnets.1.norm2.gamma");
  EXPECT_EQ(vae::wan_vae_name_to_diffusers("conv1.weight", c), "quant_conv.weight");
  EXPECT_EQ(vae::wan_vae_name_to_diffusers("decoder.head.2.bias", c), "decoder.conv_out.bias");
  EXPECT_EQ(vae::wan_vae_name_to_diffusers("decoder.upsamples.99.residual.2.weight", c), "");
  // Every parameter of the real-size model maps to Wan's name and back.
  int64_t n = 0;
  for (const auto& p : vae::WanVae(c)->named_parameters(true)) {
    const std::string wan = vae::diffusers_vae_name_to_wan(p.key(), c);
    ASSERT_FALSE(wan.empty()) << p.key();
    EXPECT_EQ(vae::wan_vae_name_to_diffusers(wan, c), p.key());
    ++n;
  }
  EXPECT_GT(n, 190);
}

TEST(WanVaeLoader, RandomFolderRoundTripsAndDecodes) {
  test::TempDir dir;
  vae::write_random_wan_vae(dir.path + "/model/vae", vae::WanVaeConfig::tiny(),
                            /*seed=*/3);
  auto loaded = vae::load_wan_vae(dir.path + "/model");
  EXPECT_EQ(loaded.layout, "diffusers");
  EXPECT_EQ(loaded.config_source, dir.path + "/model/vae/config.json");
  EXPECT_EQ(loaded.model->config().to_json(), vae::WanVaeConfig::tiny().to_json());
  const at::Tensor video = loaded.model->decode(at::randn({1, 16, 2, 2, 3}));
  EXPECT_EQ(video.sizes(), (std::vector<int64_t>{1, 3, 5, 16, 24}));
  EXPECT_TRUE(video.isfinite().all().item<bool>());
  // The same seed writes the same file.
  vae::write_random_wan_vae(dir.path + "/again", vae::WanVaeConfig::tiny(), 3);
  const auto a =
      checkpoints::Checkpoint::open(dir.path + "/model/vae/diffusion_pytorch_model.safetensors");
  const auto b =
      checkpoints::Checkpoint::open(dir.path + "/again/diffusion_pytorch_model.safetensors");
  for (const auto& [name, t] : a.tensors())
    EXPECT_TRUE(at::equal(a.tensor(name), b.tensor(name))) << name;
}

TEST(WanVaeLoader, RefusesMissingAndMisshapenTensorsNamingThem) {
  test::TempDir dir;
  const auto src = checkpoints::Checkpoint::open(
      fixture("wan_vae_tiny/diffusers/diffusion_pytorch_model.safetensors"));
  std::map<std::string, at::Tensor> tensors;
  for (const auto& [name, t] : src.tensors()) tensors[name] = src.tensor(name);
  tensors.erase("decoder.conv_out.bias");
  tensors["encoder.conv_in.weight"] = at::zeros({4, 3, 3, 3, 1});
  tensors["decoder.extra.weight"] = at::zeros({1});
  checkpoints::write_safetensors(dir.path + "/diffusion_pytorch_model.safetensors", tensors);
  std::ifstream in(fixture("wan_vae_tiny/diffusers/config.json"));
  std::ofstream(dir.path + "/config.json") << in.rdbuf();
  const std::string msg = error_of([&] { vae::load_wan_vae(dir.path); });
  EXPECT_NE(msg.find(dir.path + "/diffusion_pytorch_model.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing 'decoder.conv_out.bias' (3)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'encoder.conv_in.weight' is (4, 3, 3, 3, 1), the "
                     "autoencoder's is (4, 3, 3, 3, 3)"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("'decoder.extra.weight' is no tensor of the autoencoder"), std::string::npos)
      << msg;
}

TEST(WanVaeLoader, SaysWhatADownloadHoldsWhenThereIsNoAutoencoder) {
  test::TempDir dir;
  const std::string msg = error_of([&] { vae::load_wan_vae(dir.path); });
  EXPECT_NE(msg.find("found no Wan2.1 autoencoder in '" + dir.path + "'"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("Wan2.1_VAE.pth"), std::string::npos) << msg;
  // Another model's files: FLUX.1's autoencoder in BFL's names, and in
  // diffusers' (its config says so).
  const std::string other =
      error_of([&] { vae::load_wan_vae(fixture("flux_vae_tiny/bfl/ae.safetensors")); });
  EXPECT_NE(other.find("holds no Wan2.1 autoencoder"), std::string::npos) << other;
  const std::string flux = error_of([&] { vae::load_wan_vae(fixture("flux_vae_tiny/diffusers")); });
  EXPECT_NE(flux.find("is the config of \"AutoencoderKL\", not of AutoencoderKLWan"),
            std::string::npos)
      << flux;
}

TEST(WanVaeRealSize, Wan21LoadsInPlaceFromASparseDiffusersFolder) {
  // Wan2.1's dimensions with every tensor a hole in a sparse file (reads as
  // zeros, stores nothing): the real layout loads without allocating.
  test::TempDir dir;
  const auto config = vae::WanVaeConfig::wan21();
  std::map<std::string, std::pair<at::ScalarType, std::vector<int64_t>>> layout;
  int64_t params = 0;
  for (const auto& p : vae::WanVae(config)->named_parameters(true)) {
    layout[p.key()] = {at::kFloat, p.value().sizes().vec()};
    params += p.value().numel();
  }
  // Wan2.1_VAE.pth is 507.6 MB of float32: 126.9 M parameters in 194 tensors.
  EXPECT_EQ(params, 126892531);
  EXPECT_EQ(layout.size(), 194u);
  std::filesystem::create_directories(dir.path + "/vae");
  checkpoints::write_sparse_safetensors(dir.path + "/vae/diffusion_pytorch_model.safetensors",
                                        layout);
  std::ofstream(dir.path + "/vae/config.json") << config.to_json();
  install_memory_meter();
  const int64_t before = tensor_bytes_live();
  auto loaded = vae::load_wan_vae(dir.path);
  EXPECT_EQ(loaded.in_place, 194);
  EXPECT_EQ(loaded.converted, 0);
  EXPECT_LT(tensor_bytes_live() - before, 4096);
  const at::Tensor video = loaded.model->decode(at::zeros({1, 16, 1, 2, 2}));
  EXPECT_EQ(video.sizes(), (std::vector<int64_t>{1, 3, 1, 16, 16}));
}

TEST(WanVaeCli, InspectReadsWansPthInItsOwnProcess) {
  // The command a user runs on the downloaded file: the .pth reader and the
  // layout detection in a separate process, the weights left in the file.
  if (access(SPDIT_BIN, X_OK) != 0) GTEST_SKIP() << "the spdit command is not built here";
  const auto r = test::run_command(std::string(SPDIT_BIN) + " inspect " +
                                   fixture("wan_vae_tiny/original/Wan2.1_VAE.pth"));
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("tensors: 146"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("model: wan-vae (Wan2.1's video autoencoder), wan-original layout"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("base_dim 4, z_dim 16, dim_mult [1, 2, 2, 2], 1 "
                          "residual blocks per level"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("every tensor fits"), std::string::npos) << r.output;
  // A truncated copy is refused by name.
  test::TempDir dir;
  std::ifstream in(fixture("wan_vae_tiny/original/Wan2.1_VAE.pth"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  std::ofstream(dir.path + "/cut.pth", std::ios::binary).write(bytes.data(), 1000);
  const auto cut = test::run_command(std::string(SPDIT_BIN) + " inspect " + dir.path + "/cut.pth");
  EXPECT_NE(cut.code, 0);
  EXPECT_NE(cut.output.find("cut.pth': is not a readable zip archive (truncated or corrupt?)"),
            std::string::npos)
      << cut.output;
}
