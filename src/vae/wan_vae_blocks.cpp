#include "spdit/vae/wan_vae_blocks.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "spdit/models/skeleton.h"
#include "spdit/vae/row_bands.h"

namespace spdit::vae {
namespace {

// The reference's CACHE_T: a 3-frame causal kernel needs the two frames before.
constexpr int64_t kCacheFrames = 2;

// Lazy pages: a real-size autoencoder costs nothing until its checkpoint's
// tensors (or the writer's random ones) replace these.
at::Tensor param(torch::nn::Module& m, const std::string& name, at::IntArrayRef shape,
                 at::ScalarType dtype) {
  return m.register_parameter(name, models::lazy_empty(shape, dtype),
                              /*requires_grad=*/false);
}

at::Tensor last_frames(const at::Tensor& x, int64_t n) {
  n = std::min(n, x.size(2));
  return x.narrow(2, x.size(2) - n, n).clone();
}

// (B, C, T, H, W) <-> (B * T, C, H, W): the 2-d layers see each frame apart.
at::Tensor frames_as_images(const at::Tensor& x) {
  return x.permute({0, 2, 1, 3, 4})
      .reshape({x.size(0) * x.size(2), x.size(1), x.size(3), x.size(4)});
}
at::Tensor images_as_frames(const at::Tensor& y, int64_t b, int64_t t) {
  return y.view({b, t, y.size(1), y.size(2), y.size(3)}).permute({0, 2, 1, 3, 4});
}

}  // namespace

CausalCache::Slot& CausalCache::take() {
  if (next == slots.size()) slots.emplace_back();
  return slots[next++];
}

CausalConv3dImpl::CausalConv3dImpl(int64_t in, int64_t out, std::array<int64_t, 3> kernel,
                                   std::array<int64_t, 3> stride, std::array<int64_t, 3> padding,
                                   at::ScalarType dtype)
    : stride_(stride), padding_(padding) {
  weight = param(*this, "weight", {out, in, kernel[0], kernel[1], kernel[2]}, dtype);
  bias = param(*this, "bias", {out}, dtype);
}

at::Tensor CausalConv3dImpl::forward(const at::Tensor& x, const at::Tensor& before) {
  int64_t front = 2 * padding_[0];  // all the time padding goes before: causal
  at::Tensor in = x;
  if (before.defined() && front > 0) {
    in = at::cat({before.to(x.scalar_type()), x}, 2);
    front -= before.size(2);
  }
  if (front > 0) in = at::constant_pad_nd(in, {0, 0, 0, 0, front, 0}, 0);
  const RowBandScope* bands = RowBandScope::current();
  if (bands && bands->size() > 1 && padding_[1] > 0) {
    // On a band (row_bands.h): the rows above and below come from the
    // neighbours, zeros at the picture's edges, as the padding would give.
    if (stride_[1] != 1)
      throw std::logic_error("spdit: a causal convolution of height stride " +
                             std::to_string(stride_[1]) + " cannot run on row bands");
    return at::conv3d(with_halo(*bands, in, /*dim=*/3, padding_[1]), weight, bias,
                      {stride_[0], stride_[1], stride_[2]}, {0, 0, padding_[2]});
  }
  return at::conv3d(in, weight, bias, {stride_[0], stride_[1], stride_[2]},
                    {0, padding_[1], padding_[2]});
}

at::Tensor CausalConv3dImpl::forward_cached(const at::Tensor& x, CausalCache* cache) {
  if (!cache) return forward(x);
  CausalCache::Slot& slot = cache->take();
  at::Tensor keep = last_frames(x, kCacheFrames);
  // A one-frame chunk: the frame before it comes from the cache.
  if (keep.size(2) < kCacheFrames && slot.frames.defined())
    keep = at::cat({last_frames(slot.frames, 1), keep}, 2);
  at::Tensor out = forward(x, slot.frames);
  slot.frames = std::move(keep);
  slot.seen = true;
  return out;
}

WanRmsNormImpl::WanRmsNormImpl(int64_t channels, bool images, at::ScalarType dtype)
    : scale_(std::sqrt(static_cast<double>(channels))) {
  gamma = images ? param(*this, "gamma", {channels, 1, 1}, dtype)
                 : param(*this, "gamma", {channels, 1, 1, 1}, dtype);
}

at::Tensor WanRmsNormImpl::forward(const at::Tensor& x) {
  // F.normalize(x, dim=1): x / max(||x||, 1e-12).
  const at::Tensor norm = at::norm(x, 2, {1}, /*keepdim=*/true).clamp_min_(1e-12);
  return (x / norm).mul_(gamma * scale_);
}

WanResidualBlockImpl::WanResidualBlockImpl(int64_t in, int64_t out, at::ScalarType dtype) {
  norm1_ = register_module("norm1", WanRmsNorm(in, false, dtype));
  conv1_ = register_module(
      "conv1", CausalConv3d(in, out, Dims3{3, 3, 3}, Dims3{1, 1, 1}, Dims3{1, 1, 1}, dtype));
  norm2_ = register_module("norm2", WanRmsNorm(out, false, dtype));
  conv2_ = register_module(
      "conv2", CausalConv3d(out, out, Dims3{3, 3, 3}, Dims3{1, 1, 1}, Dims3{1, 1, 1}, dtype));
  if (in != out) {
    conv_shortcut_ = register_module(
        "conv_shortcut",
        CausalConv3d(in, out, Dims3{1, 1, 1}, Dims3{1, 1, 1}, Dims3{0, 0, 0}, dtype));
  }
}

at::Tensor WanResidualBlockImpl::forward(const at::Tensor& x, CausalCache* cache) {
  at::Tensor h = conv1_->forward_cached(silu_in_place(norm1_->forward(x)), cache);
  h = conv2_->forward_cached(silu_in_place(norm2_->forward(h)), cache);
  return h.add_(conv_shortcut_ ? conv_shortcut_->forward(x) : x);
}

WanAttentionBlockImpl::WanAttentionBlockImpl(int64_t channels, at::ScalarType dtype) {
  norm_ = register_module("norm", WanRmsNorm(channels, true, dtype));
  to_qkv_ = register_module("to_qkv", Conv2d(channels, 3 * channels, 1, 1, 0, dtype));
  proj_ = register_module("proj", Conv2d(channels, channels, 1, 1, 0, dtype));
}

at::Tensor WanAttentionBlockImpl::forward(const at::Tensor& x) {
  const int64_t b = x.size(0), c = x.size(1), t = x.size(2), h = x.size(3), w = x.size(4);
  // Each frame's pixels are one sequence: (B * T, H * W, 1 head, C).
  const at::Tensor qkv = to_qkv_->forward(norm_->forward(frames_as_images(x)))
                             .reshape({b * t, 3 * c, h * w})
                             .transpose(1, 2)
                             .contiguous();
  const auto parts = qkv.unsqueeze(2).chunk(3, /*dim=*/-1);
  // (B*T, HW, 1, C); on row bands, Ring attention over the bands of each frame.
  const at::Tensor attended =
      pixel_attention(parts[0], parts[1], parts[2], 1.0 / std::sqrt(static_cast<double>(c)));
  const at::Tensor images = attended.squeeze(2).transpose(1, 2).reshape({b * t, c, h, w});
  return images_as_frames(proj_->forward(images), b, t).add(x);
}

WanResampleImpl::WanResampleImpl(int64_t channels, WanResampleMode mode, at::ScalarType dtype)
    : mode_(mode) {
  // diffusers' and Wan's `resample` is a Sequential whose 0 is the
  // parameterless upsample (or pad); its conv is `resample.1`.
  auto resample = register_module("resample", torch::nn::ModuleList());
  resample->push_back(std::make_shared<torch::nn::Module>("Step"));
  const bool up = mode == WanResampleMode::kUpsample2d || mode == WanResampleMode::kUpsample3d;
  conv_ = up ? Conv2d(channels, channels / 2, 3, 1, 1, dtype)
             : Conv2d(channels, channels, 3, 2, 0, dtype);
  resample->push_back(conv_);
  if (mode == WanResampleMode::kUpsample3d) {
    time_conv_ = register_module("time_conv", CausalConv3d(channels, 2 * channels, Dims3{3, 1, 1},
                                                           Dims3{1, 1, 1}, Dims3{1, 0, 0}, dtype));
  } else if (mode == WanResampleMode::kDownsample3d) {
    time_conv_ = register_module("time_conv", CausalConv3d(channels, channels, Dims3{3, 1, 1},
                                                           Dims3{2, 1, 1}, Dims3{0, 0, 0}, dtype));
  }
}

at::Tensor WanResampleImpl::forward(const at::Tensor& x_in, CausalCache* cache) {
  at::Tensor x = x_in;
  const int64_t b = x.size(0), c = x.size(1);
  if (mode_ == WanResampleMode::kUpsample3d && cache) {
    CausalCache::Slot& slot = cache->take();
    if (!slot.seen) {
      // The video's first frame is not doubled in time: 1 + 4 (T - 1) frames.
      slot.seen = true;
      slot.first_chunk = true;
    } else {
      at::Tensor keep = last_frames(x, kCacheFrames);
      if (keep.size(2) < kCacheFrames) {
        // After the first chunk the time conv starts from zeros (the
        // reference's "Rep"): the first frame is not before the second.
        keep = at::cat(
            {slot.first_chunk ? at::zeros_like(keep) : last_frames(slot.frames, 1), keep}, 2);
      }
      const at::Tensor y =
          slot.first_chunk ? time_conv_->forward(x) : time_conv_->forward(x, slot.frames);
      slot.frames = std::move(keep);
      slot.first_chunk = false;
      // Channels (2, C) become frames: output frame 2 t + i is half i of input
      // frame t.
      const int64_t t = x.size(2), h = x.size(3), w = x.size(4);
      x = y.view({b, 2, c, t, h, w}).permute({0, 2, 3, 1, 4, 5}).reshape({b, c, 2 * t, h, w});
    }
  }
  const int64_t t = x.size(2);
  at::Tensor images = frames_as_images(x);
  if (mode_ == WanResampleMode::kUpsample2d || mode_ == WanResampleMode::kUpsample3d) {
    // nearest-exact at exactly 2x is plain nearest: every pixel twice each way.
    images =
        conv_->forward(at::upsample_nearest2d(images, {2 * images.size(2), 2 * images.size(3)}));
  } else {
    images = conv_->forward(at::constant_pad_nd(images, {0, 1, 0, 1}, 0));  // right and bottom only
  }
  x = images_as_frames(images, b, t);
  if (mode_ == WanResampleMode::kDownsample3d && cache) {
    CausalCache::Slot& slot = cache->take();
    at::Tensor keep = last_frames(x, 1);
    if (slot.seen)
      x = time_conv_->forward(at::cat({slot.frames, x}, 2));  // stride 2 over (last, chunk)
    // The first chunk (the first frame) passes unchanged.
    slot.frames = std::move(keep);
    slot.seen = true;
  }
  return x;
}

WanMidBlockImpl::WanMidBlockImpl(int64_t channels, at::ScalarType dtype) {
  resnets_ = register_module("resnets", torch::nn::ModuleList());
  resnets_->push_back(WanResidualBlock(channels, channels, dtype));
  resnets_->push_back(WanResidualBlock(channels, channels, dtype));
  attentions_ = register_module("attentions", torch::nn::ModuleList());
  attentions_->push_back(WanAttentionBlock(channels, dtype));
}

at::Tensor WanMidBlockImpl::forward(const at::Tensor& x, CausalCache* cache) {
  at::Tensor h = resnets_->ptr<WanResidualBlockImpl>(0)->forward(x, cache);
  h = attentions_->ptr<WanAttentionBlockImpl>(0)->forward(h);
  return resnets_->ptr<WanResidualBlockImpl>(1)->forward(h, cache);
}

WanUpBlockImpl::WanUpBlockImpl(int64_t in, int64_t out, int64_t num_res_blocks, bool upsample,
                               WanResampleMode mode, at::ScalarType dtype) {
  resnets_ = register_module("resnets", torch::nn::ModuleList());
  for (int64_t i = 0; i <= num_res_blocks; ++i)
    resnets_->push_back(WanResidualBlock(i == 0 ? in : out, out, dtype));
  if (upsample) {
    upsamplers_ = register_module("upsamplers", torch::nn::ModuleList());
    upsamplers_->push_back(WanResample(out, mode, dtype));
  }
}

at::Tensor WanUpBlockImpl::forward(at::Tensor x, CausalCache* cache) {
  for (size_t i = 0; i < resnets_->size(); ++i)
    x = resnets_->ptr<WanResidualBlockImpl>(i)->forward(x, cache);
  if (upsamplers_) x = upsamplers_->ptr<WanResampleImpl>(0)->forward(x, cache);
  return x;
}

WanEncoder3dImpl::WanEncoder3dImpl(const WanVaeConfig& c, at::ScalarType dtype) {
  const int64_t levels = static_cast<int64_t>(c.dim_mult.size());
  std::vector<int64_t> dims = {c.base_dim};
  for (int64_t m : c.dim_mult) dims.push_back(c.base_dim * m);
  conv_in_ = register_module(
      "conv_in", CausalConv3d(3, dims[0], Dims3{3, 3, 3}, Dims3{1, 1, 1}, Dims3{1, 1, 1}, dtype));
  down_blocks_ = register_module("down_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < levels; ++i) {
    int64_t in = dims[i];
    for (int64_t r = 0; r < c.num_res_blocks; ++r) {
      down_blocks_->push_back(WanResidualBlock(in, dims[i + 1], dtype));
      in = dims[i + 1];
    }
    if (i != levels - 1) {
      down_blocks_->push_back(WanResample(in,
                                          c.temperal_downsample[i] ? WanResampleMode::kDownsample3d
                                                                   : WanResampleMode::kDownsample2d,
                                          dtype));
    }
  }
  mid_block_ = register_module("mid_block", WanMidBlock(dims.back(), dtype));
  norm_out_ = register_module("norm_out", WanRmsNorm(dims.back(), false, dtype));
  conv_out_ = register_module("conv_out", CausalConv3d(dims.back(), 2 * c.z_dim, Dims3{3, 3, 3},
                                                       Dims3{1, 1, 1}, Dims3{1, 1, 1}, dtype));
}

at::Tensor WanEncoder3dImpl::forward(const at::Tensor& video, CausalCache* cache) {
  at::Tensor x = conv_in_->forward_cached(video, cache);
  for (const auto& block : *down_blocks_) {
    if (auto* res = block->as<WanResidualBlockImpl>()) {
      x = res->forward(x, cache);
    } else {
      x = block->as<WanResampleImpl>()->forward(x, cache);
    }
  }
  x = mid_block_->forward(x, cache);
  return conv_out_->forward_cached(silu_in_place(norm_out_->forward(x)), cache);
}

WanDecoder3dImpl::WanDecoder3dImpl(const WanVaeConfig& c, at::ScalarType dtype) {
  const int64_t levels = static_cast<int64_t>(c.dim_mult.size());
  std::vector<int64_t> dims = {c.base_dim * c.dim_mult.back()};
  for (int64_t i = levels - 1; i >= 0; --i) dims.push_back(c.base_dim * c.dim_mult[i]);
  conv_in_ = register_module("conv_in", CausalConv3d(c.z_dim, dims[0], Dims3{3, 3, 3},
                                                     Dims3{1, 1, 1}, Dims3{1, 1, 1}, dtype));
  mid_block_ = register_module("mid_block", WanMidBlock(dims[0], dtype));
  up_blocks_ = register_module("up_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < levels; ++i) {
    // Every upsampling halves the channels, so a level after the first takes
    // half.
    const int64_t in = i == 0 ? dims[i] : dims[i] / 2;
    const bool up = i != levels - 1;
    // The decoder doubles time where the encoder halved it, in reverse order.
    const bool in_time = up && c.temperal_downsample[levels - 2 - i];
    up_blocks_->push_back(
        WanUpBlock(in, dims[i + 1], c.num_res_blocks, up,
                   in_time ? WanResampleMode::kUpsample3d : WanResampleMode::kUpsample2d, dtype));
  }
  norm_out_ = register_module("norm_out", WanRmsNorm(dims.back(), false, dtype));
  conv_out_ = register_module("conv_out", CausalConv3d(dims.back(), 3, Dims3{3, 3, 3},
                                                       Dims3{1, 1, 1}, Dims3{1, 1, 1}, dtype));
}

at::Tensor WanDecoder3dImpl::forward(const at::Tensor& z, CausalCache* cache) {
  at::Tensor x = conv_in_->forward_cached(z, cache);
  x = mid_block_->forward(x, cache);
  for (size_t i = 0; i < up_blocks_->size(); ++i)
    x = up_blocks_->ptr<WanUpBlockImpl>(i)->forward(x, cache);
  return conv_out_->forward_cached(silu_in_place(norm_out_->forward(x)), cache);
}

}  // namespace spdit::vae
