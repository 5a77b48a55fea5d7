#pragma once
// Flux.1-style MMDiT (diffusers' FluxTransformer2DModel): dual-stream blocks
// with joint attention over [text, image], single-stream blocks over their
// concatenation, RoPE from txt_ids/img_ids. Tensor names match diffusers'
// checkpoints; the original single-file names are read too (weights.h).
#include <torch/nn/modules/container/modulelist.h>

#include "spdit/hooks/hookable.h"
#include "spdit/models/dit_attention.h"
#include "spdit/models/layers.h"
#include "spdit/plan/sp_plan.h"

namespace spdit::models {

struct FluxConfig {
  int64_t in_channels = 64;  // 16 latent channels packed 2x2 (Fill: 384, with its conditions)
  int64_t out_channels = 64;
  int64_t hidden = 3072;
  int64_t heads = 24;
  int64_t head_dim = 128;
  int64_t dual_blocks = 19;
  int64_t single_blocks = 38;
  int64_t text_dim = 4096;
  int64_t pooled_dim = 768;
  int64_t mlp_ratio = 4;
  std::vector<int64_t> axes_dims{16, 56, 56};
  bool guidance = true;
  /// "tiny", "small" or "full" (Flux.1-dev).
  static FluxConfig preset(const std::string& name);
};

/// RoPE tables over [text, image] positions: outputs (cos, sin), (T + S, D/2).
class FluxPosEmbedImpl : public HookableModule {
 public:
  explicit FluxPosEmbedImpl(std::vector<int64_t> axes_dims) : axes_(std::move(axes_dims)) {}
  std::vector<std::string> signature() const override { return {"txt_ids", "img_ids"}; }

 protected:
  Outputs forward(const BoundArgs& a) override;

 private:
  std::vector<int64_t> axes_;
};
TORCH_MODULE(FluxPosEmbed);

class FluxTransformerImpl : public HookableModule, public DeclaresSpPlan {
 public:
  explicit FluxTransformerImpl(const FluxConfig& config);
  std::vector<std::string> signature() const override {
    return {"hidden_states",
            "encoder_hidden_states",
            "pooled_projections",
            "timestep",
            "img_ids",
            "txt_ids",
            "guidance"};
  }
  /// Image tokens split on dim 1 (auto_pad); the RoPE table split after its
  /// text rows (PartialInput, text length from txt_ids); proj_out gathered.
  SequenceParallelModelPlan sp_plan() const override;
  /// Modules whose parameters stay fp32 in a bf16 or fp16 model (precision.h):
  /// none: diffusers runs Flux wholly in bf16.
  static std::vector<std::string> keep_in_fp32_modules() { return {}; }
  const FluxConfig& config() const { return config_; }

 protected:
  Outputs forward(const BoundArgs& a) override;

 private:
  FluxConfig config_;
  Linear x_embedder_{nullptr}, context_embedder_{nullptr}, norm_out_linear_{nullptr};
  Hooked<Linear> proj_out_;
  FluxPosEmbed pos_embed_{nullptr};
  torch::nn::ModuleList transformer_blocks_{nullptr}, single_transformer_blocks_{nullptr};
  std::shared_ptr<torch::nn::Module> time_text_embed_;
  TimestepEmbedding timestep_embedder_{nullptr}, guidance_embedder_{nullptr},
      text_embedder_{nullptr};
};
TORCH_MODULE(FluxTransformer);

}  // namespace spdit::models
