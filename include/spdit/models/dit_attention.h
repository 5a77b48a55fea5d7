#pragma once
// The attention layer of the reference DiTs (diffusers' Attention with its
// Flux/Qwen/Wan processors): projections, QK RMSNorm, RoPE, then
// spdit::attention over the image tokens with replicated text beside them.
// It never mentions ranks: the plan decides what is sharded.
#include <torch/nn/modules/container/modulelist.h>

#include "spdit/attention/attention.h"
#include "spdit/models/layers.h"

namespace spdit::models {

struct DitAttentionOptions {
  int64_t dim = 0, heads = 0, head_dim = 0;
  bool context_projections = false;  // add_q/k/v_proj, norm_added_q/k (dual-stream)
  bool to_out = true;                // to_out.0
  bool to_add_out = false;           // to_add_out (dual-stream text output)
  bool qk_norm_full_dim = false;     // Wan: RMSNorm over all heads at once
};

/// Rotary tables (S, D/2) for one stream, or undefined.
struct Rope {
  at::Tensor cos, sin;
  bool defined() const { return cos.defined(); }
  Rope narrow(int64_t start, int64_t length) const {
    return {cos.narrow(0, start, length), sin.narrow(0, start, length)};
  }
};

class DitAttentionImpl : public torch::nn::Module {
 public:
  explicit DitAttentionImpl(const DitAttentionOptions& o);

  /// Joint attention over [text, image] (text front). `text` may be undefined
  /// (plain self-attention). Returns (image out, text out).
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& image, const at::Tensor& text,
                                            const Rope& image_rope, const Rope& text_rope);

  /// Cross-attention of `x` to replicated `context`: local, no communication.
  at::Tensor cross(const at::Tensor& x, const at::Tensor& context);

 private:
  at::Tensor heads_of(const at::Tensor& x) const;
  at::Tensor norm(RMSNorm& n, const at::Tensor& projected) const;
  DitAttentionOptions o_;
  Linear to_q_{nullptr}, to_k_{nullptr}, to_v_{nullptr};
  Linear add_q_{nullptr}, add_k_{nullptr}, add_v_{nullptr};
  RMSNorm norm_q_{nullptr}, norm_k_{nullptr}, norm_added_q_{nullptr}, norm_added_k_{nullptr};
  torch::nn::ModuleList to_out_{nullptr};
  Linear out_{nullptr}, add_out_{nullptr};
};
TORCH_MODULE(DitAttention);

}  // namespace spdit::models
