#pragma once
// Wan2.1's video autoencoder (diffusers' AutoencoderKLWan; Wan's WanVAE_):
// 16 latent channels, 4x in time and 8x in space. A video of 1 + 4k frames
// has 1 + k latent frames: the first frame is encoded alone, then each four.
// Parameter paths are diffusers' names (`decoder.up_blocks.0.resnets.1.conv2.weight`);
// Wan's own `Wan2.1_VAE.pth` is renamed to them when loaded (wan_vae_names.h).
// Qwen-Image uses it for single images (T = 1).
//
//   WanVae vae(WanVaeConfig::wan21());                  // then load_wan_vae fills it
//   at::Tensor z = denormalize_wan_latents(latents, vae->config());
//   at::Tensor video = vae->decode(z);                  // (B, 3, 1 + 4 (T - 1), 8 h, 8 w)
//
// Decoding and encoding go chunk by chunk through the causal cache, as the
// reference does, so their working memory does not grow with the video's
// length (only the output does).
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "spdit/plan/sp_config.h"
#include "spdit/vae/wan_vae_blocks.h"
#include "spdit/vae/wan_vae_config.h"

namespace spdit::vae {

class WanVaeImpl : public torch::nn::Module {
 public:
  /// Parameters in `dtype` (on lazy pages until loaded), the dtype it computes in.
  explicit WanVaeImpl(const WanVaeConfig& config, at::ScalarType dtype = at::kFloat);

  /// Latents as the decoder takes them (denormalised: see
  /// denormalize_wan_latents), (B, z_dim, T, h, w) of any floating dtype ->
  /// video (B, 3, 1 + 4 (T - 1), 8 h, 8 w) in dtype(), clamped to [-1, 1]
  /// as diffusers' decode does. One latent frame per chunk, as the reference.
  at::Tensor decode(const at::Tensor& z);
  /// The same decode with the work split by rows across the ranks of
  /// `bands` (set up with ulysses 1, ring P: row_bands.h); every rank passes
  /// the same whole z and gets the whole video, holding its band's
  /// activations and causal cache. With fewer latent rows than ranks, every
  /// rank decodes all of it.
  at::Tensor decode(const at::Tensor& z, const SequenceParallelConfig& bands);
  /// The same result with `latent_frames_per_chunk` latent frames per chunk
  /// after the first (which is always one frame alone: the time upsampling
  /// treats it apart). More frames per chunk: fewer, larger convolutions,
  /// more memory. Throws for a count below 1.
  at::Tensor decode_chunked(const at::Tensor& z, int64_t latent_frames_per_chunk);

  /// The encoder's moments after quant_conv, (B, 2 z_dim, T', H / 8, W / 8):
  /// mean in the first z_dim channels, log-variance in the rest (not
  /// normalised: see normalize_wan_latents). `video` (B, 3, F, H, W) in
  /// [-1, 1], F = 1 + 4k, H and W multiples of 8; throws naming the shape
  /// otherwise. First frame alone, then four frames per chunk, as the reference.
  at::Tensor encode_moments(const at::Tensor& video);
  /// The same with `latent_frames_per_chunk` x 4 frames per chunk after the first.
  at::Tensor encode_moments_chunked(const at::Tensor& video, int64_t latent_frames_per_chunk);
  /// The mean of encode_moments (what a pipeline takes as "argmax" latents).
  at::Tensor encode_mean(const at::Tensor& video);

  const WanVaeConfig& config() const { return config_; }
  at::ScalarType dtype() const { return dtype_; }

 private:
  WanVaeConfig config_;
  at::ScalarType dtype_;
  WanEncoder3d encoder_{nullptr};
  CausalConv3d quant_conv_{nullptr}, post_quant_conv_{nullptr};
  WanDecoder3d decoder_{nullptr};
};
TORCH_MODULE(WanVae);

/// What the transformer's latents become for the decoder, as diffusers'
/// WanPipeline does: z = latents * std + mean, per channel (dim 1). Float32 out.
at::Tensor denormalize_wan_latents(const at::Tensor& latents, const WanVaeConfig& config);
/// The inverse, for encoded video: (z - mean) / std (Wan's WanVAE.encode scale).
at::Tensor normalize_wan_latents(const at::Tensor& z, const WanVaeConfig& config);

}  // namespace spdit::vae
