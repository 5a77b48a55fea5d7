#pragma once
// diffusers' AutoencoderKL (models/autoencoders/vae.py Encoder and Decoder) as
// FLUX.1 configures it: no quant convs, a mid block with one attention.
// Parameter paths are diffusers' names (`decoder.up_blocks.0.resnets.1.conv2.weight`);
// Black Forest Labs' ae.safetensors is renamed to them when loaded
// (vae_names.h). Built on lazy pages: load_autoencoder (vae_loader.h) puts
// the checkpoint's tensors in.
//
//   AutoencoderKL vae(AutoencoderKLConfig::flux());
//   at::Tensor image = vae->decode(z);   // z: (B, 16, H/8, W/8), unscaled
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include "spdit/plan/sp_config.h"
#include "spdit/vae/autoencoder_kl_config.h"
#include "spdit/vae/vae_blocks.h"

namespace spdit::vae {

/// Image (B, in, H, W) -> moments (B, 2 * latent, H / f, W / f): mean, then log-variance.
class VaeEncoderImpl : public torch::nn::Module {
 public:
  VaeEncoderImpl(const AutoencoderKLConfig& c, at::ScalarType dtype);
  at::Tensor forward(const at::Tensor& x);

 private:
  Conv2d conv_in_{nullptr}, conv_out_{nullptr};
  torch::nn::ModuleList down_blocks_{nullptr};
  VaeMidBlock mid_block_{nullptr};
  GroupNorm conv_norm_out_{nullptr};
};
TORCH_MODULE(VaeEncoder);

/// Latents (B, latent, h, w) -> image (B, out, h * f, w * f), roughly in [-1, 1].
class VaeDecoderImpl : public torch::nn::Module {
 public:
  VaeDecoderImpl(const AutoencoderKLConfig& c, at::ScalarType dtype);
  at::Tensor forward(const at::Tensor& z);

 private:
  Conv2d conv_in_{nullptr}, conv_out_{nullptr};
  VaeMidBlock mid_block_{nullptr};
  torch::nn::ModuleList up_blocks_{nullptr};
  GroupNorm conv_norm_out_{nullptr};
};
TORCH_MODULE(VaeDecoder);

class AutoencoderKLImpl : public torch::nn::Module {
 public:
  /// Parameters in `dtype`, the dtype the autoencoder computes in.
  explicit AutoencoderKLImpl(const AutoencoderKLConfig& config, at::ScalarType dtype = at::kFloat);

  /// The decoder on latents as the decoder takes them (already divided by
  /// the scaling factor and shifted: see pipelines/flux_vae_stage.h for the
  /// pipeline's conversion). Input of any floating dtype; output in dtype().
  at::Tensor decode(const at::Tensor& z);
  /// The same decode with the work split by rows across the ranks of
  /// `bands` (set up with ulysses 1, ring P: row_bands.h); every rank passes
  /// the same whole z and gets the whole image. Each rank's activations are
  /// its band's, 1/P of one rank's plus one halo row per convolution. With
  /// fewer latent rows than ranks, every rank decodes all of it.
  at::Tensor decode(const at::Tensor& z, const SequenceParallelConfig& bands);
  /// The encoder's moments: mean in the first `latent_channels` channels,
  /// log-variance in the rest. Height and width must be multiples of
  /// vae_scale_factor().
  at::Tensor encode_moments(const at::Tensor& image);

  const AutoencoderKLConfig& config() const { return config_; }
  at::ScalarType dtype() const { return dtype_; }

 private:
  AutoencoderKLConfig config_;
  at::ScalarType dtype_;
  VaeEncoder encoder_{nullptr};
  VaeDecoder decoder_{nullptr};
};
TORCH_MODULE(AutoencoderKL);

}  // namespace spdit::vae
