#pragma once
// Wan2.1's video autoencoder from what a user downloaded: a diffusers model
// folder (its `vae/`: config.json + diffusion_pytorch_model.safetensors), a
// `vae/` folder itself, Wan's original `Wan2.1_VAE.pth` (a PyTorch zip
// checkpoint, Wan's own names, no config: Wan2.1's dimensions, checked
// against the shapes), or the original release folder holding it. Tensors of
// the compute dtype are used in place (views of the file's mapped pages);
// others are converted. Also writes a random-weight `vae/` for new-model.
//
//   auto loaded = load_wan_vae("Wan2.1-T2V-1.3B-Diffusers/", at::kFloat);
//   at::Tensor video = loaded.model->decode(denormalize_wan_latents(latents,
//   loaded.model->config()));
#include <ATen/ATen.h>

#include <cstdint>
#include <string>

#include "spdit/vae/wan_vae.h"
#include "spdit/vae/wan_vae_config.h"

namespace spdit::vae {

struct LoadedWanVae {
  WanVae model{nullptr};
  std::string layout;   // "diffusers" or "wan-original"
  std::string weights;  // the file read
  std::string
      config_source;  // "<path>/config.json", or "Wan2.1's mean and std; dimensions from the ..."
  int64_t in_place = 0;   // tensors used as views of the file
  int64_t converted = 0;  // tensors converted to the compute dtype
};

/// The weights file of the autoencoder at `path`: `vae/diffusion_pytorch_model.safetensors`
/// of a model folder, that file in a `vae/` folder, `Wan2.1_VAE.pth` in a
/// folder, or `path` itself when it is a file. Throws saying what a Wan2.1
/// download holds when there is none.
std::string find_wan_vae(const std::string& path);

/// Loads the autoencoder at `path` (anything find_wan_vae accepts) to compute
/// in `dtype`. Refuses, before anything is loaded, a file that lacks a
/// tensor, holds one of the wrong shape, or holds one the autoencoder does
/// not have: the message names the file, the tensor in the file's naming and
/// the shapes.
LoadedWanVae load_wan_vae(const std::string& path, at::ScalarType dtype = at::kFloat);

/// Creates `dir` (and its parents) and writes config.json and
/// diffusion_pytorch_model.safetensors in `dtype`, diffusers' names: conv
/// weights N(0, 1/fan_in), norm gammas 1 + N(0, 0.1^2), biases N(0, 0.1^2),
/// from one generator seeded `seed` over the names in order, so a seed
/// always gives the same file. Throws naming the path when it cannot write.
void write_random_wan_vae(const std::string& dir, const WanVaeConfig& config, uint64_t seed,
                          at::ScalarType dtype = at::kFloat);

}  // namespace spdit::vae
