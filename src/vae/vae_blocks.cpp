#include "spdit/vae/vae_blocks.h"

#include <cmath>
#include <string>
#include <vector>

#include "spdit/models/skeleton.h"
#include "spdit/vae/row_bands.h"

namespace spdit::vae {
namespace {

// Every norm of FLUX.1's autoencoder (diffusers' resnet_eps, BFL's Normalize).
constexpr double kNormEps = 1e-6;

// Lazy pages: a real-size autoencoder costs nothing until its checkpoint's
// tensors (or the writer's random ones) replace these.
at::Tensor param(torch::nn::Module& m, const std::string& name, at::IntArrayRef shape,
                 at::ScalarType dtype) {
  return m.register_parameter(name, models::lazy_empty(shape, dtype), /*requires_grad=*/false);
}

}  // namespace

Conv2dImpl::Conv2dImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding,
                       at::ScalarType dtype)
    : kernel_(kernel), stride_(stride), padding_(padding) {
  weight = param(*this, "weight", {out, in, kernel, kernel}, dtype);
  bias = param(*this, "bias", {out}, dtype);
}

at::Tensor Conv2dImpl::forward(const at::Tensor& x) {
  const RowBandScope* bands = RowBandScope::current();
  if (!bands || bands->size() == 1 || kernel_ == 1) {
    return at::conv2d(x, weight, bias, {stride_, stride_}, {padding_, padding_});
  }
  // On a band: the rows the kernel reaches past the band's edges come from
  // the neighbours (zeros at the image's edges, as the padding), so only
  // the width is padded here. The decoder's convolutions are all 3x3,
  // stride 1, padding 1 (or 1x1); the encoder's stride-2 ones do not band.
  if (stride_ != 1 || 2 * padding_ + 1 != kernel_) {
    throw std::logic_error("spdit: a " + std::to_string(kernel_) + "x" + std::to_string(kernel_) +
                           " convolution of stride " + std::to_string(stride_) + " and padding " +
                           std::to_string(padding_) + " cannot run on row bands");
  }
  return banded_conv2d(*bands, x, weight, bias, padding_);
}

VaeLinearImpl::VaeLinearImpl(int64_t in, int64_t out, at::ScalarType dtype) {
  weight = param(*this, "weight", {out, in}, dtype);
  bias = param(*this, "bias", {out}, dtype);
}

at::Tensor VaeLinearImpl::forward(const at::Tensor& x) { return at::linear(x, weight, bias); }

GroupNormImpl::GroupNormImpl(int64_t groups, int64_t channels, at::ScalarType dtype)
    : groups_(groups) {
  weight = param(*this, "weight", {channels}, dtype);
  bias = param(*this, "bias", {channels}, dtype);
}

at::Tensor GroupNormImpl::forward(const at::Tensor& x) {
  const RowBandScope* bands = RowBandScope::current();
  if (bands && bands->size() > 1)
    return banded_group_norm(*bands, x, groups_, weight, bias, kNormEps);
  return at::group_norm(x, groups_, weight, bias, kNormEps);
}

ResnetBlock2DImpl::ResnetBlock2DImpl(int64_t in, int64_t out, int64_t groups,
                                     at::ScalarType dtype) {
  norm1_ = register_module("norm1", GroupNorm(groups, in, dtype));
  conv1_ = register_module("conv1", Conv2d(in, out, 3, 1, 1, dtype));
  norm2_ = register_module("norm2", GroupNorm(groups, out, dtype));
  conv2_ = register_module("conv2", Conv2d(out, out, 3, 1, 1, dtype));
  if (in != out) conv_shortcut_ = register_module("conv_shortcut", Conv2d(in, out, 1, 1, 0, dtype));
}

