#pragma once
// Video out through Debian's FFmpeg libraries: H.264 (libx264, yuv420p, the
// pixel format players take) in an MP4 file.
//
//   write_mp4("fox.mp4", frames, 16);   // frames (F, H, W, 3) uint8 RGB
#include <ATen/ATen.h>

#include <string>

namespace spdit::cli {

/// Encodes `frames` (F, H, W, 3) uint8 RGB at `fps` frames a second. Throws
/// naming the file and what FFmpeg said when the file cannot be written, and
/// naming the size when H or W is odd (4:2:0 chroma needs even sizes).
void write_mp4(const std::string& path, const at::Tensor& frames, int fps);

}  // namespace spdit::cli
