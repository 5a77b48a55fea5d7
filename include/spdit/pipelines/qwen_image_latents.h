#pragma once
// Qwen-Image's latent bookkeeping, as pipeline_qwenimage.py does it: the
// latent grid and 2x2 packing are FLUX.1's (flux_latents.h: 16 channels ->
// 64 per token); what differs is the shape the VAE takes (one frame:
// (B, 16, 1, h, w)) and the image's place in RoPE. diffusers passes
// img_shapes = [(1, h / 2, w / 2)] and QwenEmbedRope (scale_rope) centres
// the rows and columns on 0: row r of R is at r - (R - R / 2). spdit's
// transformer takes those positions as img_ids (tokens, 3).
//
//   auto grid = flux_latent_grid(1024, 1024);            // 128 x 128 latents
//   auto shape = qwen_img_shape(grid);                   // {1, 64, 64}
//   at::Tensor ids = qwen_image_ids(grid);               // (4096, 3): [0, -32..31, -32..31]
//   at::Tensor z = unpack_qwen_latents(packed, grid);    // (1, 16, 1, 128, 128)
#include <ATen/ATen.h>

#include <array>
#include <cstdint>

#include "spdit/pipelines/flux_latents.h"

namespace spdit::pipelines {

/// img_shapes' entry for one image: (frames 1, grid rows / 2, grid cols / 2).
std::array<int64_t, 3> qwen_img_shape(const FluxLatentGrid& grid);

/// (tokens, 3) float positions [frame, row, col] of the packed tokens in
/// row-major order, as QwenEmbedRope places them (rows and columns centred).
/// The text follows at max(rows / 2, cols / 2) on every axis: the
/// transformer's pos_embed starts it one past the largest image position.
at::Tensor qwen_image_ids(const FluxLatentGrid& grid);

/// _unpack_latents: (B, tokens, C * 4) -> (B, C, 1, h, w), the one-frame
/// video the VAE decodes.
at::Tensor unpack_qwen_latents(const at::Tensor& packed, const FluxLatentGrid& grid);

}  // namespace spdit::pipelines
