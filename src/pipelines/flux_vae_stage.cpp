#include "spdit/pipelines/flux_vae_stage.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include <stdexcept>
#include <string>

namespace spdit::pipelines {

at::Tensor flux_decode_latents(vae::AutoencoderKL& vae, const at::Tensor& latents,
                               const SequenceParallelConfig* bands) {
  const auto& c = vae->config();
  at::NoGradGuard no_grad;
  // In the latents' own dtype, as FluxPipeline divides before decode casts.
  const at::Tensor z = latents / c.scaling_factor + c.shift_factor;
  return bands ? vae->decode(z, *bands) : vae->decode(z);
}

at::Tensor flux_encode_image(vae::AutoencoderKL& vae, const at::Tensor& image,
                             std::optional<uint64_t> sample_seed) {
  const auto& c = vae->config();
  at::NoGradGuard no_grad;
  const at::Tensor moments = vae->encode_moments(image);
  const auto halves = moments.chunk(2, 1);
  at::Tensor z = halves[0];
  if (sample_seed) {
    const at::Tensor std_dev = at::exp(0.5 * halves[1].clamp(-30.0, 20.0));
    auto gen = at::make_generator<at::CPUGeneratorImpl>(*sample_seed);
    // Drawn on the CPU in the moments' dtype (randn_tensor with a CPU generator).
    const at::Tensor eps =
        at::randn(z.sizes(), gen, at::TensorOptions().dtype(z.scalar_type())).to(z.device());
    z = z + std_dev * eps;
  }
  return (z - c.shift_factor) * c.scaling_factor;
}

at::Tensor to_uint8_image(const at::Tensor& decoded) {
  if (decoded.dim() != 4 || !at::isFloatingType(decoded.scalar_type())) {
    throw std::invalid_argument(
        "spdit: to_uint8_image takes a floating-point (B, C, H, W) image, not " +
        c10::str(decoded.sizes()));
  }
  // denormalize in the decoder's dtype, then float32 as pt_to_numpy, then numpy_to_pil.
  const at::Tensor unit = (decoded * 0.5 + 0.5).clamp(0, 1).permute({0, 2, 3, 1}).to(at::kFloat);
  return (unit * 255).round().to(at::kByte).contiguous();
}

at::Tensor from_uint8_image(const at::Tensor& pixels) {
  if (pixels.dim() != 4 || pixels.scalar_type() != at::kByte) {
    throw std::invalid_argument("spdit: from_uint8_image takes uint8 (B, H, W, C) pixels, not " +
                                std::string(c10::toString(pixels.scalar_type())) + " " +
                                c10::str(pixels.sizes()));
  }
  return (pixels.permute({0, 3, 1, 2}).to(at::kFloat) / 255.0 * 2.0 - 1.0).contiguous();
}

}  // namespace spdit::pipelines
