#pragma once
// FLUX.1's autoencoder from what a user downloaded: a diffusers model folder
// (its `vae/`), a `vae/` folder (config.json + diffusion_pytorch_model.safetensors),
// Black Forest Labs' `ae.safetensors` (or a folder holding it), in either
// name layout (vae_names.h). Tensors of the compute dtype are used in place
// (views of the file's mapped pages); others are converted.
//
//   auto loaded = load_autoencoder("FLUX.1-dev/", at::kBFloat16);
//   at::Tensor image = loaded.model->decode(z);
#include <ATen/ATen.h>

#include <string>

#include "spdit/vae/autoencoder_kl.h"

namespace spdit::vae {

struct LoadedAutoencoder {
  AutoencoderKL model{nullptr};
  std::string layout;         // "diffusers" or "bfl"
  std::string weights;        // the .safetensors file read
  std::string config_source;  // "<path>/config.json", or what the dimensions were read from
  int64_t in_place = 0;       // tensors used as views of the file
  int64_t converted = 0;      // tensors converted to the compute dtype
};

/// Where the autoencoder of `path` is: the weights file (or folder) to open.
/// A model folder's `vae/` wins over an `ae.safetensors` beside it. Throws
/// saying what a FLUX.1 download holds when there is none.
std::string find_autoencoder(const std::string& path);

/// Loads the autoencoder at `path` (anything find_autoencoder accepts) to
/// compute in `dtype`. The dimensions come from config.json (diffusers) or
/// from the tensors' shapes (ae.safetensors has none: FLUX.1's scaling and
/// shift factors are assumed). Refuses, before anything is loaded, a file
/// that lacks a tensor, holds one of the wrong shape, or holds one no
/// autoencoder has: the message names the file, the tensor in the file's
/// naming and the shapes.
LoadedAutoencoder load_autoencoder(const std::string& path, at::ScalarType dtype = at::kFloat);

}  // namespace spdit::vae
