#pragma once
// The layers of diffusers' AutoencoderKL (models/resnet.py ResnetBlock2D,
// Upsample2D, Downsample2D; attention_processor.py Attention as the VAE's mid
// block uses it), named as diffusers names them so that parameter paths are
// the checkpoint's keys. Parameters start on lazy pages (nothing resident)
// for a checkpoint's tensors to replace; they never require grad.
//
//   ResnetBlock2D block(512, 256, /*groups=*/32, at::kFloat);
//   at::Tensor y = block->forward(std::move(x));   // x's memory can go early
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

namespace spdit::vae {

/// SiLU in place on a fresh activation (one fewer alive at once); returns it.
inline at::Tensor silu_in_place(at::Tensor x) {
  at::silu_(x);
  return x;
}

/// A 2-d convolution's weight (out, in, k, k) and bias (out).
class Conv2dImpl : public torch::nn::Module {
 public:
  Conv2dImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding,
             at::ScalarType dtype);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight, bias;

 private:
  int64_t kernel_, stride_, padding_;
};
TORCH_MODULE(Conv2d);

/// A linear layer's weight (out, in) and bias (out).
class VaeLinearImpl : public torch::nn::Module {
 public:
  VaeLinearImpl(int64_t in, int64_t out, at::ScalarType dtype);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight, bias;
};
TORCH_MODULE(VaeLinear);

/// GroupNorm with affine weight and bias, eps 1e-6 as every norm of the autoencoder.
class GroupNormImpl : public torch::nn::Module {
 public:
  GroupNormImpl(int64_t groups, int64_t channels, at::ScalarType dtype);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight, bias;

 private:
  int64_t groups_;
};
TORCH_MODULE(GroupNorm);

/// diffusers' ResnetBlock2D without time embedding: norm1, SiLU, conv1,
/// norm2, SiLU, conv2, plus the input (through conv_shortcut, a 1x1 conv,
/// when the widths differ).
class ResnetBlock2DImpl : public torch::nn::Module {
 public:
  ResnetBlock2DImpl(int64_t in, int64_t out, int64_t groups, at::ScalarType dtype);
  /// Takes x by value: at 1024 x 1024 each activation is hundreds of MB, and
  /// the caller's copy is released as soon as the shortcut has read it.
  at::Tensor forward(at::Tensor x);

 private:
  GroupNorm norm1_{nullptr}, norm2_{nullptr};
  Conv2d conv1_{nullptr}, conv2_{nullptr}, conv_shortcut_{nullptr};
};
TORCH_MODULE(ResnetBlock2D);

/// The mid block's single-head self-attention over all pixels: group_norm,
/// to_q / to_k / to_v (Linear), to_out.0, plus the input. Runs on spdit's
/// blocked attention kernel, so a 128 x 128 latent (16,384 tokens) never
/// holds the 1 GB score matrix.
class VaeAttentionImpl : public torch::nn::Module {
 public:
  VaeAttentionImpl(int64_t channels, int64_t groups, at::ScalarType dtype);
  at::Tensor forward(const at::Tensor& x);

 private:
  GroupNorm group_norm_{nullptr};
  VaeLinear to_q_{nullptr}, to_k_{nullptr}, to_v_{nullptr}, to_out_0_{nullptr};
};
TORCH_MODULE(VaeAttention);

/// Nearest-neighbour x2, then a 3x3 conv (`conv`).
class Upsample2DImpl : public torch::nn::Module {
 public:
  Upsample2DImpl(int64_t channels, at::ScalarType dtype);
  /// By value, as ResnetBlock2D: the input is released before the conv runs.
  at::Tensor forward(at::Tensor x);

 private:
  Conv2d conv_{nullptr};
};
TORCH_MODULE(Upsample2D);

/// Zero padding on the right and bottom, then a 3x3 conv of stride 2 (`conv`).
class Downsample2DImpl : public torch::nn::Module {
 public:
  Downsample2DImpl(int64_t channels, at::ScalarType dtype);
  at::Tensor forward(const at::Tensor& x);

 private:
  Conv2d conv_{nullptr};
};
TORCH_MODULE(Downsample2D);

/// UNetMidBlock2D as the autoencoder uses it: resnets.0, attentions.0
/// (when `attention`), resnets.1.
class VaeMidBlockImpl : public torch::nn::Module {
 public:
  VaeMidBlockImpl(int64_t channels, int64_t groups, bool attention, at::ScalarType dtype);
  at::Tensor forward(at::Tensor x);

 private:
  torch::nn::ModuleList resnets_{nullptr}, attentions_{nullptr};
};
TORCH_MODULE(VaeMidBlock);

}  // namespace spdit::vae
