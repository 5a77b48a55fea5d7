#include "spdit/text/t5_encoder.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "config_fields.h"

namespace spdit::text {

T5EncoderConfig T5EncoderConfig::from_json(const std::string& text, const std::string& where) {
  const auto j = parse_config(text, where);
  T5EncoderConfig c;
  c.vocab_size = config_int(j, "vocab_size", c.vocab_size, where);
  c.d_model = config_int(j, "d_model", c.d_model, where);
  c.d_kv = config_int(j, "d_kv", c.d_kv, where);
  c.d_ff = config_int(j, "d_ff", c.d_ff, where);
  c.num_heads = config_int(j, "num_heads", c.num_heads, where);
  c.num_layers = config_int(j, "num_layers", c.num_layers, where);
  c.relative_attention_num_buckets =
      config_int(j, "relative_attention_num_buckets", c.relative_attention_num_buckets, where);
  c.relative_attention_max_distance =
      config_int(j, "relative_attention_max_distance", c.relative_attention_max_distance, where);
  c.feed_forward_proj = config_string(j, "feed_forward_proj", c.feed_forward_proj, where);
  c.layer_norm_epsilon = config_double(j, "layer_norm_epsilon", c.layer_norm_epsilon, where);
  c.position_bias_per_layer = config_string(j, "model_type", "t5", where) == "umt5";
  require_positive({{"vocab_size", c.vocab_size},
                    {"d_model", c.d_model},
                    {"d_kv", c.d_kv},
                    {"d_ff", c.d_ff},
                    {"num_heads", c.num_heads},
                    {"num_layers", c.num_layers},
                    {"relative_attention_max_distance", c.relative_attention_max_distance}},
                   where);
  // The bucket formula halves the buckets twice and takes a log of max_distance / max_exact.
  if (c.relative_attention_num_buckets < 4 ||
      c.relative_attention_max_distance <= c.relative_attention_num_buckets / 4) {
    throw std::runtime_error("spdit: " + where + ": relative_attention_num_buckets " +
                             std::to_string(c.relative_attention_num_buckets) + " / max_distance " +
                             std::to_string(c.relative_attention_max_distance) +
                             " give no valid buckets (T5 uses 32 / 128)");
  }
  if (c.feed_forward_proj != "gated-gelu") {
    throw std::runtime_error(
        "spdit: " + where + ": feed_forward_proj '" + c.feed_forward_proj +
        "' is not supported; spdit's T5 encoder implements T5 v1.1's 'gated-gelu'");
  }
  return c;
}

T5EncoderConfig T5EncoderConfig::umt5_xxl() {
  T5EncoderConfig c;
  c.vocab_size = 256384;
  c.position_bias_per_layer = true;
  return c;
}

std::string T5EncoderConfig::to_json() const {
  nlohmann::ordered_json j;
  j["architectures"] = {position_bias_per_layer ? "UMT5EncoderModel" : "T5EncoderModel"};
  j["model_type"] = position_bias_per_layer ? "umt5" : "t5";
  j["vocab_size"] = vocab_size;
  j["d_model"] = d_model;
  j["d_kv"] = d_kv;
  j["d_ff"] = d_ff;
  j["num_heads"] = num_heads;
  j["num_layers"] = num_layers;
  j["relative_attention_num_buckets"] = relative_attention_num_buckets;
  j["relative_attention_max_distance"] = relative_attention_max_distance;
  j["feed_forward_proj"] = feed_forward_proj;
  j["dense_act_fn"] = "gelu_new";
  j["is_gated_act"] = true;
  j["layer_norm_epsilon"] = layer_norm_epsilon;
  return j.dump(2) + "\n";
}

at::Tensor t5_relative_position_buckets(int64_t q_len, int64_t k_len, int64_t num_buckets,
                                        int64_t max_distance) {
  const auto opts = at::TensorOptions().dtype(at::kLong);
  const auto rel = at::arange(k_len, opts).unsqueeze(0) - at::arange(q_len, opts).unsqueeze(1);
  // Half the buckets for keys after the query, half for keys before (or at) it.
  const int64_t half = num_buckets / 2, max_exact = half / 2;
  const auto side = rel.gt(0).to(at::kLong) * half;
  const auto n = rel.abs();
  // Log-spaced beyond max_exact, up to max_distance; the clamp keeps log(0) out of it.
  auto large =
      max_exact + (at::log(n.to(at::kFloat).clamp_min(1) / static_cast<double>(max_exact)) /
                   std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)) *
                   static_cast<double>(half - max_exact))
                      .to(at::kLong);
  large = large.clamp_max(half - 1);
  return side + at::where(n.lt(max_exact), n, large);
}

T5SelfAttentionImpl::T5SelfAttentionImpl(const T5EncoderConfig& c, bool has_relative_bias)
    : heads_(c.num_heads),
      d_kv_(c.d_kv),
      buckets_(c.relative_attention_num_buckets),
      max_distance_(c.relative_attention_max_distance) {
  const int64_t inner = c.num_heads * c.d_kv;
  q = register_module("q", models::Linear(c.d_model, inner, false));
  k = register_module("k", models::Linear(c.d_model, inner, false));
  v = register_module("v", models::Linear(c.d_model, inner, false));
  o = register_module("o", models::Linear(inner, c.d_model, false));
  if (has_relative_bias) {
    relative_attention_bias =
        register_module("relative_attention_bias", EmbeddingTable(buckets_, heads_));
  }
}

