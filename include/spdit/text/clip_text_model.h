#pragma once
/// CLIP's text tower (transformers' CLIPTextModel; ViT-L/14's in Flux):
/// token + position embeddings, pre-LN layers with a causal mask and
/// quick_gelu, final_layer_norm; the pooled output is the final state at the
/// end-of-text token. Parameters are named as transformers' state dict
/// (text_model.encoder.layers.N.self_attn.q_proj.weight, ...).
///
///   auto clip = spdit::text::load_clip_text_model("FLUX.1-dev/text_encoder");
///   auto out = clip->forward(ids);    // ids (B, 77) int64
///   out.pooled;                       // (B, 768): Flux's pooled_projections
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <string>
#include <vector>

#include "spdit/models/layers.h"
#include "spdit/text/text_layers.h"

namespace spdit::text {

/// config.json of a CLIPTextModel (defaults: ViT-L/14's text tower).
struct ClipTextConfig {
  int64_t vocab_size = 49408;
  int64_t hidden_size = 768;
  int64_t intermediate_size = 3072;
  int64_t num_attention_heads = 12;
  int64_t num_hidden_layers = 12;
  int64_t max_position_embeddings = 77;
  std::string hidden_act = "quick_gelu";
  double layer_norm_eps = 1e-5;
  /// 2 in the original OpenAI configs (Flux's): transformers then pools at
  /// the highest id, which is <|endoftext|> in CLIP's vocabulary; any other
  /// value pools at the first token equal to it.
  int64_t eos_token_id = 49407;

  /// Reads a config.json's text (`where` names it in errors); checks that
  /// the heads divide the hidden size and the activation is known.
  static ClipTextConfig from_json(const std::string& text, const std::string& where);
  /// The config.json transformers would write for this config.
  std::string to_json() const;
};

struct ClipTextOutput {
  at::Tensor last_hidden_state;  // (B, S, hidden)
  at::Tensor pooled;             // (B, hidden)
};

class ClipAttentionImpl : public torch::nn::Module {
 public:
  ClipAttentionImpl(int64_t hidden, int64_t heads);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& additive_mask);
  models::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};

 private:
  int64_t heads_;
};
TORCH_MODULE(ClipAttention);

class ClipMlpImpl : public torch::nn::Module {
 public:
  ClipMlpImpl(int64_t hidden, int64_t intermediate);
  at::Tensor forward(const at::Tensor& x);
  models::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(ClipMlp);

class ClipEncoderLayerImpl : public torch::nn::Module {
 public:
  explicit ClipEncoderLayerImpl(const ClipTextConfig& c);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& additive_mask);
  ClipAttention self_attn{nullptr};
  TextLayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
  ClipMlp mlp{nullptr};
};
TORCH_MODULE(ClipEncoderLayer);

class ClipTextModelImpl : public torch::nn::Module {
 public:
  explicit ClipTextModelImpl(const ClipTextConfig& config);
  /// input_ids (B, S) int64, S <= max_position_embeddings. Runs in the
  /// weights' dtype (LayerNorm and softmax in fp32); outputs in that dtype.
  ClipTextOutput forward(const at::Tensor& input_ids);
  const ClipTextConfig& config() const { return config_; }
  /// The dtype of the weights (after loading: the checkpoint's, see load_clip_text_model).
  at::ScalarType dtype() const { return token_embedding_->weight.scalar_type(); }

 private:
  ClipTextConfig config_;
  EmbeddingTable token_embedding_{nullptr}, position_embedding_{nullptr};
  std::vector<ClipEncoderLayer> layers_;
  TextLayerNorm final_layer_norm_{nullptr};
};
TORCH_MODULE(ClipTextModel);

}  // namespace spdit::text
