#pragma once
/// The text model of Qwen2.5-VL (Qwen-Image's text encoder is
/// Qwen2.5-VL-7B-Instruct), for text-only input: token embeddings, decoder
/// layers of RMSNorm -> grouped-query attention (q/k/v with bias, o without,
/// RoPE, causal plus padding mask) -> RMSNorm -> SwiGLU MLP, and the final
/// norm. Returns the hidden state after the final norm: what
/// `hidden_states[-1]` of transformers' forward(output_hidden_states=True)
/// holds, and what diffusers' QwenImagePipeline takes.
///
/// Qwen2.5-VL's multimodal RoPE gives each of three position streams
/// (time, height, width) a section of the rotary channels; for text the
/// three streams are equal (get_rope_index: cumsum(mask) - 1), so it is
/// ordinary 1-D RoPE over the whole head dim, which is what this computes.
/// No KV cache, no generation: an encoder's single forward.
///
///   auto model = spdit::text::load_qwen2_text_model("Qwen-Image/text_encoder");
///   at::Tensor h = model->forward(ids, mask);   // (B, S) int64 -> (B, S, 3584), bf16
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <string>
#include <vector>

#include "spdit/models/layers.h"
#include "spdit/text/text_layers.h"

namespace spdit::text {

/// The text part of a Qwen2.5-VL config.json (defaults: Qwen2.5-VL-7B, as
/// Qwen-Image ships it). Reads `text_config` where the file nests one
/// (transformers >= 4.53), else the top-level fields.
struct Qwen2TextConfig {
  int64_t vocab_size = 152064;
  int64_t hidden_size = 3584;
  int64_t intermediate_size = 18944;
  int64_t num_hidden_layers = 28;
  int64_t num_attention_heads = 28;
  int64_t num_key_value_heads = 4;
  double rms_norm_eps = 1e-6;
  double rope_theta = 1000000.0;
  /// rope_scaling.mrope_section: channel pairs per stream; for text only a
  /// check that they add up to head_dim / 2.
  std::vector<int64_t> mrope_section = {16, 24, 24};

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  /// Throws naming `where` and the field: missing dimensions, heads that do
  /// not divide, an activation other than silu, a RoPE scaling other than
  /// mrope / default (yarn, linear, dynamic are not implemented).
  static Qwen2TextConfig from_json(const std::string& text, const std::string& where);
  /// A Qwen2_5_VLForConditionalGeneration config.json with these fields.
  std::string to_json() const;
};

/// Qwen2RMSNorm: x / rms(x) with the statistics in fp32, cast back to x's
/// dtype, then times the weight.
class Qwen2RMSNormImpl : public torch::nn::Module {
 public:
  Qwen2RMSNormImpl(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x) const;
  at::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(Qwen2RMSNorm);

class Qwen2AttentionImpl : public torch::nn::Module {
 public:
  explicit Qwen2AttentionImpl(const Qwen2TextConfig& c);
  /// x (B, S, hidden); cos / sin (B, S, head_dim) in x's dtype; bias (B, 1, S, S) additive.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                     const at::Tensor& bias);
  models::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  int64_t heads_, kv_heads_, head_dim_;
};
TORCH_MODULE(Qwen2Attention);

class Qwen2DecoderLayerImpl : public torch::nn::Module {
 public:
  explicit Qwen2DecoderLayerImpl(const Qwen2TextConfig& c);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                     const at::Tensor& bias);
  Qwen2Attention self_attn{nullptr};

 private:
  Qwen2RMSNorm input_layernorm_{nullptr}, post_attention_layernorm_{nullptr};
  models::Linear gate_proj_{nullptr}, up_proj_{nullptr}, down_proj_{nullptr};
};
TORCH_MODULE(Qwen2DecoderLayer);

/// Parameters are named as transformers' Qwen2_5_VLTextModel names them
/// (embed_tokens.weight, layers.N.self_attn.q_proj.weight, norm.weight); a
/// checkpoint prefixes them with model.language_model. or model.
class Qwen2TextModelImpl : public torch::nn::Module {
 public:
  explicit Qwen2TextModelImpl(const Qwen2TextConfig& config);
  /// input_ids (B, S) int64; attention_mask (B, S), 1 = token, 0 = padding,
  /// or undefined (all tokens). Runs in the weights' dtype (RMS statistics
  /// and softmax in fp32) and returns the final norm's output (B, S, hidden).
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& attention_mask = {});
  const Qwen2TextConfig& config() const { return config_; }
  at::ScalarType dtype() const { return embed_tokens_->weight.scalar_type(); }

 private:
  Qwen2TextConfig config_;
  EmbeddingTable embed_tokens_{nullptr};
  std::vector<Qwen2DecoderLayer> layers_;
  Qwen2RMSNorm norm_{nullptr};
};
TORCH_MODULE(Qwen2TextModel);

/// The rotary cos / sin (B, S, head_dim) in fp32 for `position_ids` (B, S),
/// as Qwen2_5_VLRotaryEmbedding computes them (inv_freq = theta^(-2i/d),
/// the angles duplicated over both halves).
std::pair<at::Tensor, at::Tensor> qwen2_rope_cos_sin(const at::Tensor& position_ids,
                                                     int64_t head_dim, double theta);

}  // namespace spdit::text