at::Tensor ResnetBlock2DImpl::forward(at::Tensor x) {
  // SiLU in place on the norms' fresh outputs: one activation fewer alive.
  at::Tensor h = conv1_->forward(silu_in_place(norm1_->forward(x)));
  h = conv2_->forward(silu_in_place(norm2_->forward(h)));
  if (conv_shortcut_) x = conv_shortcut_->forward(x);
  return h.add_(x);
}

VaeAttentionImpl::VaeAttentionImpl(int64_t channels, int64_t groups, at::ScalarType dtype) {
  group_norm_ = register_module("group_norm", GroupNorm(groups, channels, dtype));
  to_q_ = register_module("to_q", VaeLinear(channels, channels, dtype));
  to_k_ = register_module("to_k", VaeLinear(channels, channels, dtype));
  to_v_ = register_module("to_v", VaeLinear(channels, channels, dtype));
  // diffusers' to_out is [Linear, Dropout]; only the Linear has weights.
  auto to_out = register_module("to_out", torch::nn::ModuleList());
  to_out_0_ = VaeLinear(channels, channels, dtype);
  to_out->push_back(to_out_0_);
}

at::Tensor VaeAttentionImpl::forward(const at::Tensor& x) {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  // (B, C, H, W) -> (B, H*W, C): one token per pixel, one head of width C.
  const at::Tensor tokens =
      group_norm_->forward(x).reshape({b, c, h * w}).transpose(1, 2).contiguous();
  const at::Tensor q = to_q_->forward(tokens).unsqueeze(2);
  const at::Tensor k = to_k_->forward(tokens).unsqueeze(2);
  const at::Tensor v = to_v_->forward(tokens).unsqueeze(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(c));
  at::Tensor out = to_out_0_->forward(pixel_attention(q, k, v, scale).squeeze(2));
  // (B, H*W, C) -> (B, C, H, W) as a channels-last view; a view through
  // transpose + reshape gets a batch stride the convolutions do not
  // recognise as channels-last, and they would reorder a copy.
  return out.view({b, h, w, c}).permute({0, 3, 1, 2}).add_(x);
}

Upsample2DImpl::Upsample2DImpl(int64_t channels, at::ScalarType dtype) {
  conv_ = register_module("conv", Conv2d(channels, channels, 3, 1, 1, dtype));
}

at::Tensor Upsample2DImpl::forward(at::Tensor x) {
  at::Tensor up = at::upsample_nearest2d(x, {2 * x.size(2), 2 * x.size(3)});
  x.reset();  // the caller moved it in: free it before the conv's output is allocated
  return conv_->forward(up);
}

Downsample2DImpl::Downsample2DImpl(int64_t channels, at::ScalarType dtype) {
  conv_ = register_module("conv", Conv2d(channels, channels, 3, 2, 0, dtype));
}

at::Tensor Downsample2DImpl::forward(const at::Tensor& x) {
  // Asymmetric padding (right and bottom only), which conv2d cannot express.
  return conv_->forward(at::constant_pad_nd(x, {0, 1, 0, 1}, 0));
}

VaeMidBlockImpl::VaeMidBlockImpl(int64_t channels, int64_t groups, bool attention,
                                 at::ScalarType dtype) {
  resnets_ = register_module("resnets", torch::nn::ModuleList());
  resnets_->push_back(ResnetBlock2D(channels, channels, groups, dtype));
  resnets_->push_back(ResnetBlock2D(channels, channels, groups, dtype));
  attentions_ = register_module("attentions", torch::nn::ModuleList());
  if (attention) attentions_->push_back(VaeAttention(channels, groups, dtype));
}

at::Tensor VaeMidBlockImpl::forward(at::Tensor x) {
  x = resnets_->ptr<ResnetBlock2DImpl>(0)->forward(std::move(x));
  if (!attentions_->is_empty()) x = attentions_->ptr<VaeAttentionImpl>(0)->forward(x);
  return resnets_->ptr<ResnetBlock2DImpl>(1)->forward(std::move(x));
}

}  // namespace spdit::vae
