#include "spdit/text/qwen2_text_model.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <stdexcept>

#include "config_fields.h"

namespace spdit::text {

Qwen2TextConfig Qwen2TextConfig::from_json(const std::string& text, const std::string& where) {
  const auto top = parse_config(text, where);
  // transformers >= 4.53 nests the language model's fields in text_config
  // (and may keep copies at the top); older files have them only at the top.
  const bool nested = top.contains("text_config") && top["text_config"].is_object() &&
                      top["text_config"].contains("hidden_size");
  const auto& j = nested ? top["text_config"] : top;
  const std::string at = nested ? where + " (text_config)" : where;
  const std::string type = config_string(top, "model_type", "qwen2_5_vl", where);
  if (type != "qwen2_5_vl" && type != "qwen2_vl" && type != "qwen2" && type != "qwen2_5_vl_text") {
    throw std::runtime_error("spdit: " + where + ": model_type '" + type +
                             "' is not a Qwen2 / Qwen2.5-VL text encoder (Qwen-Image's is "
                             "'qwen2_5_vl')");
  }
  Qwen2TextConfig c;
  if (!j.contains("hidden_size") || !j.contains("num_hidden_layers")) {
    throw std::runtime_error("spdit: " + at +
                             " has no hidden_size / num_hidden_layers; is this a Qwen2.5-VL "
                             "text_encoder/config.json?");
  }
  c.vocab_size = config_int(j, "vocab_size", c.vocab_size, at);
  c.hidden_size = config_int(j, "hidden_size", c.hidden_size, at);
  c.intermediate_size = config_int(j, "intermediate_size", c.intermediate_size, at);
  c.num_hidden_layers = config_int(j, "num_hidden_layers", c.num_hidden_layers, at);
  c.num_attention_heads = config_int(j, "num_attention_heads", c.num_attention_heads, at);
  c.num_key_value_heads = config_int(j, "num_key_value_heads", c.num_attention_heads, at);
  c.rms_norm_eps = config_double(j, "rms_norm_eps", c.rms_norm_eps, at);
  c.rope_theta = config_double(j, "rope_theta", c.rope_theta, at);
  require_positive({{"vocab_size", c.vocab_size},
                    {"hidden_size", c.hidden_size},
                    {"intermediate_size", c.intermediate_size},
                    {"num_hidden_layers", c.num_hidden_layers},
                    {"num_attention_heads", c.num_attention_heads},
                    {"num_key_value_heads", c.num_key_value_heads}},
                   at);
  if (c.hidden_size % c.num_attention_heads != 0 || c.head_dim() % 2 != 0) {
    throw std::runtime_error("spdit: " + at + ": hidden_size " + std::to_string(c.hidden_size) +
                             " should be num_attention_heads (" +
                             std::to_string(c.num_attention_heads) + ") times an even head_dim");
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    throw std::runtime_error(
        "spdit: " + at + ": num_attention_heads " + std::to_string(c.num_attention_heads) +
        " should be a multiple of num_key_value_heads " + std::to_string(c.num_key_value_heads));
  }
  const std::string act = config_string(j, "hidden_act", "silu", at);
  if (act != "silu") {
    throw std::runtime_error("spdit: " + at + ": hidden_act '" + act +
                             "' is not supported; Qwen2's MLP uses 'silu'");
  }
  c.mrope_section.clear();
  const auto& rs =
      j.contains("rope_scaling") ? j["rope_scaling"] : top.value("rope_scaling", nlohmann::json());
  if (rs.is_object()) {
    const std::string kind = rs.value("type", rs.value("rope_type", std::string("default")));
    if (kind != "mrope" && kind != "default") {
      throw std::runtime_error("spdit: " + at + ": rope_scaling type '" + kind +
                               "' is not implemented (spdit computes Qwen2.5-VL's mrope / "
                               "default RoPE)");
    }
    if (rs.contains("mrope_section")) {
      for (const auto& v : rs["mrope_section"]) {
        if (!v.is_number_integer())
          throw std::runtime_error("spdit: " + at +
                                   ": rope_scaling.mrope_section should hold integers");
        c.mrope_section.push_back(v.get<int64_t>());
      }
      const int64_t sum =
          std::accumulate(c.mrope_section.begin(), c.mrope_section.end(), int64_t{0});
      if (sum != c.head_dim() / 2) {
        throw std::runtime_error(
            "spdit: " + at + ": rope_scaling.mrope_section adds up to " + std::to_string(sum) +
            "; it should be head_dim / 2 = " + std::to_string(c.head_dim() / 2));
      }
    }
  }
  return c;
}

std::string Qwen2TextConfig::to_json() const {
  nlohmann::ordered_json j;
  j["architectures"] = {"Qwen2_5_VLForConditionalGeneration"};
  j["model_type"] = "qwen2_5_vl";
  j["hidden_act"] = "silu";
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  if (!mrope_section.empty())
    j["rope_scaling"] = {{"type", "mrope"}, {"mrope_section", mrope_section}};
  return j.dump(2) + "\n";
}

Qwen2RMSNormImpl::Qwen2RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", at::ones({dim}));
}

