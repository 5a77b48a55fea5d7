#pragma once
// The layers of Wan2.1's video autoencoder (Wan's wan/modules/vae.py, as
// diffusers' autoencoder_kl_wan.py names them), with the causal cache that
// lets a video be processed a few frames at a time. Every 3-d convolution is
// causal in time: a frame sees itself and the two before it, never later
// ones. Processing a video in chunks, each convolution keeps the last two
// frames of its input (CausalCache) and puts them before the next chunk, so
// chunked and whole results are the same while memory holds one chunk.
// Parameters start on lazy pages for a checkpoint's tensors to replace.
//
//   CausalCache cache;
//   for (chunk : chunks) { cache.start_chunk(); out = decoder->forward(chunk, &cache); }
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <vector>

#include "spdit/vae/vae_blocks.h"
#include "spdit/vae/wan_vae_config.h"

namespace spdit::vae {

/// What each causal convolution (and each time-resampling layer) remembers
/// of the chunks before: slot k belongs to the k-th such layer in forward
/// order (the reference's feat_cache / feat_idx).
struct CausalCache {
  struct Slot {
    bool seen = false;         // a chunk has passed this layer
    bool first_chunk = false;  // upsample3d: the first chunk skipped the time conv ("Rep")
    at::Tensor frames;         // the last (up to two) input frames
  };
  std::vector<Slot> slots;
  size_t next = 0;
  /// Before each chunk: layers take their slots from the first again.
  void start_chunk() { next = 0; }
  /// The next layer's slot (created on the first chunk).
  Slot& take();
};

/// (time, height, width).
using Dims3 = std::array<int64_t, 3>;

/// A 3-d convolution padded causally in time (2 * pad frames before, none
/// after) and symmetrically in space: weight (out, in, kt, kh, kw), bias.
class CausalConv3dImpl : public torch::nn::Module {
 public:
  CausalConv3dImpl(int64_t in, int64_t out, Dims3 kernel, Dims3 stride, Dims3 padding,
                   at::ScalarType dtype);
  /// `before`: frames to put before x in place of (some of) the zero padding.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& before = {});
  /// Through the cache: `before` is the slot's frames, and the slot then
  /// keeps x's last two frames (one from before when x has one). Without a
  /// cache, the whole sequence at once.
  at::Tensor forward_cached(const at::Tensor& x, CausalCache* cache);
  at::Tensor weight, bias;

 private:
  Dims3 stride_, padding_;
};
TORCH_MODULE(CausalConv3d);

/// x / ||x|| over channels * sqrt(C) * gamma: `gamma` (C, 1, 1, 1) for video
/// (B, C, T, H, W), (C, 1, 1) for images (B, C, H, W).
class WanRmsNormImpl : public torch::nn::Module {
 public:
  WanRmsNormImpl(int64_t channels, bool images, at::ScalarType dtype);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor gamma;

 private:
  double scale_;
};
TORCH_MODULE(WanRmsNorm);

/// norm1, SiLU, conv1, norm2, SiLU, conv2 (3x3x3 causal), plus the input
/// (through conv_shortcut, 1x1x1, when the widths differ).
class WanResidualBlockImpl : public torch::nn::Module {
 public:
  WanResidualBlockImpl(int64_t in, int64_t out, at::ScalarType dtype);
  at::Tensor forward(const at::Tensor& x, CausalCache* cache);

 private:
  WanRmsNorm norm1_{nullptr}, norm2_{nullptr};
  CausalConv3d conv1_{nullptr}, conv2_{nullptr}, conv_shortcut_{nullptr};
};
TORCH_MODULE(WanResidualBlock);

/// Single-head self-attention over each frame's pixels (frames apart):
/// norm, to_qkv and proj (1x1 convs), plus the input.
class WanAttentionBlockImpl : public torch::nn::Module {
 public:
  WanAttentionBlockImpl(int64_t channels, at::ScalarType dtype);
  at::Tensor forward(const at::Tensor& x);

 private:
  WanRmsNorm norm_{nullptr};
  Conv2d to_qkv_{nullptr}, proj_{nullptr};
};
TORCH_MODULE(WanAttentionBlock);

/// Resample's modes: 2x in space (up: nearest then a 3x3 conv to half the
/// channels; down: a stride-2 3x3 conv), and with "3d" also 2x in time
/// (`time_conv`, causal over 3 frames).
enum class WanResampleMode { kUpsample2d, kUpsample3d, kDownsample2d, kDownsample3d };

class WanResampleImpl : public torch::nn::Module {
 public:
  WanResampleImpl(int64_t channels, WanResampleMode mode, at::ScalarType dtype);
  at::Tensor forward(const at::Tensor& x, CausalCache* cache);

 private:
  WanResampleMode mode_;
  Conv2d conv_{nullptr};  // `resample.1` (resample.0 is the parameterless up/pad step)
  CausalConv3d time_conv_{nullptr};
};
TORCH_MODULE(WanResample);

/// resnets.0, attentions.0, resnets.1.
class WanMidBlockImpl : public torch::nn::Module {
 public:
  WanMidBlockImpl(int64_t channels, at::ScalarType dtype);
  at::Tensor forward(const at::Tensor& x, CausalCache* cache);

 private:
  torch::nn::ModuleList resnets_{nullptr}, attentions_{nullptr};
};
TORCH_MODULE(WanMidBlock);

/// A decoder level: num_res_blocks + 1 residual blocks (`resnets`), then,
/// on every level but the last, a Resample (`upsamplers.0`).
class WanUpBlockImpl : public torch::nn::Module {
 public:
  /// `upsample`: false on the last level (then `mode` is not used).
  WanUpBlockImpl(int64_t in, int64_t out, int64_t num_res_blocks, bool upsample,
                 WanResampleMode mode, at::ScalarType dtype);
  at::Tensor forward(at::Tensor x, CausalCache* cache);

 private:
  torch::nn::ModuleList resnets_{nullptr}, upsamplers_{nullptr};
};
TORCH_MODULE(WanUpBlock);

/// Video (B, 3, T, H, W) -> moments before quant_conv (B, 2 z, T', H / 8, W / 8).
class WanEncoder3dImpl : public torch::nn::Module {
 public:
  WanEncoder3dImpl(const WanVaeConfig& c, at::ScalarType dtype);
  at::Tensor forward(const at::Tensor& x, CausalCache* cache);

 private:
  CausalConv3d conv_in_{nullptr}, conv_out_{nullptr};
  torch::nn::ModuleList down_blocks_{nullptr};  // residual blocks and resamples, flat
  WanMidBlock mid_block_{nullptr};
  WanRmsNorm norm_out_{nullptr};
};
TORCH_MODULE(WanEncoder3d);

/// Latents after post_quant_conv (B, z, T, h, w) -> video (B, 3, T', 8 h, 8 w).
class WanDecoder3dImpl : public torch::nn::Module {
 public:
  WanDecoder3dImpl(const WanVaeConfig& c, at::ScalarType dtype);
  at::Tensor forward(const at::Tensor& x, CausalCache* cache);

 private:
  CausalConv3d conv_in_{nullptr}, conv_out_{nullptr};
  WanMidBlock mid_block_{nullptr};
  torch::nn::ModuleList up_blocks_{nullptr};  // WanUpBlock per level
  WanRmsNorm norm_out_{nullptr};
};
TORCH_MODULE(WanDecoder3d);

}  // namespace spdit::vae
