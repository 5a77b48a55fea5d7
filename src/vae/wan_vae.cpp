#include "spdit/vae/wan_vae.h"

#include <ATen/core/grad_mode.h>
#include <c10/core/InferenceMode.h>

#include <stdexcept>
#include <string>

#include "spdit/vae/row_bands.h"

namespace spdit::vae {
namespace {

std::string shape_text(at::IntArrayRef s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + ")";
}

// Per-channel values shaped to broadcast over dim 1 of a tensor of `dims`
// dimensions.
at::Tensor per_channel(const std::vector<double>& v, int64_t dims) {
  std::vector<int64_t> shape(static_cast<size_t>(dims), 1);
  shape[1] = static_cast<int64_t>(v.size());
  return at::tensor(v, at::kDouble).to(at::kFloat).view(shape);
}

void check_channels(const at::Tensor& x, const WanVaeConfig& c, const char* what) {
  if (x.dim() < 2 || x.size(1) != c.z_dim) {
    throw std::invalid_argument(std::string("spdit: ") + what + " takes latents with " +
                                std::to_string(c.z_dim) + " channels in dim 1, not " +
                                shape_text(x.sizes()));
  }
}

}  // namespace

WanVaeImpl::WanVaeImpl(const WanVaeConfig& config, at::ScalarType dtype)
    : config_(config), dtype_(dtype) {
  config_.validate("the Wan autoencoder's configuration");
  const int64_t z = config_.z_dim;
  encoder_ = register_module("encoder", WanEncoder3d(config_, dtype));
  quant_conv_ = register_module("quant_conv", CausalConv3d(2 * z, 2 * z, Dims3{1, 1, 1},
                                                           Dims3{1, 1, 1}, Dims3{0, 0, 0}, dtype));
  post_quant_conv_ = register_module(
      "post_quant_conv", CausalConv3d(z, z, Dims3{1, 1, 1}, Dims3{1, 1, 1}, Dims3{0, 0, 0}, dtype));
  decoder_ = register_module("decoder", WanDecoder3d(config_, dtype));
}

at::Tensor WanVaeImpl::decode(const at::Tensor& z) { return decode_chunked(z, 1); }

at::Tensor WanVaeImpl::decode(const at::Tensor& z, const SequenceParallelConfig& bands) {
  if (!bands.is_initialized() || bands.get_world_size() == 1 || z.dim() != 5 ||
      z.size(3) < bands.get_world_size()) {
    return decode(z);
  }
  at::NoGradGuard no_grad;
  RowBandScope scope(bands);
  return gather_bands(scope, decode_chunked(take_band(scope, z, /*dim=*/3), 1), /*dim=*/3);
}

at::Tensor WanVaeImpl::decode_chunked(const at::Tensor& z, int64_t latent_frames_per_chunk) {
  if (z.dim() != 5 || z.size(1) != config_.z_dim || z.size(2) < 1) {
    throw std::invalid_argument("spdit: the Wan autoencoder decodes latents (B, " +
                                std::to_string(config_.z_dim) + ", T, h, w), not " +
                                shape_text(z.sizes()));
  }
  if (latent_frames_per_chunk < 1) {
    throw std::invalid_argument("spdit: latent frames per chunk must be at least 1, not " +
                                std::to_string(latent_frames_per_chunk));
  }
  // No grad, but not InferenceMode: on row bands Gloo's threads write into
  // tensors made here, which InferenceMode would forbid outside its scope.
  at::NoGradGuard no_grad;
  const int64_t latent_frames = z.size(2), s = config_.spatial_scale_factor();
  const at::Tensor x = post_quant_conv_->forward(z.to(dtype_));
  // The output is written chunk by chunk: no concatenation of a growing video.
  at::Tensor video = at::empty(
      {z.size(0), 3, config_.frames_for_latent_frames(latent_frames), s * z.size(3), s * z.size(4)},
      x.options());
  CausalCache cache;
  int64_t frame = 0;
  for (int64_t t = 0; t < latent_frames;) {
    // The first latent frame alone: the time upsampling starts after it.
    const int64_t n = t == 0 ? 1 : std::min(latent_frames_per_chunk, latent_frames - t);
    cache.start_chunk();
    const at::Tensor out = decoder_->forward(x.narrow(2, t, n), &cache);
    video.narrow(2, frame, out.size(2)).copy_(out);
    frame += out.size(2);
    t += n;
  }
  return video.clamp_(-1.0, 1.0);
}

at::Tensor WanVaeImpl::encode_moments(const at::Tensor& video) {
  return encode_moments_chunked(video, 1);
}

at::Tensor WanVaeImpl::encode_moments_chunked(const at::Tensor& video,
                                              int64_t latent_frames_per_chunk) {
  const int64_t s = config_.spatial_scale_factor(), f = config_.temporal_scale_factor();
  if (video.dim() != 5 || video.size(1) != 3 || video.size(2) < 1 || (video.size(2) - 1) % f != 0 ||
      video.size(3) % s != 0 || video.size(4) % s != 0) {
    throw std::invalid_argument(
        "spdit: the Wan autoencoder encodes video (B, 3, F, H, W) with F = 1 "
        "+ " +
        std::to_string(f) + "k frames and H, W multiples of " + std::to_string(s) + ", not " +
        shape_text(video.sizes()));
  }
  if (latent_frames_per_chunk < 1) {
    throw std::invalid_argument("spdit: latent frames per chunk must be at least 1, not " +
                                std::to_string(latent_frames_per_chunk));
  }
  c10::InferenceMode guard;
  const int64_t frames = video.size(2);
  at::Tensor latents =
      at::empty({video.size(0), 2 * config_.z_dim, config_.latent_frames_for_frames(frames),
                 video.size(3) / s, video.size(4) / s},
                video.options().dtype(dtype_));
  CausalCache cache;
  int64_t latent = 0;
  for (int64_t t = 0; t < frames;) {
    // The first frame alone, then f frames per latent frame.
    const int64_t n = t == 0 ? 1 : std::min(f * latent_frames_per_chunk, frames - t);
    cache.start_chunk();
    const at::Tensor out = encoder_->forward(video.narrow(2, t, n).to(dtype_), &cache);
    latents.narrow(2, latent, out.size(2)).copy_(out);
    latent += out.size(2);
    t += n;
  }
  return quant_conv_->forward(latents);
}

at::Tensor WanVaeImpl::encode_mean(const at::Tensor& video) {
  return encode_moments(video).narrow(1, 0, config_.z_dim);
}

at::Tensor denormalize_wan_latents(const at::Tensor& latents, const WanVaeConfig& config) {
  check_channels(latents, config, "denormalize_wan_latents");
  // diffusers' WanPipeline: latents / (1 / std) + mean.
  const int64_t d = latents.dim();
  return latents.to(at::kFloat) / per_channel(config.latents_std, d).reciprocal() +
         per_channel(config.latents_mean, d);
}

at::Tensor normalize_wan_latents(const at::Tensor& z, const WanVaeConfig& config) {
  check_channels(z, config, "normalize_wan_latents");
  // Wan's WanVAE.encode: (mu - mean) * (1 / std).
  const int64_t d = z.dim();
  return (z.to(at::kFloat) - per_channel(config.latents_mean, d)) *
         per_channel(config.latents_std, d).reciprocal();
}

}  // namespace spdit::vae
