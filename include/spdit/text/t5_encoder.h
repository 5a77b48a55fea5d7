#pragma once
/// T5 v1.1's encoder (transformers' T5EncoderModel; T5-XXL in Flux) and
/// umT5's (UMT5EncoderModel; umT5-XXL in Wan2.1): shared token embedding,
/// blocks of self-attention with a relative position bias (bidirectional
/// buckets; T5: computed by block 0 and shared by all, umT5: every block has
/// its own; no 1/sqrt(d) score scaling) and a gated-GELU feed-forward (tanh GELU), RMS
/// norms (T5LayerNorm), final_layer_norm. Parameters are named as
/// transformers' state dict (encoder.block.N.layer.0.SelfAttention.q.weight, ...).
///
///   auto t5 = spdit::text::load_t5_encoder("FLUX.1-dev/text_encoder_2");
///   at::Tensor h = t5->forward(ids);   // ids (B, 512) int64 -> (B, 512, 4096), bf16
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <string>
#include <vector>

#include "spdit/models/layers.h"
#include "spdit/text/text_layers.h"

namespace spdit::text {

/// config.json of a T5 encoder (defaults: T5 v1.1 XXL, as Flux ships it).
struct T5EncoderConfig {
  int64_t vocab_size = 32128;
  int64_t d_model = 4096;
  int64_t d_kv = 64;
  int64_t d_ff = 10240;
  int64_t num_heads = 64;
  int64_t num_layers = 24;
  int64_t relative_attention_num_buckets = 32;
  int64_t relative_attention_max_distance = 128;
  std::string feed_forward_proj = "gated-gelu";
  double layer_norm_epsilon = 1e-6;
  /// umT5 (config.json's model_type "umt5"): every block has its own
  /// relative_attention_bias table instead of sharing block 0's.
  bool position_bias_per_layer = false;

  /// umT5-XXL as Wan2.1 ships it (google/umt5-xxl's encoder).
  static T5EncoderConfig umt5_xxl();
  /// Reads a config.json's text (`where` names it in errors). Only T5 v1.1's
  /// gated-gelu feed-forward is supported (others are refused).
  static T5EncoderConfig from_json(const std::string& text, const std::string& where);
  std::string to_json() const;
};

/// The bidirectional relative position buckets (q_len, k_len) of
/// transformers' T5Attention._relative_position_bucket, for key - query.
at::Tensor t5_relative_position_buckets(int64_t q_len, int64_t k_len, int64_t num_buckets,
                                        int64_t max_distance);

class T5SelfAttentionImpl : public torch::nn::Module {
 public:
  T5SelfAttentionImpl(const T5EncoderConfig& c, bool has_relative_bias);
  /// `bias` (1 or B, heads, S, S) is added to the scores (position bias and mask).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& bias);
  /// The position bias (1, heads, S, S) in the weights' dtype (blocks that
  /// have a relative_attention_bias table: T5's block 0, every umT5 block).
  at::Tensor position_bias(int64_t seq) const;
  models::Linear q{nullptr}, k{nullptr}, v{nullptr}, o{nullptr};
  EmbeddingTable relative_attention_bias{nullptr};

 private:
  int64_t heads_, d_kv_, buckets_, max_distance_;
};
TORCH_MODULE(T5SelfAttention);

class T5BlockImpl : public torch::nn::Module {
 public:
  T5BlockImpl(const T5EncoderConfig& c, bool has_relative_bias);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& bias);
  T5SelfAttention attention{nullptr};

 private:
  T5LayerNorm attention_norm_{nullptr}, ff_norm_{nullptr};
  models::Linear wi_0_{nullptr}, wi_1_{nullptr}, wo_{nullptr};
};
TORCH_MODULE(T5Block);

class T5EncoderModelImpl : public torch::nn::Module {
 public:
  explicit T5EncoderModelImpl(const T5EncoderConfig& config);
  /// input_ids (B, S) int64; attention_mask (B, S), 1 = attend, 0 = padding,
  /// or undefined (Flux's pipeline passes none: every token sees all 512).
  /// Runs in the weights' dtype (norm statistics and softmax in fp32) and
  /// returns the last hidden state (B, S, d_model) in that dtype.
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& attention_mask = {});
  const T5EncoderConfig& config() const { return config_; }
  at::ScalarType dtype() const { return shared_->weight.scalar_type(); }

 private:
  T5EncoderConfig config_;
  EmbeddingTable shared_{nullptr};
  std::vector<T5Block> blocks_;
  T5LayerNorm final_layer_norm_{nullptr};
};
TORCH_MODULE(T5EncoderModel);

}  // namespace spdit::text
