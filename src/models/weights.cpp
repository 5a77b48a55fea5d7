#include <torch/nn/module.h>

#include <regex>
#include <stdexcept>

#include "spdit/models/weights.h"

namespace spdit::models {
namespace {

std::map<std::string, at::Tensor> state_of(const torch::nn::Module& model) {
  std::map<std::string, at::Tensor> s;
  for (const auto& p : model.named_parameters(true)) s.emplace(p.key(), p.value());
  for (const auto& b : model.named_buffers(true)) s.emplace(b.key(), b.value());
  return s;
}

std::string list_some(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < 5; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > 5) s += ", ... (" + std::to_string(names.size()) + " in all)";
  return s;
}

}  // namespace

void save_weights(const torch::nn::Module& model, const std::string& path) {
  write_safetensors(path, state_of(model), {{"format", "pt"}, {"writer", "spdit"}});
}

bool is_flux_original_layout(const std::map<std::string, at::Tensor>& t) {
  // Only names no diffusers model uses: Qwen-Image's own checkpoints have
  // `img_in.` and `txt_in.` too, so those prove nothing.
  for (const auto& [k, v] : t) {
    for (const char* p :
         {"double_blocks.", "single_blocks.", "time_in.", "vector_in.", "final_layer."}) {
      if (k.rfind(p, 0) == 0) return true;
    }
  }
  return false;
}

std::map<std::string, at::Tensor> convert_flux_original(
    const std::map<std::string, at::Tensor>& in) {
  // Renames that keep the tensor as it is (suffix .weight/.bias/.scale kept).
  static const std::vector<std::pair<std::regex, std::string>> renames = {
      {std::regex(R"(^img_in\.)"), "x_embedder."},
      {std::regex(R"(^txt_in\.)"), "context_embedder."},
      {std::regex(R"(^time_in\.in_layer\.)"), "time_text_embed.timestep_embedder.linear_1."},
      {std::regex(R"(^time_in\.out_layer\.)"), "time_text_embed.timestep_embedder.linear_2."},
      {std::regex(R"(^guidance_in\.in_layer\.)"), "time_text_embed.guidance_embedder.linear_1."},
      {std::regex(R"(^guidance_in\.out_layer\.)"), "time_text_embed.guidance_embedder.linear_2."},
      {std::regex(R"(^vector_in\.in_layer\.)"), "time_text_embed.text_embedder.linear_1."},
      {std::regex(R"(^vector_in\.out_layer\.)"), "time_text_embed.text_embedder.linear_2."},
      {std::regex(R"(^double_blocks\.(\d+)\.img_mod\.lin\.)"),
       "transformer_blocks.$1.norm1.linear."},
      {std::regex(R"(^double_blocks\.(\d+)\.txt_mod\.lin\.)"),
       "transformer_blocks.$1.norm1_context.linear."},
      {std::regex(R"(^double_blocks\.(\d+)\.img_attn\.norm\.query_norm\.scale$)"),
       "transformer_blocks.$1.attn.norm_q.weight"},
      {std::regex(R"(^double_blocks\.(\d+)\.img_attn\.norm\.key_norm\.scale$)"),
       "transformer_blocks.$1.attn.norm_k.weight"},
      {std::regex(R"(^double_blocks\.(\d+)\.txt_attn\.norm\.query_norm\.scale$)"),
       "transformer_blocks.$1.attn.norm_added_q.weight"},
      {std::regex(R"(^double_blocks\.(\d+)\.txt_attn\.norm\.key_norm\.scale$)"),
       "transformer_blocks.$1.attn.norm_added_k.weight"},
      {std::regex(R"(^double_blocks\.(\d+)\.img_attn\.proj\.)"),
       "transformer_blocks.$1.attn.to_out.0."},
      {std::regex(R"(^double_blocks\.(\d+)\.txt_attn\.proj\.)"),
       "transformer_blocks.$1.attn.to_add_out."},
      {std::regex(R"(^double_blocks\.(\d+)\.img_mlp\.0\.)"),
       "transformer_blocks.$1.ff.net.0.proj."},
      {std::regex(R"(^double_blocks\.(\d+)\.img_mlp\.2\.)"), "transformer_blocks.$1.ff.net.2."},
      {std::regex(R"(^double_blocks\.(\d+)\.txt_mlp\.0\.)"),
       "transformer_blocks.$1.ff_context.net.0.proj."},
      {std::regex(R"(^double_blocks\.(\d+)\.txt_mlp\.2\.)"),
       "transformer_blocks.$1.ff_context.net.2."},
      {std::regex(R"(^single_blocks\.(\d+)\.linear2\.)"), "single_transformer_blocks.$1.proj_out."},
      {std::regex(R"(^single_blocks\.(\d+)\.modulation\.lin\.)"),
       "single_transformer_blocks.$1.norm.linear."},
      {std::regex(R"(^single_blocks\.(\d+)\.norm\.query_norm\.scale$)"),
       "single_transformer_blocks.$1.attn.norm_q.weight"},
      {std::regex(R"(^single_blocks\.(\d+)\.norm\.key_norm\.scale$)"),
       "single_transformer_blocks.$1.attn.norm_k.weight"},
      {std::regex(R"(^final_layer\.linear\.)"), "proj_out."},
  };
  static const std::regex img_qkv(R"(^double_blocks\.(\d+)\.img_attn\.qkv\.(weight|bias)$)");
  static const std::regex txt_qkv(R"(^double_blocks\.(\d+)\.txt_attn\.qkv\.(weight|bias)$)");
  static const std::regex linear1(R"(^single_blocks\.(\d+)\.linear1\.(weight|bias)$)");
  static const std::regex final_mod(R"(^final_layer\.adaLN_modulation\.1\.(weight|bias)$)");
  std::map<std::string, at::Tensor> out;
  std::smatch m;
  for (const auto& [key, t] : in) {
    if (std::regex_match(key, m, img_qkv) || std::regex_match(key, m, txt_qkv)) {
      const bool img = key.find("img_attn") != std::string::npos;
      auto parts = t.chunk(3, 0);
      const std::string base = "transformer_blocks." + m[1].str() + ".attn.";
      const char* names[3] = {img ? "to_q" : "add_q_proj", img ? "to_k" : "add_k_proj",
                              img ? "to_v" : "add_v_proj"};
      for (int i = 0; i < 3; ++i) out[base + names[i] + "." + m[2].str()] = parts[i].contiguous();
      continue;
    }
    if (std::regex_match(key, m, linear1)) {
      // [q, k, v, mlp] stacked on dim 0; the mlp part is 4x the hidden size.
      const int64_t hidden = (t.size(0)) / 7;
      auto parts = t.split_with_sizes({hidden, hidden, hidden, 4 * hidden}, 0);
      const std::string base = "single_transformer_blocks." + m[1].str() + ".";
      const char* names[4] = {"attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"};
      for (int i = 0; i < 4; ++i) out[base + names[i] + "." + m[2].str()] = parts[i].contiguous();
      continue;
    }
    if (std::regex_match(key, m, final_mod)) {
      // The original stores (shift, scale); diffusers' AdaLayerNormContinuous (scale, shift).
      auto halves = t.chunk(2, 0);
      out["norm_out.linear." + m[1].str()] = at::cat({halves[1], halves[0]}, 0);
      continue;
    }
    std::string renamed = key;
    for (const auto& [re, to] : renames) {
      if (std::regex_search(key, re)) {
        renamed = std::regex_replace(key, re, to);
        break;
      }
    }
    out[renamed] = t;
  }
  return out;
}

