// FluxPipeline's latent bookkeeping against diffusers' own functions
// (tests/fixtures/flux_latents.safetensors, from
// scripts/reference/flux_vae_reference.py: randn_tensor with a seeded CPU
// generator, _pack_latents, _prepare_latent_image_ids for a 72 x 104 image,
// batch 2, which the pipeline floors to an 8 x 12 latent). All exact: the
// same generator and pure data movement.
#include <gtest/gtest.h>

#include "spdit/checkpoints/checkpoint.h"
#include "spdit/pipelines/flux_latents.h"

using namespace spdit;
using namespace spdit::pipelines;

namespace {

at::Tensor expected(const std::string& name) {
  static const auto ckpt =
      checkpoints::Checkpoint::open(std::string(SPDIT_FIXTURES) + "/flux_latents.safetensors");
  return ckpt.tensor(name);
}

constexpr uint64_t kSeed = 42;  // the fixture's

}  // namespace

TEST(FluxLatents, ImageSizesFloorToWholePatches) {
  const auto g = flux_latent_grid(expected("input.height").item<int64_t>(),
                                  expected("input.width").item<int64_t>());
  EXPECT_EQ(g.height, 8);
  EXPECT_EQ(g.width, 12);
  EXPECT_EQ(g.tokens(), 24);
  EXPECT_EQ(g.image_height(), 64);
  EXPECT_EQ(g.image_width(), 96);
  const auto big = flux_latent_grid(1024, 1360);
  EXPECT_EQ(big.height, 128);
  EXPECT_EQ(big.width, 170);
  EXPECT_EQ(big.tokens(), 64 * 85);
  EXPECT_THROW(flux_latent_grid(15, 1024), std::invalid_argument);
  EXPECT_THROW(flux_latent_grid(64, 64, 0), std::invalid_argument);
}

TEST(FluxLatents, NoiseIsDiffusersSeededDrawInEachDtype) {
  const auto g = flux_latent_grid(72, 104);
  EXPECT_EQ(flux_noise_shape(g, 2, 16), (std::vector<int64_t>{2, 16, 8, 12}));
  for (const auto& [dtype, tag] :
       {std::pair{at::kFloat, "f32"}, std::pair{at::kBFloat16, "bf16"}}) {
    const at::Tensor packed = flux_initial_noise(g, 2, 16, kSeed, dtype);
    EXPECT_EQ(packed.scalar_type(), dtype);
    EXPECT_TRUE(at::equal(packed, expected(std::string("packed.") + tag))) << tag;
    EXPECT_TRUE(at::equal(unpack_flux_latents(packed, g), expected(std::string("noise.") + tag)))
        << tag;
  }
  EXPECT_FALSE(at::equal(flux_initial_noise(g, 2, 16, kSeed + 1), expected("packed.f32")));
}

TEST(FluxLatents, PackingIsDiffusersAndUnpackingInvertsIt) {
  const at::Tensor noise = expected("noise.f32");
  EXPECT_TRUE(at::equal(pack_flux_latents(noise), expected("packed.f32")));
  const auto g = flux_latent_grid(72, 104);
  EXPECT_TRUE(at::equal(unpack_flux_latents(pack_flux_latents(noise), g), noise));
  EXPECT_THROW(pack_flux_latents(at::zeros({1, 16, 7, 8})), std::invalid_argument);
  EXPECT_THROW(unpack_flux_latents(at::zeros({1, 23, 64}), g), std::invalid_argument);
}

TEST(FluxLatents, ImageIdsAreRowAndColumnOfEachToken) {
  const auto g = flux_latent_grid(72, 104);
  const at::Tensor ids = flux_latent_image_ids(g);
  EXPECT_TRUE(at::equal(ids, expected("image_ids")));
  EXPECT_EQ(ids.sizes(), (std::vector<int64_t>{24, 3}));
  EXPECT_EQ(flux_latent_image_ids(g, at::kBFloat16).scalar_type(), at::kBFloat16);
}
