#include "png_writer.h"

#include <png.h>

#include <fstream>
#include <stdexcept>
#include <vector>

namespace spdit::cli {
namespace {

void append(png_structp png, png_bytep data, png_size_t n) {
  static_cast<std::string*>(png_get_io_ptr(png))->append(reinterpret_cast<const char*>(data), n);
}

}  // namespace

std::string encode_png(const at::Tensor& rgb, int upscale) {
  auto img = rgb.to(at::kFloat).clamp(0, 1).mul(255).round().to(at::kByte);
  if (upscale > 1) img = img.repeat_interleave(upscale, 1).repeat_interleave(upscale, 2);
  img = img.permute({1, 2, 0}).contiguous();  // (h, w, 3)
  const int h = static_cast<int>(img.size(0)), w = static_cast<int>(img.size(1));
  std::string out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw std::runtime_error("libpng failed encoding a " + std::to_string(w) + "x" +
                             std::to_string(h) + " picture");
  }
  png_set_write_fn(png, &out, append, nullptr);
  png_set_IHDR(png, info, w, h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  const uint8_t* data = img.data_ptr<uint8_t>();
  for (int y = 0; y < h; ++y)
    png_write_row(png, const_cast<uint8_t*>(data + static_cast<size_t>(y) * w * 3));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

void write_png(const std::string& path, const at::Tensor& rgb, int upscale) {
  const std::string bytes = encode_png(rgb, upscale);
  std::ofstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open '" + path + "' for writing");
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f.flush()) throw std::runtime_error("error writing '" + path + "'");
}

}  // namespace spdit::cli
