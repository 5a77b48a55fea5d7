#pragma once
// The dimensions of diffusers' AutoencoderKL as FLUX.1 uses it, read from the
// `vae/config.json` diffusers ships (or the defaults Black Forest Labs' own
// ae.safetensors is built with), and written back for a new model folder.
//
//   auto cfg = AutoencoderKLConfig::from_json(text, "FLUX.1-dev/vae/config.json");
//   int64_t f = cfg.vae_scale_factor();   // 8: pixels per latent, each way
#include <cstdint>
#include <string>
#include <vector>

namespace spdit::vae {

struct AutoencoderKLConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  int64_t latent_channels = 16;
  std::vector<int64_t> block_out_channels = {128, 256, 512, 512};
  int64_t layers_per_block = 2;
  int64_t norm_num_groups = 32;
  bool mid_block_add_attention = true;
  double scaling_factor = 0.3611;
  double shift_factor = 0.1159;

  /// FLUX.1's autoencoder (dev, schnell and the other FLUX.1 releases share it).
  static AutoencoderKLConfig flux();
  /// A small one for tests and `spdit new-model --preset tiny`: two levels of
  /// 32 and 64 channels, one resnet per encoder level, 16 latent channels.
  static AutoencoderKLConfig tiny();

  /// Reads diffusers' config.json text. Refuses, naming `source` and the
  /// field, what this autoencoder cannot be: another class, quant convs,
  /// block types or activations other than FLUX.1's, a missing shift factor.
  static AutoencoderKLConfig from_json(const std::string& text, const std::string& source);
  /// diffusers' config.json for these dimensions.
  std::string to_json() const;

  /// 2^(levels - 1): what FluxPipeline calls vae_scale_factor.
  int64_t vae_scale_factor() const;
  /// Throws naming the problem when the dimensions cannot build a model
  /// (groups not dividing a width, an empty level list, ...).
  void validate(const std::string& source) const;
};

}  // namespace spdit::vae
