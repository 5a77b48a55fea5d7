// FLUX.1's autoencoder against the ORIGINAL implementation's numbers.
//
// scripts/reference/flux_vae_reference.py ran Black Forest Labs' own
// src/flux/modules/autoencoder.py (unchanged) at a tiny size (channels 32 and
// 64, one resnet per encoder level, 16 latent channels) with seeded random
// weights, stored those weights in both published layouts (BFL's
// ae.safetensors and diffusers' vae/ folder, renamed as diffusers' converter
// does), and stored the decoder's and encoder's outputs with the pipeline's
// conventions (scaling and shift, VaeImageProcessor's uint8, a seeded
// posterior sample). Here both layouts go through load_autoencoder as a
// user's files would.
//
// Tolerance: max |ours - reference| / max |reference| <= kRelTol (float32 on
// both sides, the reference's attention in float64; the rest is float32
// rounding in another order). Pixels: a value that lands within rounding of
// a .5 boundary may round the other way, so at most 1 apart, and at most 1%
// of them not equal.
#include <gtest/gtest.h>

#include "spdit/checkpoints/checkpoint.h"
#include "spdit/pipelines/flux_vae_stage.h"
#include "spdit/runtime/memory_meter.h"
#include "spdit/vae/vae_loader.h"

using namespace spdit;

namespace {

constexpr double kRelTol = 1e-5;

std::string fixture(const std::string& name) { return std::string(SPDIT_FIXTURES) + "/" + name; }

at::Tensor io(const std::string& name) {
  static const auto ckpt = checkpoints::Checkpoint::open(fixture("flux_vae_tiny_io.safetensors"));
  return ckpt.tensor(name);
}

double rel_err(const at::Tensor& ours, const at::Tensor& ref) {
  EXPECT_EQ(ours.sizes(), ref.sizes());
  return ((ours.to(at::kDouble) - ref.to(at::kDouble)).abs().max() /
          ref.to(at::kDouble).abs().max())
      .item<double>();
}

vae::LoadedAutoencoder load(const std::string& layout, at::ScalarType dtype = at::kFloat) {
  return vae::load_autoencoder(
      fixture(layout == "bfl" ? "flux_vae_tiny/bfl/ae.safetensors" : "flux_vae_tiny/diffusers"),
      dtype);
}

}  // namespace

TEST(FluxVaeReference, BothLayoutsAreDetectedWithTheSameDimensions) {
  auto bfl = load("bfl");
  auto diffusers = load("diffusers");
  EXPECT_EQ(bfl.layout, "bfl");
  EXPECT_EQ(diffusers.layout, "diffusers");
  EXPECT_NE(diffusers.config_source.find("config.json"), std::string::npos);
  for (const auto* c : {&bfl.model->config(), &diffusers.model->config()}) {
    EXPECT_EQ(c->block_out_channels, (std::vector<int64_t>{32, 64}));
    EXPECT_EQ(c->layers_per_block, 1);
    EXPECT_EQ(c->latent_channels, 16);
    EXPECT_DOUBLE_EQ(c->scaling_factor, 0.3611);
    EXPECT_DOUBLE_EQ(c->shift_factor, 0.1159);
  }
}

TEST(FluxVaeReference, DecoderMatchesTheOriginalInBothLayouts) {
  const at::Tensor ref = io("output.decoded");
  at::Tensor first;
  for (const std::string layout : {"bfl", "diffusers"}) {
    auto loaded = load(layout);
    const at::Tensor out = pipelines::flux_decode_latents(loaded.model, io("input.latents"));
    EXPECT_LE(rel_err(out, ref), kRelTol) << layout;
    // Same weights, same arithmetic: the layouts agree exactly.
    if (first.defined()) EXPECT_TRUE(at::equal(out, first)) << layout;
    first = out;
  }
}

TEST(FluxVaeReference, PixelsAreVaeImageProcessorsUint8) {
  auto loaded = load("diffusers");
  const at::Tensor pixels =
      pipelines::to_uint8_image(pipelines::flux_decode_latents(loaded.model, io("input.latents")));
  const at::Tensor ref = io("output.pixels");
  ASSERT_EQ(pixels.scalar_type(), at::kByte);
  ASSERT_EQ(pixels.sizes(), ref.sizes());
  const at::Tensor diff = (pixels.to(at::kFloat) - ref).abs();
  EXPECT_LE(diff.max().item<float>(), 1.0f);
  EXPECT_LE(diff.gt(0).sum().item<int64_t>(), ref.numel() / 100);
  // The fixture spans the range, so clamping is exercised too.
  EXPECT_EQ(ref.min().item<float>(), 0.0f);
  EXPECT_EQ(ref.max().item<float>(), 255.0f);
}

TEST(FluxVaeReference, EncoderMeanMatchesTheOriginalInBothLayouts) {
  for (const std::string layout : {"bfl", "diffusers"}) {
    auto loaded = load(layout);
    const at::Tensor z = pipelines::flux_encode_image(loaded.model, io("input.image"));
    EXPECT_LE(rel_err(z, io("output.mean")), kRelTol) << layout;
  }
}

TEST(FluxVaeReference, EncoderSampleIsTheSeededPosteriorDraw) {
  auto loaded = load("bfl");
  const auto seed = static_cast<uint64_t>(io("input.sample_seed").item<int64_t>());
  const at::Tensor z = pipelines::flux_encode_image(loaded.model, io("input.image"), seed);
  EXPECT_LE(rel_err(z, io("output.sample")), kRelTol);
  // Another seed is another draw.
  const at::Tensor other = pipelines::flux_encode_image(loaded.model, io("input.image"), seed + 1);
  EXPECT_GT(rel_err(other, io("output.sample")), 1e-2);
}

TEST(FluxVaeReference, StoredDtypeIsUsedInPlaceOthersConverted) {
  // The fixtures are BF16, as diffusers' FLUX.1 vae is. Loaded in place, the
  // weights are the file's mapped pages: no tensor memory is allocated.
  install_memory_meter();
  const int64_t before = tensor_bytes_live();
  auto as_stored = load("diffusers", at::kBFloat16);
  const int64_t n = static_cast<int64_t>(as_stored.model->parameters().size());
  EXPECT_EQ(as_stored.in_place, n);
  EXPECT_EQ(as_stored.converted, 0);
  EXPECT_LT(tensor_bytes_live() - before, 4096);
  auto converted = load("diffusers", at::kFloat);
  EXPECT_EQ(converted.converted, n);
  EXPECT_GE(tensor_bytes_live() - before, 679043 * 4);  // every parameter as float32
  // Computing in bf16 stays near the float32 reference (bf16 keeps ~3 digits).
  const at::Tensor out = pipelines::flux_decode_latents(as_stored.model, io("input.latents"));
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  EXPECT_LE(rel_err(out, io("output.decoded")), 5e-2);
}
