#include "spdit/text/clip_text_model.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "config_fields.h"

namespace spdit::text {

ClipTextConfig ClipTextConfig::from_json(const std::string& text, const std::string& where) {
  const auto j = parse_config(text, where);
  ClipTextConfig c;
  c.vocab_size = config_int(j, "vocab_size", c.vocab_size, where);
  c.hidden_size = config_int(j, "hidden_size", c.hidden_size, where);
  c.intermediate_size = config_int(j, "intermediate_size", c.intermediate_size, where);
  c.num_attention_heads = config_int(j, "num_attention_heads", c.num_attention_heads, where);
  c.num_hidden_layers = config_int(j, "num_hidden_layers", c.num_hidden_layers, where);
  c.max_position_embeddings =
      config_int(j, "max_position_embeddings", c.max_position_embeddings, where);
  c.hidden_act = config_string(j, "hidden_act", c.hidden_act, where);
  c.layer_norm_eps = config_double(j, "layer_norm_eps", c.layer_norm_eps, where);
  c.eos_token_id = config_int(j, "eos_token_id", c.eos_token_id, where);
  require_positive({{"vocab_size", c.vocab_size},
                    {"hidden_size", c.hidden_size},
                    {"intermediate_size", c.intermediate_size},
                    {"num_attention_heads", c.num_attention_heads},
                    {"num_hidden_layers", c.num_hidden_layers},
                    {"max_position_embeddings", c.max_position_embeddings}},
                   where);
  if (c.hidden_size % c.num_attention_heads != 0) {
    throw std::runtime_error("spdit: " + where + ": hidden_size " + std::to_string(c.hidden_size) +
                             " is not a multiple of num_attention_heads " +
                             std::to_string(c.num_attention_heads));
  }
  if (c.hidden_act != "quick_gelu") {
    // Only the activation of the CLIP towers Flux (and SD 1.x) ship is implemented.
    throw std::runtime_error(
        "spdit: " + where + ": hidden_act '" + c.hidden_act +
        "' is not supported; spdit's CLIP text model implements quick_gelu (OpenAI's CLIP)");
  }
  return c;
}

std::string ClipTextConfig::to_json() const {
  nlohmann::ordered_json j;
  j["architectures"] = {"CLIPTextModel"};
  j["model_type"] = "clip_text_model";
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_attention_heads"] = num_attention_heads;
  j["num_hidden_layers"] = num_hidden_layers;
  j["max_position_embeddings"] = max_position_embeddings;
  j["hidden_act"] = hidden_act;
  j["layer_norm_eps"] = layer_norm_eps;
  j["eos_token_id"] = eos_token_id;
  return j.dump(2) + "\n";
}

ClipAttentionImpl::ClipAttentionImpl(int64_t hidden, int64_t heads) : heads_(heads) {
  q_proj = register_module("q_proj", models::Linear(hidden, hidden));
  k_proj = register_module("k_proj", models::Linear(hidden, hidden));
  v_proj = register_module("v_proj", models::Linear(hidden, hidden));
  out_proj = register_module("out_proj", models::Linear(hidden, hidden));
}

at::Tensor ClipAttentionImpl::forward(const at::Tensor& x, const at::Tensor& additive_mask) {
  const int64_t b = x.size(0), s = x.size(1), hidden = x.size(2), d = hidden / heads_;
  auto split = [&](const at::Tensor& t) { return t.view({b, s, heads_, d}).transpose(1, 2); };
  const auto q = split(q_proj->forward(x)), k = split(k_proj->forward(x)),
             v = split(v_proj->forward(x));
  // As transformers' eager attention: the scale on the scores, then the mask.
  const auto scores =
      at::matmul(q, k.transpose(-1, -2)) * (1.0 / std::sqrt(static_cast<double>(d)));
  const auto weights = softmax_fp32(scores + additive_mask);
  return out_proj->forward(at::matmul(weights, v).transpose(1, 2).reshape({b, s, hidden}));
}

ClipMlpImpl::ClipMlpImpl(int64_t hidden, int64_t intermediate) {
  fc1 = register_module("fc1", models::Linear(hidden, intermediate));
  fc2 = register_module("fc2", models::Linear(intermediate, hidden));
}

at::Tensor ClipMlpImpl::forward(const at::Tensor& x) {
  const auto h = fc1->forward(x);
  return fc2->forward(h * at::sigmoid(1.702 * h));  // quick_gelu
}

ClipEncoderLayerImpl::ClipEncoderLayerImpl(const ClipTextConfig& c) {
  self_attn = register_module("self_attn", ClipAttention(c.hidden_size, c.num_attention_heads));
  layer_norm1 = register_module("layer_norm1", TextLayerNorm(c.hidden_size, c.layer_norm_eps));
  mlp = register_module("mlp", ClipMlp(c.hidden_size, c.intermediate_size));
  layer_norm2 = register_module("layer_norm2", TextLayerNorm(c.hidden_size, c.layer_norm_eps));
}

at::Tensor ClipEncoderLayerImpl::forward(const at::Tensor& x, const at::Tensor& additive_mask) {
  const auto h = x + self_attn->forward(layer_norm1->forward(x), additive_mask);
  return h + mlp->forward(layer_norm2->forward(h));
}

namespace {
constexpr int64_t kClipEndOfText = 49407;
// The submodules that only carry names: text_model, its embeddings and encoder.
struct NamedNode : torch::nn::Module {};
}  // namespace

ClipTextModelImpl::ClipTextModelImpl(const ClipTextConfig& config) : config_(config) {
  auto text_model = register_module("text_model", std::make_shared<NamedNode>());
  auto embeddings = text_model->register_module("embeddings", std::make_shared<NamedNode>());
  token_embedding_ = embeddings->register_module(
      "token_embedding", EmbeddingTable(config.vocab_size, config.hidden_size));
  position_embedding_ = embeddings->register_module(
      "position_embedding", EmbeddingTable(config.max_position_embeddings, config.hidden_size));
  auto encoder = text_model->register_module("encoder", std::make_shared<NamedNode>());
  auto layers = encoder->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    layers_.emplace_back(config);
    layers->push_back(layers_.back());
  }
  final_layer_norm_ = text_model->register_module(
      "final_layer_norm", TextLayerNorm(config.hidden_size, config.layer_norm_eps));
}