at::Tensor T5SelfAttentionImpl::position_bias(int64_t seq) const {
  if (!relative_attention_bias)
    throw std::logic_error(
        "spdit: T5 position bias asked of a block without a relative_attention_bias table");
  const auto buckets = t5_relative_position_buckets(seq, seq, buckets_, max_distance_);
  return relative_attention_bias->forward(buckets, "T5 bucket").permute({2, 0, 1}).unsqueeze(0);
}

at::Tensor T5SelfAttentionImpl::forward(const at::Tensor& x, const at::Tensor& bias) {
  const int64_t b = x.size(0), s = x.size(1);
  auto split = [&](const at::Tensor& t) { return t.view({b, s, heads_, d_kv_}).transpose(1, 2); };
  // T5 folds the 1/sqrt(d) into its initialisation: the scores are not scaled.
  const auto scores =
      at::matmul(split(q->forward(x)), split(k->forward(x)).transpose(-1, -2)) + bias;
  const auto out = at::matmul(softmax_fp32(scores), split(v->forward(x)));
  return o->forward(out.transpose(1, 2).reshape({b, s, heads_ * d_kv_}));
}

namespace {
struct NamedNode : torch::nn::Module {};
}  // namespace

T5BlockImpl::T5BlockImpl(const T5EncoderConfig& c, bool has_relative_bias) {
  // layer.0: T5LayerSelfAttention (SelfAttention, layer_norm);
  // layer.1: T5LayerFF (DenseReluDense.wi_0 / wi_1 / wo, layer_norm).
  auto layer = register_module("layer", torch::nn::ModuleList());
  auto self_attention = std::make_shared<NamedNode>();
  attention =
      self_attention->register_module("SelfAttention", T5SelfAttention(c, has_relative_bias));
  attention_norm_ =
      self_attention->register_module("layer_norm", T5LayerNorm(c.d_model, c.layer_norm_epsilon));
  layer->push_back(self_attention);
  auto ff = std::make_shared<NamedNode>();
  auto dense = ff->register_module("DenseReluDense", std::make_shared<NamedNode>());
  wi_0_ = dense->register_module("wi_0", models::Linear(c.d_model, c.d_ff, false));
  wi_1_ = dense->register_module("wi_1", models::Linear(c.d_model, c.d_ff, false));
  wo_ = dense->register_module("wo", models::Linear(c.d_ff, c.d_model, false));
  ff_norm_ = ff->register_module("layer_norm", T5LayerNorm(c.d_model, c.layer_norm_epsilon));
  layer->push_back(ff);
}

namespace {
// transformers' NewGELUActivation (the tanh approximation), op by op in the
// input's dtype as it computes it: in BF16 each step rounds, and a fused GELU
// would round differently.
at::Tensor gelu_new(const at::Tensor& x) {
  return 0.5 * x * (1.0 + at::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * at::pow(x, 3.0))));
}
}  // namespace

at::Tensor T5BlockImpl::forward(const at::Tensor& x, const at::Tensor& bias) {
  const auto h = x + attention->forward(attention_norm_->forward(x), bias);
  const auto y = ff_norm_->forward(h);
  return h + wo_->forward(gelu_new(wi_0_->forward(y)) * wi_1_->forward(y));
}

T5EncoderModelImpl::T5EncoderModelImpl(const T5EncoderConfig& config) : config_(config) {
  shared_ = register_module("shared", EmbeddingTable(config.vocab_size, config.d_model));
  auto encoder = register_module("encoder", std::make_shared<NamedNode>());
  auto block = encoder->register_module("block", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_layers; ++i) {
    blocks_.emplace_back(config, /*has_relative_bias=*/i == 0 || config.position_bias_per_layer);
    block->push_back(blocks_.back());
  }
  final_layer_norm_ = encoder->register_module(
      "final_layer_norm", T5LayerNorm(config.d_model, config.layer_norm_epsilon));
}

at::Tensor T5EncoderModelImpl::forward(const at::Tensor& input_ids,
                                       const at::Tensor& attention_mask) {
  at::NoGradGuard no_grad;  // inference only
  if (input_ids.dim() != 2 || input_ids.scalar_type() != at::kLong || input_ids.size(1) < 1) {
    throw std::runtime_error(
        "spdit: the T5 encoder takes input_ids of shape (batch, tokens) as int64, not " +
        std::to_string(input_ids.dim()) + "-d " + c10::toString(input_ids.scalar_type()));
  }
  const int64_t s = input_ids.size(1);
  auto x = shared_->forward(input_ids, "T5 token");
  at::Tensor mask_bias;
  if (attention_mask.defined()) {
    if (attention_mask.sizes() != input_ids.sizes()) {
      throw std::runtime_error(
          "spdit: the T5 attention_mask should have the shape of input_ids (batch, tokens)");
    }
    // As transformers: the dtype's lowest value where the mask is 0, added to the bias.
    const double lowest = dtype() == at::kBFloat16
                              ? static_cast<double>(std::numeric_limits<c10::BFloat16>::lowest())
                              : static_cast<double>(std::numeric_limits<float>::lowest());
    const auto additive = (1 - attention_mask.to(at::kFloat)).mul(lowest).to(dtype());
    mask_bias = additive.view({input_ids.size(0), 1, 1, s});
  }
  auto with_mask = [&](at::Tensor bias) { return mask_bias.defined() ? bias + mask_bias : bias; };
  // T5 computes block 0's bias once for all blocks; umT5 each block's own.
  const auto shared = with_mask(blocks_.front()->attention->position_bias(s));
  for (auto& b : blocks_) {
    x = b->forward(
        x, config_.position_bias_per_layer ? with_mask(b->attention->position_bias(s)) : shared);
  }
  return final_layer_norm_->forward(x);
}

}  // namespace spdit::text
