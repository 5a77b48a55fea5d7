#pragma once
// The pipeline's conventions around FLUX.1's autoencoder (diffusers'
// FluxPipeline, FluxImg2ImgPipeline and VaeImageProcessor): latents are
// stored scaled, z_stored = (z - shift_factor) * scaling_factor; images are
// [-1, 1] floats (B, 3, H, W) to the autoencoder and uint8 (B, H, W, 3) to
// users.
//
//   at::Tensor latents = unpack_flux_latents(packed, grid);
//   at::Tensor rgb = to_uint8_image(flux_decode_latents(vae, latents));
#include <ATen/ATen.h>

#include <cstdint>
#include <optional>

#include "spdit/vae/autoencoder_kl.h"

namespace spdit::pipelines {

/// Stored latents (B, C, h, w) -> the decoder's image (B, 3, H, W), roughly
/// in [-1, 1], in the autoencoder's dtype: decode(latents / scaling + shift).
/// With `bands`, the decode is split by rows across its ranks (each passes
/// the same latents and gets the whole image: AutoencoderKL::decode).
at::Tensor flux_decode_latents(vae::AutoencoderKL& vae, const at::Tensor& latents,
                               const SequenceParallelConfig* bands = nullptr);

/// An image (B, 3, H, W) in [-1, 1] -> stored latents (B, C, H/f, W/f): the
/// posterior's mean, or with `sample_seed` a draw mean + std * randn from a
/// CPU generator of that seed (diffusers' DiagonalGaussianDistribution.sample,
/// log-variance clamped to [-30, 20]); then (z - shift) * scaling.
at::Tensor flux_encode_image(vae::AutoencoderKL& vae, const at::Tensor& image,
                             std::optional<uint64_t> sample_seed = std::nullopt);

/// VaeImageProcessor.postprocess to pixels: (x * 0.5 + 0.5).clamp(0, 1), then
/// * 255 rounded (half to even, as numpy): (B, 3, H, W) -> uint8 (B, H, W, 3).
at::Tensor to_uint8_image(const at::Tensor& decoded);

/// The inverse for an input image: uint8 (B, H, W, 3) -> float32 (B, 3, H, W)
/// in [-1, 1] (x / 255 * 2 - 1, VaeImageProcessor.preprocess's normalize).
at::Tensor from_uint8_image(const at::Tensor& pixels);

}  // namespace spdit::pipelines
