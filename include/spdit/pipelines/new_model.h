#pragma once
// A complete model folder in diffusers' layout with random (seeded) weights,
// so that the whole pipeline can be tried, and tested, without a download:
// model_index.json, scheduler/, transformer/, and for FLUX.1 the tokenizers
// (small but real vocabularies), the text encoders and the autoencoder.
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace spdit::pipelines {

struct NewModelOptions {
  std::string model = "flux";   // flux | wan | qwen-image
  std::string preset = "tiny";  // tiny | small | full
  uint64_t seed = 0;
  /// The dtype the weights are stored in; Undefined: as the model publishes
  /// them (Flux and Qwen-Image bf16, Wan fp32).
  at::ScalarType dtype = at::ScalarType::Undefined;
  std::string variant = "dev";  // FLUX.1: dev (guidance embedder) or schnell
};

/// Writes the folder `dir` (created; refused when it exists and is not
/// empty, so nothing is overwritten). Returns the components written.
std::vector<std::string> write_new_model(const std::string& dir, const NewModelOptions& options);

}  // namespace spdit::pipelines