ClipTextOutput ClipTextModelImpl::forward(const at::Tensor& input_ids) {
  at::NoGradGuard no_grad;  // inference only
  if (input_ids.dim() != 2 || input_ids.scalar_type() != at::kLong) {
    throw std::runtime_error(
        "spdit: the CLIP text model takes input_ids of shape (batch, tokens) as int64, not " +
        std::to_string(input_ids.dim()) + "-d " + c10::toString(input_ids.scalar_type()));
  }
  const int64_t b = input_ids.size(0), s = input_ids.size(1);
  if (s < 1 || s > config_.max_position_embeddings) {
    throw std::runtime_error(
        "spdit: the CLIP text model takes 1 to " + std::to_string(config_.max_position_embeddings) +
        " tokens (max_position_embeddings), not " + std::to_string(s) +
        "; tokenize with max_length " + std::to_string(config_.max_position_embeddings));
  }
  const auto dtype = this->dtype();
  auto x = token_embedding_->forward(input_ids, "CLIP token") +
           position_embedding_->forward(at::arange(s, input_ids.options()), "CLIP position")
               .unsqueeze(0);
  // Causal: each token sees itself and those before it (the dtype's lowest
  // value above the diagonal, as transformers' mask).
  const double lowest = dtype == at::kBFloat16
                            ? static_cast<double>(std::numeric_limits<c10::BFloat16>::lowest())
                            : static_cast<double>(std::numeric_limits<float>::lowest());
  const auto mask = at::full({s, s}, lowest, at::TensorOptions().dtype(dtype)).triu(1);
  for (auto& layer : layers_) x = layer->forward(x, mask);
  ClipTextOutput out;
  out.last_hidden_state = final_layer_norm_->forward(x);
  // Where transformers' CLIPTextTransformer pools: at the highest id when
  // every row's highest id is 49407 (the real vocabulary's <|endoftext|>;
  // argmax picks the first of equal maxima, so the first <|endoftext|> when
  // padding repeats it), else at the first token equal to eos_token_id.
  // (Older transformers tested eos_token_id == 2 instead; on a real CLIP
  // vocabulary both give the first <|endoftext|>.)
  const bool legacy = input_ids.amax(-1).eq(kClipEndOfText).all().item<bool>();
  const auto at_eos =
      legacy ? input_ids.argmax(-1) : input_ids.eq(config_.eos_token_id).to(at::kInt).argmax(-1);
  out.pooled = out.last_hidden_state.index({at::arange(b, input_ids.options()), at_eos});
  return out;
}

}  // namespace spdit::text
