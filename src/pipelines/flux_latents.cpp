#include "spdit/pipelines/flux_latents.h"

#include <ATen/CPUGeneratorImpl.h>

#include <stdexcept>
#include <string>

namespace spdit::pipelines {

FluxLatentGrid flux_latent_grid(int64_t image_height, int64_t image_width,
                                int64_t vae_scale_factor) {
  if (vae_scale_factor < 1) {
    throw std::invalid_argument("spdit: vae_scale_factor must be positive, not " +
                                std::to_string(vae_scale_factor));
  }
  const int64_t unit = 2 * vae_scale_factor;  // one packed token, in pixels
  if (image_height < unit || image_width < unit) {
    throw std::invalid_argument("spdit: an image of " + std::to_string(image_height) + " x " +
                                std::to_string(image_width) +
                                " is too small: Flux needs at least " + std::to_string(unit) +
                                " pixels each way (one 2x2 patch of latents)");
  }
  FluxLatentGrid g;
  g.height = 2 * (image_height / unit);
  g.width = 2 * (image_width / unit);
  g.vae_scale_factor = vae_scale_factor;
  return g;
}

at::Tensor pack_flux_latents(const at::Tensor& latents) {
  if (latents.dim() != 4 || latents.size(2) % 2 != 0 || latents.size(3) % 2 != 0) {
    throw std::invalid_argument(
        "spdit: packing takes latents (B, C, h, w) with even h and w, not " +
        c10::str(latents.sizes()));
  }
  const int64_t b = latents.size(0), c = latents.size(1), h = latents.size(2), w = latents.size(3);
  return latents.reshape({b, c, h / 2, 2, w / 2, 2})
      .permute({0, 2, 4, 1, 3, 5})
      .reshape({b, (h / 2) * (w / 2), c * 4});
}

at::Tensor unpack_flux_latents(const at::Tensor& packed, const FluxLatentGrid& grid) {
  if (packed.dim() != 3 || packed.size(1) != grid.tokens() || packed.size(2) % 4 != 0) {
    throw std::invalid_argument("spdit: unpacking takes (B, " + std::to_string(grid.tokens()) +
                                ", 4 * C) tokens for a " + std::to_string(grid.height) + " x " +
                                std::to_string(grid.width) + " latent grid, not " +
                                c10::str(packed.sizes()));
  }
  const int64_t b = packed.size(0), c = packed.size(2) / 4;
  return packed.reshape({b, grid.height / 2, grid.width / 2, c, 2, 2})
      .permute({0, 3, 1, 4, 2, 5})
      .reshape({b, c, grid.height, grid.width});
}

at::Tensor flux_latent_image_ids(const FluxLatentGrid& grid, at::ScalarType dtype) {
  const int64_t h = grid.height / 2, w = grid.width / 2;
  at::Tensor ids = at::zeros({h, w, 3}, at::kFloat);
  ids.select(2, 1).add_(at::arange(h, at::kFloat).unsqueeze(1));
  ids.select(2, 2).add_(at::arange(w, at::kFloat).unsqueeze(0));
  return ids.reshape({h * w, 3}).to(dtype);
}

std::vector<int64_t> flux_noise_shape(const FluxLatentGrid& grid, int64_t batch, int64_t channels) {
  if (batch < 1 || channels < 1) {
    throw std::invalid_argument("spdit: noise needs a positive batch and channel count, not " +
                                std::to_string(batch) + " and " + std::to_string(channels));
  }
  return {batch, channels, grid.height, grid.width};
}

at::Tensor flux_initial_noise(const FluxLatentGrid& grid, int64_t batch, int64_t channels,
                              uint64_t seed, at::ScalarType dtype) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto shape = flux_noise_shape(grid, batch, channels);
  return pack_flux_latents(at::randn(shape, gen, at::TensorOptions().dtype(dtype)));
}

}  // namespace spdit::pipelines