at::Tensor Qwen2RMSNormImpl::forward(const at::Tensor& x) const {
  const auto xf = x.to(at::kFloat);
  // Back to x's dtype before the weight (T5's norm casts to the weight's instead).
  return weight * (xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps_)).to(x.scalar_type());
}

std::pair<at::Tensor, at::Tensor> qwen2_rope_cos_sin(const at::Tensor& position_ids,
                                                     int64_t head_dim, double theta) {
  const auto exponents =
      at::arange(0, head_dim, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) /
      static_cast<double>(head_dim);
  const auto inv_freq = 1.0 / at::pow(theta, exponents);                    // fp32, as transformers
  const auto freqs = position_ids.to(at::kFloat).unsqueeze(-1) * inv_freq;  // (B, S, d/2)
  const auto emb = at::cat({freqs, freqs}, -1);
  return {emb.cos(), emb.sin()};
}

namespace {

at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

}  // namespace

Qwen2AttentionImpl::Qwen2AttentionImpl(const Qwen2TextConfig& c)
    : heads_(c.num_attention_heads), kv_heads_(c.num_key_value_heads), head_dim_(c.head_dim()) {
  q_proj = register_module("q_proj", models::Linear(c.hidden_size, heads_ * head_dim_, true));
  k_proj = register_module("k_proj", models::Linear(c.hidden_size, kv_heads_ * head_dim_, true));
  v_proj = register_module("v_proj", models::Linear(c.hidden_size, kv_heads_ * head_dim_, true));
  o_proj = register_module("o_proj", models::Linear(heads_ * head_dim_, c.hidden_size, false));
}

at::Tensor Qwen2AttentionImpl::forward(const at::Tensor& x, const at::Tensor& cos,
                                       const at::Tensor& sin, const at::Tensor& bias) {
  const int64_t b = x.size(0), s = x.size(1);
  auto heads = [&](const at::Tensor& t, int64_t n) {
    return t.view({b, s, n, head_dim_}).transpose(1, 2);
  };
  const auto c = cos.unsqueeze(1), sn = sin.unsqueeze(1);  // broadcast over heads
  auto q = heads(q_proj->forward(x), heads_);
  auto k = heads(k_proj->forward(x), kv_heads_);
  auto v = heads(v_proj->forward(x), kv_heads_);
  q = q * c + rotate_half(q) * sn;
  k = k * c + rotate_half(k) * sn;
  // Grouped KV heads: head h reads KV head h / (heads / kv_heads), as repeat_kv.
  const int64_t groups = heads_ / kv_heads_;
  if (groups > 1) {
    k = k.repeat_interleave(groups, 1);
    v = v.repeat_interleave(groups, 1);
  }
  const auto scores =
      at::matmul(q, k.transpose(-1, -2)) * (1.0 / std::sqrt(double(head_dim_))) + bias;
  const auto out = at::matmul(softmax_fp32(scores), v);
  return o_proj->forward(out.transpose(1, 2).reshape({b, s, heads_ * head_dim_}));
}

namespace {
struct NamedNode : torch::nn::Module {};
}  // namespace

