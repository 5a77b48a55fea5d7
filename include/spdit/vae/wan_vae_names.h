#pragma once
// The two layouts Wan2.1's autoencoder is published in, and the map between
// them. diffusers (`vae/diffusion_pytorch_model.safetensors`):
// `decoder.up_blocks.1.resnets.0.conv1.weight`, `encoder.down_blocks.2.norm1.gamma`,
// `quant_conv`, `post_quant_conv`. Wan (`Wan2.1_VAE.pth`): the same tensors
// in flat sequences, `decoder.upsamples.4.residual.2.weight`,
// `encoder.downsamples.2.residual.0.gamma`, `conv1`, `conv2`, where a
// residual block's `residual.0/2/3/6` are diffusers' norm1/conv1/norm2/conv2
// and `shortcut` its conv_shortcut; `middle.0/1/2` are mid_block.resnets.0,
// attentions.0, resnets.1; `head.0/2` are norm_out/conv_out.
//
//   wan_vae_name_to_diffusers("decoder.upsamples.3.resample.1.weight", WanVaeConfig::wan21())
//       == "decoder.up_blocks.0.upsamplers.0.resample.1.weight"
#include <string>
#include <vector>

#include "spdit/vae/wan_vae_config.h"

namespace spdit::vae {

/// "diffusers" or "wan-original", from the names (`decoder.mid_block.` or
/// `decoder.middle.`). Throws naming `file` and a few of its names when
/// neither is there (not this autoencoder, or another model's file).
std::string detect_wan_vae_layout(const std::vector<std::string>& names, const std::string& file);

/// diffusers' name for one of Wan's names, for an autoencoder of `config`'s
/// levels and blocks; "" for a name that is no part of it.
std::string wan_vae_name_to_diffusers(const std::string& name, const WanVaeConfig& config);

/// The inverse (for messages that name a tensor as the user's file does).
std::string diffusers_vae_name_to_wan(const std::string& name, const WanVaeConfig& config);

}  // namespace spdit::vae
