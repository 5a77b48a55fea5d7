#pragma once
// FluxPipeline's latent bookkeeping: the latent grid an image size gets
// (height and width floored to multiples of 2 * vae_scale_factor), 2x2
// patch packing into tokens and back, the image position ids, and the
// seeded initial noise, exactly as pipeline_flux.py builds them.
//
//   auto grid = flux_latent_grid(1024, 1024);               // 128 x 128, 4096 tokens
//   at::Tensor noise = flux_initial_noise(grid, 1, 16, 0, at::kBFloat16);   // packed
//   at::Tensor ids = flux_latent_image_ids(grid);           // (4096, 3)
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace spdit::pipelines {

/// The latent grid of an image: height and width in latent pixels (even).
struct FluxLatentGrid {
  int64_t height = 0;
  int64_t width = 0;
  int64_t vae_scale_factor = 8;
  /// Packed tokens: (height / 2) * (width / 2), the scheduler's image_seq_len.
  int64_t tokens() const { return (height / 2) * (width / 2); }
  /// The image size the decoder returns (the floored request).
  int64_t image_height() const { return height * vae_scale_factor; }
  int64_t image_width() const { return width * vae_scale_factor; }
};

/// 2 * (size // (vae_scale_factor * 2)) each way, as prepare_latents and
/// _unpack_latents compute it. Throws for a size under 2 * vae_scale_factor
/// (an empty grid) or a non-positive factor.
FluxLatentGrid flux_latent_grid(int64_t image_height, int64_t image_width,
                                int64_t vae_scale_factor = 8);

/// _pack_latents: (B, C, h, w) -> (B, (h/2) * (w/2), C * 4), a token per 2x2
/// patch, channels-major within the token.
at::Tensor pack_flux_latents(const at::Tensor& latents);

/// _unpack_latents: (B, tokens, C * 4) -> (B, C, h, w) for `grid`.
at::Tensor unpack_flux_latents(const at::Tensor& packed, const FluxLatentGrid& grid);

/// _prepare_latent_image_ids: (tokens, 3) rows [0, row, col] in row-major
/// token order, in `dtype`.
at::Tensor flux_latent_image_ids(const FluxLatentGrid& grid, at::ScalarType dtype = at::kFloat);

/// The unpacked noise shape prepare_latents draws: (batch, channels, h, w);
/// channels is the transformer's in_channels / 4 (16 for FLUX.1).
std::vector<int64_t> flux_noise_shape(const FluxLatentGrid& grid, int64_t batch, int64_t channels);

/// prepare_latents' noise, packed: randn of flux_noise_shape in `dtype` from a
/// CPU generator seeded `seed` (diffusers' randn_tensor with
/// torch.Generator("cpu").manual_seed(seed)); the same values bit for bit,
/// which depend on the dtype (a bf16 draw is not a rounded float32 draw).
at::Tensor flux_initial_noise(const FluxLatentGrid& grid, int64_t batch, int64_t channels,
                              uint64_t seed, at::ScalarType dtype = at::kFloat);

}  // namespace spdit::pipelines