Qwen2DecoderLayerImpl::Qwen2DecoderLayerImpl(const Qwen2TextConfig& c) {
  self_attn = register_module("self_attn", Qwen2Attention(c));
  auto mlp = register_module("mlp", std::make_shared<NamedNode>());
  gate_proj_ =
      mlp->register_module("gate_proj", models::Linear(c.hidden_size, c.intermediate_size, false));
  up_proj_ =
      mlp->register_module("up_proj", models::Linear(c.hidden_size, c.intermediate_size, false));
  down_proj_ =
      mlp->register_module("down_proj", models::Linear(c.intermediate_size, c.hidden_size, false));
  input_layernorm_ =
      register_module("input_layernorm", Qwen2RMSNorm(c.hidden_size, c.rms_norm_eps));
  post_attention_layernorm_ =
      register_module("post_attention_layernorm", Qwen2RMSNorm(c.hidden_size, c.rms_norm_eps));
}

at::Tensor Qwen2DecoderLayerImpl::forward(const at::Tensor& x, const at::Tensor& cos,
                                          const at::Tensor& sin, const at::Tensor& bias) {
  const auto h = x + self_attn->forward(input_layernorm_->forward(x), cos, sin, bias);
  const auto y = post_attention_layernorm_->forward(h);
  return h + down_proj_->forward(at::silu(gate_proj_->forward(y)) * up_proj_->forward(y));
}

Qwen2TextModelImpl::Qwen2TextModelImpl(const Qwen2TextConfig& config) : config_(config) {
  embed_tokens_ =
      register_module("embed_tokens", EmbeddingTable(config.vocab_size, config.hidden_size));
  auto layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    layers_.emplace_back(config);
    layers->push_back(layers_.back());
  }
  norm_ = register_module("norm", Qwen2RMSNorm(config.hidden_size, config.rms_norm_eps));
}

at::Tensor Qwen2TextModelImpl::forward(const at::Tensor& input_ids,
                                       const at::Tensor& attention_mask) {
  at::NoGradGuard no_grad;  // inference only
  if (input_ids.dim() != 2 || input_ids.scalar_type() != at::kLong || input_ids.size(1) < 1) {
    throw std::runtime_error(
        "spdit: the Qwen2 text model takes input_ids of shape (batch, tokens) as int64, not " +
        std::to_string(input_ids.dim()) + "-d " + c10::toString(input_ids.scalar_type()));
  }
  const int64_t b = input_ids.size(0), s = input_ids.size(1);
  const auto mask = attention_mask.defined()
                        ? attention_mask.to(at::kLong)
                        : at::ones({b, s}, at::TensorOptions().dtype(at::kLong));
  if (mask.sizes() != input_ids.sizes()) {
    throw std::runtime_error(
        "spdit: the Qwen2 attention_mask should have the shape of input_ids (batch, tokens)");
  }
  auto x = embed_tokens_->forward(input_ids, "Qwen2 token");
  // get_rope_index for text: the position counts the tokens before it; padding gets 1.
  const auto positions = (mask.cumsum(-1) - 1).masked_fill(mask.eq(0), 1);
  auto [cos, sin] = qwen2_rope_cos_sin(positions, config_.head_dim(), config_.rope_theta);
  cos = cos.to(dtype());
  sin = sin.to(dtype());
  // Causal, and no key at padding; masked scores get the dtype's lowest value
  // (a row with every key masked stays finite, as in transformers' eager path).
  const auto causal = at::ones({s, s}, at::TensorOptions().dtype(at::kBool)).tril();
  const auto allowed = causal.view({1, 1, s, s}).logical_and(mask.ne(0).view({b, 1, 1, s}));
  const double lowest = dtype() == at::kBFloat16
                            ? static_cast<double>(std::numeric_limits<c10::BFloat16>::lowest())
                            : static_cast<double>(std::numeric_limits<float>::lowest());
  const auto bias = at::zeros({b, 1, s, s}, x.options()).masked_fill(allowed.logical_not(), lowest);
  for (auto& layer : layers_) x = layer->forward(x, cos, sin, bias);
  return norm_->forward(x);
}

}  // namespace spdit::text
