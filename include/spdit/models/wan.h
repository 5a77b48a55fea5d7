#pragma once
// Wan2.1-style video DiT (diffusers' WanTransformer3DModel): 3D patches
// (1, 2, 2), self-attention with 3D RoPE, cross-attention to replicated text,
// AdaLN from the timestep (scalar per sample, or per token as in Wan2.2).
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>

#include "spdit/hooks/hookable.h"
#include "spdit/models/dit_attention.h"
#include "spdit/models/layers.h"
#include "spdit/plan/sp_plan.h"

namespace spdit::models {

struct WanConfig {
  int64_t in_channels = 16, out_channels = 16;
  int64_t hidden = 1536;
  int64_t heads = 12;
  int64_t head_dim = 128;
  int64_t blocks = 30;
  int64_t ffn = 8960;
  int64_t text_dim = 4096;
  int64_t freq_dim = 256;
  /// Text is zero-padded to this many rows before text_embedding, as Wan's
  /// own model does (a padded row still embeds to a non-zero vector, and
  /// cross-attention attends all of them); longer text is refused.
  int64_t text_len = 512;
  static WanConfig preset(const std::string& name);
};

/// 3D RoPE over the patch grid of `hidden_states` (B, C, F, H, W): (cos, sin).
class WanRopeImpl : public HookableModule {
 public:
  explicit WanRopeImpl(int64_t head_dim) : head_dim_(head_dim) {}
  std::vector<std::string> signature() const override { return {"hidden_states"}; }

 protected:
  Outputs forward(const BoundArgs& a) override;

 private:
  int64_t head_dim_;
};
TORCH_MODULE(WanRope);

/// Timestep and text conditioning: outputs (temb, timestep_proj, text).
/// temb is (B, D) or per token (B, S, D); timestep_proj (B, 6, D) or (B, S, 6, D).
class WanConditionEmbedderImpl : public HookableModule {
 public:
  explicit WanConditionEmbedderImpl(const WanConfig& c);
  std::vector<std::string> signature() const override {
    return {"timestep", "encoder_hidden_states"};
  }

 protected:
  Outputs forward(const BoundArgs& a) override;

 private:
  int64_t hidden_, freq_dim_, text_len_;
  TimestepEmbedding time_embedder_{nullptr}, text_embedder_{nullptr};
  Linear time_proj_{nullptr};
};
TORCH_MODULE(WanConditionEmbedder);

class WanBlockImpl : public HookableModule {
 public:
  explicit WanBlockImpl(const WanConfig& c);
  std::vector<std::string> signature() const override {
    return {"hidden_states", "encoder_hidden_states", "temb", "rope_cos", "rope_sin"};
  }

 protected:
  Outputs forward(const BoundArgs& a) override;

 private:
  LayerNorm norm1_{nullptr}, norm2_{nullptr}, norm3_{nullptr};
  DitAttention attn1_{nullptr}, attn2_{nullptr};
  FeedForward ffn_{nullptr};
  at::Tensor scale_shift_table_;
};
TORCH_MODULE(WanBlock);

class WanTransformerImpl : public HookableModule, public DeclaresSpPlan {
 public:
  explicit WanTransformerImpl(const WanConfig& c);
  std::vector<std::string> signature() const override {
    return {"hidden_states", "timestep", "encoder_hidden_states"};
  }
  /// Tokens split where they enter blocks.0 (auto_pad); RoPE split after
  /// `rope`; per-token timestep embeddings split after condition_embedder
  /// (expected_dims: scalar timesteps are left whole); proj_out gathered.
  SequenceParallelModelPlan sp_plan() const override;
  /// Modules whose parameters stay fp32 in a bf16 or fp16 model (precision.h):
  /// as diffusers keeps them.
  static std::vector<std::string> keep_in_fp32_modules() {
    return {"time_embedder", "scale_shift_table", "norm1", "norm2", "norm3"};
  }
  const WanConfig& config() const { return config_; }

 protected:
  Outputs forward(const BoundArgs& a) override;

 private:
  WanConfig config_;
  torch::nn::Conv3d patch_embedding_{nullptr};
  WanConditionEmbedder condition_embedder_{nullptr};
  WanRope rope_{nullptr};
  torch::nn::ModuleList blocks_{nullptr};
  LayerNorm norm_out_{nullptr};
  Hooked<Linear> proj_out_;
  at::Tensor scale_shift_table_;
};
TORCH_MODULE(WanTransformer);

}  // namespace spdit::models