void load_weights(torch::nn::Module& model, const std::string& path) {
  load_weights(model, read_safetensors(path), path);
}

void load_weights(torch::nn::Module& model, std::map<std::string, at::Tensor> tensors,
                  const std::string& source) {
  auto state = state_of(model);
  // A checkpoint in the model's own names is loaded as it is; only one that
  // is not, and that carries names only Flux's original layout has, is
  // renamed, and only into a model that has Flux's diffusers names.
  bool own_names = true;
  for (const auto& [name, t] : state) own_names = own_names && tensors.count(name);
  if (!own_names && is_flux_original_layout(tensors)) {
    if (!state.count("x_embedder.weight") ||
        !state.count("time_text_embed.timestep_embedder.linear_1.weight")) {
      throw std::runtime_error(
          "spdit: weights '" + source +
          "' are a Flux checkpoint in Flux's original layout (double_blocks.*, "
          "single_blocks.*), but the model is not Flux; pass --model flux, or a "
          "checkpoint of this model");
    }
    tensors = convert_flux_original(tensors);
  }
  std::vector<std::string> missing, extra;
  for (const auto& [name, t] : state) {
    if (!tensors.count(name)) missing.push_back(name);
  }
  for (const auto& [name, t] : tensors) {
    if (!state.count(name)) extra.push_back(name);
  }
  if (!missing.empty()) {
    throw std::runtime_error("spdit: weights '" + source +
                             "' lack tensor(s) the model needs: " + list_some(missing) +
                             " (is it a checkpoint of this model and preset?)");
  }
  if (!extra.empty()) {
    throw std::runtime_error("spdit: weights '" + source +
                             "' hold tensor(s) the model does not have: " + list_some(extra) +
                             " (is it a checkpoint of this model and preset?)");
  }
  for (const auto& [name, t] : state) {
    const auto& src = tensors.at(name);
    if (src.sizes() != t.sizes()) {
      throw std::runtime_error("spdit: weights '" + source + "': tensor '" + name + "' has shape " +
                               std::string(c10::str(src.sizes())) + " but the model expects " +
                               std::string(c10::str(t.sizes())));
    }
  }
  at::NoGradGuard no_grad;
  for (auto& [name, t] : state) t.copy_(tensors.at(name));
}

}  // namespace spdit::models
