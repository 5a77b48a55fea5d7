#pragma once
#include <ATen/ATen.h>

#include <string>

namespace spdit::cli {
/// Writes a (3, h, w) float image in [0, 1] as an 8-bit RGB PNG, scaled up by
/// an integer factor (latents are small).
void write_png(const std::string& path, const at::Tensor& rgb, int upscale = 8);
/// The same PNG as bytes (what write_png writes), for a server's answer.
std::string encode_png(const at::Tensor& rgb, int upscale = 1);
}  // namespace spdit::cli
