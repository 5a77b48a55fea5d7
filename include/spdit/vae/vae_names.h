#pragma once
// The two layouts FLUX.1's autoencoder is published in, and the map between
// them. diffusers (`vae/diffusion_pytorch_model.safetensors`):
// `decoder.mid_block.attentions.0.to_q.weight` (a Linear, (C, C)),
// `decoder.up_blocks.N.resnets.M.conv_shortcut`. Black Forest Labs
// (`ae.safetensors`): `decoder.mid.attn_1.q.weight` (a 1x1 conv, (C, C, 1, 1)),
// `decoder.up.N.block.M.nin_shortcut`, with the decoder's levels numbered
// from the full-resolution end (BFL's up.N is diffusers' up_blocks.(L-1-N)).
//
//   auto layout = detect_vae_layout(names, "ae.safetensors");   // {"bfl", ""}
//   bfl_vae_name_to_diffusers("decoder.up.3.upsample.conv.weight", 4)
//       == "decoder.up_blocks.0.upsamplers.0.conv.weight"
#include <cstdint>
#include <string>
#include <vector>

namespace spdit::vae {

struct VaeLayout {
  std::string name;    // "diffusers" or "bfl"
  std::string prefix;  // stripped from every name: "", "vae." or "first_stage_model."
};

/// Which layout `names` (a checkpoint's tensor names) are in, from the
/// decoder's mid block. Throws naming `file` and a few of its names when
/// neither is there (not an autoencoder, or another model's file).
VaeLayout detect_vae_layout(const std::vector<std::string>& names, const std::string& file);

/// diffusers' name for a BFL name of an autoencoder with `levels`
/// resolutions, or "" for a name that is no part of FLUX.1's autoencoder.
std::string bfl_vae_name_to_diffusers(const std::string& name, int64_t levels);

/// The inverse: BFL's name for a diffusers name (for messages that name a
/// tensor as the user's file does).
std::string diffusers_vae_name_to_bfl(const std::string& name, int64_t levels);

/// Whether a diffusers name is a mid-block attention projection: BFL stores
/// those as 1x1 convs, (C, C, 1, 1) for diffusers' (C, C).
bool is_vae_attention_projection(const std::string& diffusers_name);

}  // namespace spdit::vae
