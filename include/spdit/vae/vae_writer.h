#pragma once
// A random-weight autoencoder written as diffusers' `vae/` folder, for
// `spdit new-model` to assemble a model anyone can run without a download.
//
//   write_random_autoencoder("tiny-flux/vae", AutoencoderKLConfig::tiny(), /*seed=*/0);
//   auto loaded = load_autoencoder("tiny-flux/");   // reads it back
#include <ATen/ATen.h>

#include <cstdint>
#include <string>

#include "spdit/vae/autoencoder_kl.h"
#include "spdit/vae/autoencoder_kl_config.h"

namespace spdit::vae {

/// Creates `dir` (and its parents) and writes config.json and
/// diffusion_pytorch_model.safetensors in `dtype`: conv and linear weights
/// N(0, 1/fan_in), norm weights 1 + N(0, 0.1^2), biases N(0, 0.1^2), all
/// from one generator seeded `seed` over the names in order, so a seed
/// always gives the same file. Throws naming the path when it cannot write.
void write_random_autoencoder(const std::string& dir, const AutoencoderKLConfig& config,
                              uint64_t seed, at::ScalarType dtype = at::kFloat);

/// Writes `model`'s own weights (trained ones, e.g. by `spdit train-demo`)
/// the same way, in `dtype`, with `config` as its config.json (which may
/// differ from the model's in the latent scaling and shift factors).
void write_autoencoder(const std::string& dir, AutoencoderKL& model,
                       const AutoencoderKLConfig& config, at::ScalarType dtype = at::kFloat);

}  // namespace spdit::vae
