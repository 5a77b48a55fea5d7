#include "spdit/pipelines/qwen_image_latents.h"

namespace spdit::pipelines {

std::array<int64_t, 3> qwen_img_shape(const FluxLatentGrid& grid) {
  return {1, grid.height / 2, grid.width / 2};
}

at::Tensor qwen_image_ids(const FluxLatentGrid& grid) {
  const auto [frames, rows, cols] = qwen_img_shape(grid);
  (void)frames;  // one image: frame position 0
  // scale_rope: the negative half first, -(R - R / 2) .. -1, then 0 .. R / 2 - 1.
  const auto r = at::arange(rows, at::kFloat) - static_cast<double>(rows - rows / 2);
  const auto c = at::arange(cols, at::kFloat) - static_cast<double>(cols - cols / 2);
  auto ids = at::zeros({rows, cols, 3}, at::kFloat);
  ids.select(2, 1).copy_(r.unsqueeze(1).expand({rows, cols}));
  ids.select(2, 2).copy_(c.unsqueeze(0).expand({rows, cols}));
  return ids.view({rows * cols, 3});
}

at::Tensor unpack_qwen_latents(const at::Tensor& packed, const FluxLatentGrid& grid) {
  return unpack_flux_latents(packed, grid).unsqueeze(2);
}

}  // namespace spdit::pipelines
