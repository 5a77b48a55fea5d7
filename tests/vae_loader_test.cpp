// Finding and loading FLUX.1's autoencoder from what a user holds, refusing
// what does not fit with messages that name the file and the tensor, the
// name map between the two layouts, and the random-weight folder writer.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "spdit/checkpoints/checkpoint.h"
#include "spdit/pipelines/flux_vae_stage.h"
#include "spdit/runtime/memory_meter.h"
#include "spdit/vae/vae_loader.h"
#include "spdit/vae/vae_names.h"
#include "spdit/vae/vae_writer.h"
#include "support/temp_dir.h"

using namespace spdit;
using namespace spdit::vae;

namespace {

std::string fixture(const std::string& name) { return std::string(SPDIT_FIXTURES) + "/" + name; }

std::map<std::string, at::Tensor> read_all(const std::string& file) {
  auto ckpt = checkpoints::Checkpoint::open(file);
  std::map<std::string, at::Tensor> out;
  for (const auto& kv : ckpt.tensors()) out[kv.first] = ckpt.tensor(kv.first).clone();
  return out;
}

// The message load_autoencoder throws for `path`, or "" when it loads.
std::string load_error(const std::string& path) {
  try {
    load_autoencoder(path);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

}  // namespace

TEST(VaeNames, BflLevelsCountFromTheOtherEnd) {
  EXPECT_EQ(bfl_vae_name_to_diffusers("decoder.up.3.upsample.conv.weight", 4),
            "decoder.up_blocks.0.upsamplers.0.conv.weight");
  EXPECT_EQ(bfl_vae_name_to_diffusers("decoder.up.1.block.0.nin_shortcut.bias", 4),
            "decoder.up_blocks.2.resnets.0.conv_shortcut.bias");
  EXPECT_EQ(bfl_vae_name_to_diffusers("encoder.down.1.downsample.conv.weight", 4),
            "encoder.down_blocks.1.downsamplers.0.conv.weight");
  EXPECT_EQ(bfl_vae_name_to_diffusers("decoder.mid.attn_1.proj_out.weight", 4),
            "decoder.mid_block.attentions.0.to_out.0.weight");
  EXPECT_EQ(bfl_vae_name_to_diffusers("decoder.norm_out.bias", 4), "decoder.conv_norm_out.bias");
  EXPECT_EQ(bfl_vae_name_to_diffusers("decoder.up.4.block.0.conv1.weight", 4),
            "");  // no such level
  EXPECT_EQ(bfl_vae_name_to_diffusers("model.diffusion_model.img_in.weight", 4), "");
}

TEST(VaeNames, EveryNameOfFluxsAutoencoderRoundTrips) {
  AutoencoderKL model(AutoencoderKLConfig::flux());  // lazy pages: nothing allocated
  std::set<std::string> bfl_names;
  for (const auto& p : model->named_parameters(true)) {
    const std::string bfl = diffusers_vae_name_to_bfl(p.key(), 4);
    EXPECT_EQ(bfl_vae_name_to_diffusers(bfl, 4), p.key()) << bfl;
    bfl_names.insert(bfl);
  }
  // FLUX.1's ae.safetensors holds 244 tensors; no two map to one name.
  EXPECT_EQ(bfl_names.size(), 244u);
  EXPECT_TRUE(bfl_names.count("decoder.up.1.block.0.nin_shortcut.weight"));    // 512 -> 256
  EXPECT_TRUE(bfl_names.count("encoder.down.2.block.0.nin_shortcut.weight"));  // 256 -> 512
}

TEST(VaeNames, TheReferenceConvertersNamesAgreeWithOurs) {
  // The fixtures' two files were renamed by the reference script (written
  // from diffusers' converter), independently of this map.
  const auto bfl = checkpoints::Checkpoint::open(fixture("flux_vae_tiny/bfl/ae.safetensors"));
  const auto diffusers = checkpoints::Checkpoint::open(fixture("flux_vae_tiny/diffusers"));
  ASSERT_EQ(bfl.tensors().size(), diffusers.tensors().size());
  for (const auto& kv : bfl.tensors()) {
    const std::string d = bfl_vae_name_to_diffusers(kv.first, 2);
    EXPECT_TRUE(diffusers.has(d)) << kv.first << " -> " << d;
    EXPECT_EQ(diffusers_vae_name_to_bfl(d, 2), kv.first);
  }
}

TEST(VaeNames, LayoutIsDetectedUnderABundlesPrefix) {
  EXPECT_EQ(detect_vae_layout({"vae.decoder.mid.block_1.conv1.weight"}, "x").prefix, "vae.");
  EXPECT_EQ(detect_vae_layout({"decoder.mid_block.resnets.0.conv1.weight"}, "x").name, "diffusers");
  try {
    detect_vae_layout({"img_in.weight", "txt_in.weight"}, "flux1-dev.safetensors");
    FAIL() << "a transformer file is no autoencoder";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("flux1-dev.safetensors"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("img_in.weight"), std::string::npos) << e.what();
  }
}

TEST(VaeLoader, FindsTheAutoencoderOfADownloadedFolder) {
  test::TempDir dir;
  EXPECT_NE(load_error(dir.path).find("vae/"), std::string::npos);
  EXPECT_NE(load_error(dir.path).find("ae.safetensors"), std::string::npos);
  EXPECT_NE(load_error(dir.path + "/nothing").find("no such file"), std::string::npos);
  std::filesystem::copy_file(fixture("flux_vae_tiny/bfl/ae.safetensors"),
                             dir.path + "/ae.safetensors");
  EXPECT_EQ(find_autoencoder(dir.path), dir.path + "/ae.safetensors");
  EXPECT_EQ(load_autoencoder(dir.path).layout, "bfl");
  // diffusers' vae/ wins when both are there, as FLUX.1-dev's download holds both.
  std::filesystem::copy(fixture("flux_vae_tiny/diffusers"), dir.path + "/vae");
  EXPECT_EQ(find_autoencoder(dir.path + "/"), dir.path + "/vae");
  EXPECT_EQ(load_autoencoder(dir.path).layout, "diffusers");
}

TEST(VaeLoader, AFolderWithoutConfigSaysSo) {
  test::TempDir dir;
  std::filesystem::copy_file(fixture("flux_vae_tiny/diffusers/diffusion_pytorch_model.safetensors"),
                             dir.path + "/diffusion_pytorch_model.safetensors");
  const std::string e = load_error(dir.path);
  EXPECT_NE(e.find("config.json"), std::string::npos) << e;
  EXPECT_NE(e.find(dir.path), std::string::npos) << e;
}

TEST(VaeLoader, AMissingTensorIsNamedAsTheFileNamesIt) {
  test::TempDir dir;
  auto t = read_all(fixture("flux_vae_tiny/bfl/ae.safetensors"));
  ASSERT_EQ(t.erase("decoder.up.0.block.1.conv2.weight"), 1u);
  const std::string file = dir.path + "/ae.safetensors";
  checkpoints::write_safetensors(file, t);
  const std::string e = load_error(file);
  EXPECT_NE(e.find(file), std::string::npos) << e;
  EXPECT_NE(e.find("missing 'decoder.up.0.block.1.conv2.weight'"), std::string::npos) << e;
}

TEST(VaeLoader, AWrongShapeIsNamedWithBothShapes) {
  test::TempDir dir;
  std::filesystem::copy(fixture("flux_vae_tiny/diffusers"), dir.path + "/vae");
  auto t = read_all(dir.path + "/vae/diffusion_pytorch_model.safetensors");
  t["decoder.mid_block.attentions.0.to_q.weight"] = at::zeros({64, 32}, at::kBFloat16);
  t["encoder.quant_conv.weight"] = at::zeros({32, 32, 1, 1});
  checkpoints::write_safetensors(dir.path + "/vae/diffusion_pytorch_model.safetensors", t);
  const std::string e = load_error(dir.path);
  EXPECT_NE(e.find("'decoder.mid_block.attentions.0.to_q.weight' is [64, 32], the autoencoder's is "
                   "[64, 64]"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("'encoder.quant_conv.weight' is no tensor of the autoencoder"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("2 problems"), std::string::npos) << e;
}

TEST(VaeLoader, ConfigsOfOtherAutoencodersAreRefused) {
  const std::string base = R"({"_class_name": "AutoencoderKL", "block_out_channels": [32, 64],
      "latent_channels": 16, "shift_factor": 0.1159, "use_quant_conv": false, "use_post_quant_conv": false)";
  EXPECT_NO_THROW(AutoencoderKLConfig::from_json(base + "}", "c.json"));
  auto refused = [&](const std::string& text, const std::string& words) {
    try {
      AutoencoderKLConfig::from_json(text, "vae/config.json");
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find("vae/config.json"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
      return;
    }
    ADD_FAILURE() << "accepted: " << text;
  };
  // Stable Diffusion's VAE: quant convs (diffusers' default) and no shift.
  refused(R"({"_class_name": "AutoencoderKL", "latent_channels": 4, "shift_factor": 0.0})",
          "quant_conv");
  refused(
      R"({"_class_name": "AutoencoderKL", "use_quant_conv": false, "use_post_quant_conv": false})",
      "shift_factor");
  refused(R"({"_class_name": "AutoencoderKLWan"})", "AutoencoderKLWan");
  refused(base + R"(, "norm_num_groups": 24})", "norm_num_groups 24");
  refused(base + R"(, "up_block_types": ["UpDecoderBlock2D", "AttnUpDecoderBlock2D"]})",
          "AttnUpDecoderBlock2D");
  refused(base + R"(, "layers_per_block": "2"})", "layers_per_block");
  refused("{", "not valid JSON");
}

TEST(VaeWriter, ARandomFolderLoadsBackAndDecodes) {
  test::TempDir dir;
  const auto config = AutoencoderKLConfig::tiny();
  write_random_autoencoder(dir.path + "/model/vae", config, 3);
  auto loaded = load_autoencoder(dir.path + "/model");
  EXPECT_EQ(loaded.layout, "diffusers");
  EXPECT_EQ(loaded.model->config().block_out_channels, config.block_out_channels);
  EXPECT_EQ(loaded.model->config().layers_per_block, config.layers_per_block);
  EXPECT_EQ(loaded.in_place, static_cast<int64_t>(loaded.model->parameters().size()));
  const at::Tensor z = at::randn({1, 16, 4, 6});
  const at::Tensor image = pipelines::flux_decode_latents(loaded.model, z);
  EXPECT_EQ(image.sizes(), (std::vector<int64_t>{1, 3, 8, 12}));
  EXPECT_TRUE(image.isfinite().all().item<bool>());
  // Random, not constant, and a seed always gives the same weights.
  EXPECT_GT(image.std().item<float>(), 1e-3);
  write_random_autoencoder(dir.path + "/again", config, 3);
  write_random_autoencoder(dir.path + "/other", config, 4);
  const auto a = read_all(dir.path + "/model/vae/diffusion_pytorch_model.safetensors");
  const auto b = read_all(dir.path + "/again/diffusion_pytorch_model.safetensors");
  const auto c = read_all(dir.path + "/other/diffusion_pytorch_model.safetensors");
  EXPECT_TRUE(at::equal(a.at("decoder.conv_in.weight"), b.at("decoder.conv_in.weight")));
  EXPECT_FALSE(at::equal(a.at("decoder.conv_in.weight"), c.at("decoder.conv_in.weight")));
}

TEST(VaeWriter, AnUnwritableFolderIsNamed) {
  test::TempDir dir;
  write_text(dir.path + "/file", "x");
  try {
    write_random_autoencoder(dir.path + "/file/vae", AutoencoderKLConfig::tiny(), 0);
    FAIL() << "wrote under a file";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(dir.path + "/file/vae"), std::string::npos) << e.what();
  }
}

TEST(VaeInputs, WrongShapesAreRefusedWithTheShape) {
  auto loaded = load_autoencoder(fixture("flux_vae_tiny/diffusers"));
  try {
    loaded.model->decode(at::zeros({1, 4, 8, 8}));
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("16 channels"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[1, 4, 8, 8]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(loaded.model->encode_moments(at::zeros({1, 3, 9, 8})), std::invalid_argument);
  EXPECT_THROW(pipelines::from_uint8_image(at::zeros({1, 8, 8, 3})), std::invalid_argument);
  // uint8 pixels -> [-1, 1] and back is the identity.
  const at::Tensor px = at::randint(0, 256, {1, 8, 8, 3}, at::kByte);
  EXPECT_TRUE(at::equal(pipelines::to_uint8_image(pipelines::from_uint8_image(px)), px));
}

TEST(VaeMemory, DecodingFluxsAutoencoderHoldsAboutThreeFullResolutionActivations) {
  // FLUX.1's real widths (lazy zero weights: the memory does not depend on
  // the values). The largest step holds the last up block's 256-channel input,
  // its norm and its first 128-channel conv output: 2,560 float32 bytes per
  // output pixel; more means a needless copy (e.g. the convolutions
  // reordering non-channels-last inputs took 3,600). At 1024 x 1024 this is
  // ~2.7 GB in float32, ~1.35 GB in bf16.
  install_memory_meter();
  AutoencoderKL model(AutoencoderKLConfig::flux());
  const at::Tensor z = at::randn({1, 16, 16, 16});
  const int64_t before = reset_tensor_bytes_peak();
  const at::Tensor image = model->decode(z);
  const int64_t peak = tensor_bytes_peak() - before;
  EXPECT_EQ(image.sizes(), (std::vector<int64_t>{1, 3, 128, 128}));
  const int64_t pixels = 128 * 128;
  EXPECT_LE(peak, 3 * 1024 * pixels) << format_bytes(peak) << " peak";
  EXPECT_GE(peak, 2 * 1024 * pixels)
      << format_bytes(peak) << " peak: the meter should see the activations";
}
