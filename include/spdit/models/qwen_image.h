#pragma once
// Qwen-Image-style dual-stream DiT (diffusers' QwenImageTransformer2DModel):
// text replicated and joined in front of the image in every block's
// attention; image RoPE split from the pos-embed outputs.
#include <torch/nn/modules/container/modulelist.h>

#include "spdit/hooks/hookable.h"
#include "spdit/models/dit_attention.h"
#include "spdit/models/layers.h"
#include "spdit/plan/sp_plan.h"

namespace spdit::models {

struct QwenImageConfig {
  int64_t in_channels = 64;  // 16 latent channels packed 2x2
  int64_t hidden = 3072;
  int64_t heads = 24;
  int64_t head_dim = 128;
  int64_t blocks = 60;
  int64_t text_dim = 3584;
  std::vector<int64_t> axes_dims{16, 56, 56};
  static QwenImageConfig preset(const std::string& name);
};

/// Outputs (img_cos, img_sin, txt_cos, txt_sin); text positions follow the image's.
class QwenEmbedRopeImpl : public HookableModule {
 public:
  explicit QwenEmbedRopeImpl(std::vector<int64_t> axes) : axes_(std::move(axes)) {}
  std::vector<std::string> signature() const override { return {"img_ids", "txt_len"}; }

 protected:
  Outputs forward(const BoundArgs& a) override;

 private:
  std::vector<int64_t> axes_;
};
TORCH_MODULE(QwenEmbedRope);

class QwenImageTransformerImpl : public HookableModule, public DeclaresSpPlan {
 public:
  explicit QwenImageTransformerImpl(const QwenImageConfig& c);
  std::vector<std::string> signature() const override {
    return {"hidden_states", "encoder_hidden_states", "timestep", "img_ids"};
  }
  /// Image tokens split on dim 1 (auto_pad); image RoPE (outputs 0, 1 of
  /// pos_embed) split; text and its RoPE replicated; proj_out gathered.
  SequenceParallelModelPlan sp_plan() const override;
  /// Modules whose parameters stay fp32 in a bf16 or fp16 model (precision.h):
  /// none: diffusers runs Qwen-Image wholly in bf16.
  static std::vector<std::string> keep_in_fp32_modules() { return {}; }
  const QwenImageConfig& config() const { return config_; }

 protected:
  Outputs forward(const BoundArgs& a) override;

 private:
  QwenImageConfig config_;
  Linear img_in_{nullptr}, txt_in_{nullptr}, norm_out_linear_{nullptr};
  RMSNorm txt_norm_{nullptr};
  TimestepEmbedding timestep_embedder_{nullptr};
  QwenEmbedRope pos_embed_{nullptr};
  torch::nn::ModuleList transformer_blocks_{nullptr};
  Hooked<Linear> proj_out_;
};
TORCH_MODULE(QwenImageTransformer);

}  // namespace spdit::models
