#pragma once
// Private: each model file provides its pipeline.
#include "spdit/models/pipeline.h"

namespace spdit::models {
std::unique_ptr<Pipeline> make_flux_pipeline(const std::string& preset, uint64_t seed);
std::unique_ptr<Pipeline> make_wan_pipeline(const std::string& preset, uint64_t seed);
std::unique_ptr<Pipeline> make_qwen_image_pipeline(const std::string& preset, uint64_t seed);

/// Height/width must be positive multiples of 16 (8x VAE, 2x2 patches).
void check_image_size(const RunSize& size);
/// Packed 2x2 positions (S, 3): (frame, row, col).
at::Tensor image_ids(int64_t latent_h, int64_t latent_w, int64_t frame = 0);
}  // namespace spdit::models
