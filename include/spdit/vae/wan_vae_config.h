#pragma once
// The dimensions of Wan2.1's video autoencoder (diffusers' AutoencoderKLWan,
// Wan's own WanVAE_), read from the `vae/config.json` diffusers ships, taken
// as Wan2.1's defaults for the original `Wan2.1_VAE.pth` (which has no
// config), and written back for a new model folder. Qwen-Image uses the same
// autoencoder for one frame.
//
//   auto cfg = WanVaeConfig::from_json(text, "Wan2.1-T2V-1.3B-Diffusers/vae/config.json");
//   int64_t t = cfg.temporal_scale_factor();   // 4: frames per latent frame
//   int64_t s = cfg.spatial_scale_factor();    // 8: pixels per latent, each way
#include <cstdint>
#include <string>
#include <vector>

namespace spdit::vae {

struct WanVaeConfig {
  int64_t base_dim = 96;
  int64_t z_dim = 16;
  std::vector<int64_t> dim_mult = {1, 2, 4, 4};
  int64_t num_res_blocks = 2;
  /// Per encoder level but the last: whether it also halves time. The
  /// decoder upsamples in the reverse order.
  std::vector<bool> temperal_downsample = {false, true, true};  // diffusers' spelling
  /// Per latent channel: the pipeline's latents are (z - mean) / std.
  std::vector<double> latents_mean, latents_std;

  /// Wan2.1's autoencoder (diffusers' AutoencoderKLWan defaults; Wan's
  /// `_video_vae` and WanVAE's mean and std).
  static WanVaeConfig wan21();
  /// A small one for tests and `spdit new-model --preset tiny`: base_dim 8,
  /// one resnet per level, Wan2.1's four levels (so 4x in time, 8x in space)
  /// and 16 latent channels with Wan2.1's mean and std.
  static WanVaeConfig tiny();

  /// Reads diffusers' config.json text. Refuses, naming `source` and the
  /// field, what this autoencoder cannot be: a class other than
  /// AutoencoderKLWan or AutoencoderKLQwenImage (the same network), Wan2.2's
  /// residual blocks (`is_residual`), a `patch_size`, a decoder_base_dim
  /// other than base_dim, attention scales, mean/std not one per channel.
  static WanVaeConfig from_json(const std::string& text, const std::string& source);
  /// diffusers' config.json for these dimensions.
  std::string to_json() const;

  /// 2^(levels - 1): pixels per latent, each way (8).
  int64_t spatial_scale_factor() const;
  /// 2^(time-halving levels): frames per latent frame after the first (4).
  int64_t temporal_scale_factor() const;
  /// Frames a video of `latent_frames` decodes to: 1 + 4 (T - 1).
  int64_t frames_for_latent_frames(int64_t latent_frames) const;
  /// Latent frames of a video of `frames` (which must be 1 + 4k): 1 + (F - 1) / 4.
  int64_t latent_frames_for_frames(int64_t frames) const;
  /// Throws naming `source` and the problem when the dimensions cannot build
  /// a model (no levels, a downsample flag per level but the last missing,
  /// mean/std of the wrong length, a zero std).
  void validate(const std::string& source) const;
};

}  // namespace spdit::vae
