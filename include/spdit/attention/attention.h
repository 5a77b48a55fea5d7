#pragma once
// The attention models call. Inside the sequence-parallel region (between a
// plan's first split and its gather) it computes exactly what single-device
// attention over the full sequence computes, by Ulysses (U > 1), Ring (R > 1)
// or both; outside it, or with skip_sp, it runs locally with no communication.
//
//   spdit::Attention attn(spdit::AttentionOptions().joint_strategy(spdit::JointStrategy::kFront));
//   auto out = attn->forward(q, k, v, spdit::JointText{tq, tk, tv});  // [text, image]
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <optional>

#include "spdit/attention/local_attention.h"

namespace spdit {

/// Where replicated text joins the image sequence.
enum class JointStrategy { kFront, kRear };

struct AttentionOptions {
  /// Softmax scale; default 1/sqrt(head_dim).
  AttentionOptions& scale(double s) {
    scale_ = s;
    return *this;
  }
  /// Run locally even inside the SP region: cross-attention to text that is
  /// replicated on every rank needs no communication.
  AttentionOptions& skip_sp(bool skip) {
    skip_sp_ = skip;
    return *this;
  }
  AttentionOptions& joint_strategy(JointStrategy s) {
    strategy_ = s;
    return *this;
  }

  std::optional<double> scale() const { return scale_; }
  bool skip_sp() const { return skip_sp_; }
  JointStrategy joint_strategy() const { return strategy_; }

 private:
  std::optional<double> scale_;
  bool skip_sp_ = false;
  JointStrategy strategy_ = JointStrategy::kFront;
};

/// Text Q/K/V (B, T, H, D), the same on every rank, attended jointly with the
/// image sequence (dual-stream models).
struct JointText {
  at::Tensor q, k, v;
};

/// Masks of one call.
struct AttentionMasks {
  /// bool (B, Sk) for the keys this rank holds (its shard inside the SP
  /// region): true for keys that may be attended to. Every rank passes one or
  /// none. auto_pad's padding mask is added automatically.
  at::Tensor key_padding_mask;
  /// bool, broadcastable to (B, H, Sq, Sk); local attention only.
  at::Tensor attn_mask;
};

/// q, k, v: (B, S, H, D), S this rank's shard inside the SP region. Returns
/// (B, S, H, D), or with text (B, T + S, H, D) ordered by the joint strategy.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const AttentionOptions& options = {}, const JointText* text = nullptr,
                     const AttentionMasks& masks = {});

/// A module wrapper holding AttentionOptions; it has no parameters, so it does
/// not change a model's state dict.
class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(AttentionOptions options = {}) : options_(options) {}
  at::Tensor forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const std::optional<JointText>& text = std::nullopt,
                     const AttentionMasks& masks = {}) {
    return attention(q, k, v, options_, text ? &*text : nullptr, masks);
  }
  const AttentionOptions& options() const { return options_; }

 private:
  AttentionOptions options_;
};
TORCH_MODULE(Attention);

}  // namespace spdit
