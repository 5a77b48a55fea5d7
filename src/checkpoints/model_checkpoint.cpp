#include "spdit/checkpoints/model_checkpoint.h"
#include "spdit/models/precision.h"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <stdexcept>

#include "spdit/models/layers.h"
#include "spdit/models/skeleton.h"
#include "spdit/models/weights.h"

namespace spdit::checkpoints {
namespace {

using Shapes = std::map<std::string, std::vector<int64_t>>;
using models::FluxConfig;
using models::QwenImageConfig;
using models::WanConfig;

std::string list_some(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < 5; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > 5) s += ", ... (" + std::to_string(names.size()) + " in all)";
  return s;
}

// Reads the shape of `name`, or throws saying which tensor the dimensions need.
const std::vector<int64_t>& shape_of(const Shapes& s, const std::string& name, size_t dims) {
  auto it = s.find(name);
  if (it == s.end() || it->second.size() != dims) {
    throw std::runtime_error("spdit: the checkpoint has no " + std::to_string(dims) +
                             "-d tensor '" + name +
                             "' to read the model's dimensions from; add its config.json");
  }
  return it->second;
}

// 1 + the highest N of `prefix`N.
int64_t count_blocks(const Shapes& s, const std::string& prefix) {
  int64_t n = 0;
  for (const auto& [k, v] : s) {
    if (k.rfind(prefix, 0) != 0) continue;
    const auto rest = k.substr(prefix.size());
    const auto dot = rest.find('.');
    try {
      n = std::max<int64_t>(n, std::stoll(rest.substr(0, dot)) + 1);
    } catch (const std::exception&) {
    }
  }
  return n;
}

int64_t json_int(const nlohmann::json& j, const char* key, int64_t fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_number_integer()) {
    throw std::runtime_error(std::string("spdit: config.json field '") + key +
                             "' should be an integer, not " + j[key].dump());
  }
  return j[key].get<int64_t>();
}

// diffusers' attention fields, where config.json has them.
void read_attention_fields(const nlohmann::json& cfg, int64_t& heads, int64_t& head_dim,
                           std::vector<int64_t>& axes) {
  heads = json_int(cfg, "num_attention_heads", heads);
  head_dim = json_int(cfg, "attention_head_dim", head_dim);
  if (!cfg.contains("axes_dims_rope") || cfg["axes_dims_rope"].is_null()) return;
  const auto& a = cfg["axes_dims_rope"];
  if (!a.is_array() || !std::all_of(a.begin(), a.end(), [](const nlohmann::json& v) {
        return v.is_number_integer();
      })) {
    throw std::runtime_error(
        "spdit: config.json field 'axes_dims_rope' should be a list of integers, not " + a.dump());
  }
  axes = a.get<std::vector<int64_t>>();
}

std::vector<int64_t> default_axes(int64_t head_dim) {
  if (head_dim == 128) return {16, 56, 56};
  // As Flux splits 128: a sixth of the pairs for time, the rest shared by height and width.
  const int64_t t = (head_dim / 8) & ~int64_t{1}, hw = ((head_dim - t) / 2) & ~int64_t{1};
  return {head_dim - 2 * hw, hw, hw};
}

void check_dims(const std::string& what, int64_t hidden, int64_t heads, int64_t head_dim,
                const std::vector<int64_t>* axes) {
  if (heads <= 0 || head_dim <= 0 || heads * head_dim != hidden) {
    throw std::runtime_error("spdit: " + what + ": " + std::to_string(heads) + " heads of " +
                             std::to_string(head_dim) + " do not make the hidden size " +
                             std::to_string(hidden) + " the tensors have");
  }
  if (axes) {
    int64_t sum = 0;
    for (int64_t a : *axes) {
      // Each axis rotates pairs of channels: an odd or negative count has no
      // meaning, and would shift every later axis's angles by one channel.
      if (a < 0 || a % 2 != 0) {
        throw std::runtime_error("spdit: " + what + ": RoPE axis sizes must be even and " +
                                 "not negative, not " + std::to_string(a));
      }
      sum += a;
    }
    if (sum != head_dim) {
      throw std::runtime_error("spdit: " + what + ": the RoPE axes sum to " + std::to_string(sum) +
                               ", not the head dim " + std::to_string(head_dim));
    }
  }
}

FluxConfig flux_config(const Shapes& s, bool bfl, const nlohmann::json* cfg) {
  FluxConfig c;
  // The names differ by layout; the dimensions are the same tensors.
  const std::string x_in = bfl ? "img_in.weight" : "x_embedder.weight";
  const auto& in = shape_of(s, x_in, 2);
  c.hidden = in[0];
  c.in_channels = in[1];
  c.out_channels = shape_of(s, bfl ? "final_layer.linear.weight" : "proj_out.weight", 2)[0];
  c.text_dim = shape_of(s, bfl ? "txt_in.weight" : "context_embedder.weight", 2)[1];
  c.pooled_dim = shape_of(
      s, bfl ? "vector_in.in_layer.weight" : "time_text_embed.text_embedder.linear_1.weight", 2)[1];
  c.head_dim = shape_of(s,
                        bfl ? "double_blocks.0.img_attn.norm.query_norm.scale"
                            : "transformer_blocks.0.attn.norm_q.weight",
                        1)[0];
  c.dual_blocks = count_blocks(s, bfl ? "double_blocks." : "transformer_blocks.");
  c.single_blocks = count_blocks(s, bfl ? "single_blocks." : "single_transformer_blocks.");
  c.mlp_ratio =
      shape_of(
          s, bfl ? "double_blocks.0.img_mlp.0.weight" : "transformer_blocks.0.ff.net.0.proj.weight",
          2)[0] /
      c.hidden;
  c.guidance = s.count(bfl ? "guidance_in.in_layer.weight"
                           : "time_text_embed.guidance_embedder.linear_1.weight") > 0;
  c.heads = c.head_dim > 0 ? c.hidden / c.head_dim : 0;
  c.axes_dims = default_axes(c.head_dim);
  if (cfg) {
    // config.json is what the model was saved with; the shapes must agree.
    read_attention_fields(*cfg, c.heads, c.head_dim, c.axes_dims);
    if (json_int(*cfg, "in_channels", c.in_channels) != c.in_channels ||
        json_int(*cfg, "num_layers", c.dual_blocks) != c.dual_blocks ||
        json_int(*cfg, "num_single_layers", c.single_blocks) != c.single_blocks) {
      throw std::runtime_error(
          "spdit: config.json's in_channels / num_layers / num_single_layers "
          "disagree with the checkpoint's tensors");
    }
  }
  check_dims("Flux checkpoint", c.hidden, c.heads, c.head_dim, &c.axes_dims);
  return c;
}

WanConfig wan_config(const Shapes& s, bool original, const nlohmann::json* cfg) {
  WanConfig c;
  const auto patch = shape_of(s, "patch_embedding.weight", 5);
  c.hidden = patch[0];
  c.in_channels = patch[1];
  const auto head = shape_of(s, original ? "head.head.weight" : "proj_out.weight", 2);
  c.out_channels = head[0] / 4;  // patch (1, 2, 2)
  c.ffn = shape_of(s, original ? "blocks.0.ffn.0.weight" : "blocks.0.ffn.net.0.proj.weight", 2)[0];
  c.text_dim = shape_of(
      s, original ? "text_embedding.0.weight" : "condition_embedder.text_embedder.linear_1.weight",
      2)[1];
  c.freq_dim = shape_of(
      s, original ? "time_embedding.0.weight" : "condition_embedder.time_embedder.linear_1.weight",
      2)[1];
  c.blocks = count_blocks(s, "blocks.");
  // Every Wan2.1 release has heads of 128; the shapes cannot say (its q/k
  // norms span all heads), so another width needs the config.json.
  c.head_dim = 128;
  c.heads = c.hidden / c.head_dim;
  if (!cfg && c.hidden % 128 != 0) {
    throw std::runtime_error("spdit: a Wan checkpoint of hidden size " + std::to_string(c.hidden) +
                             " (no multiple of Wan2.1's 128-wide heads) needs its config.json "
                             "(num_heads) beside it");
  }
  if (cfg) {
    c.heads = json_int(*cfg, original ? "num_heads" : "num_attention_heads", c.heads);
    c.head_dim = original ? c.hidden / std::max<int64_t>(c.heads, 1)
                          : json_int(*cfg, "attention_head_dim", c.head_dim);
  }
  check_dims("Wan checkpoint", c.hidden, c.heads, c.head_dim, nullptr);
  return c;
}

QwenImageConfig qwen_config(const Shapes& s, const nlohmann::json* cfg) {
  QwenImageConfig c;
  const auto in = shape_of(s, "img_in.weight", 2);
  c.hidden = in[0];
  c.in_channels = in[1];
  c.text_dim = shape_of(s, "txt_in.weight", 2)[1];
  c.head_dim = shape_of(s, "transformer_blocks.0.attn.norm_q.weight", 1)[0];
  c.heads = c.hidden / std::max<int64_t>(c.head_dim, 1);
  c.blocks = count_blocks(s, "transformer_blocks.");
  c.axes_dims = default_axes(c.head_dim);
  if (cfg) read_attention_fields(*cfg, c.heads, c.head_dim, c.axes_dims);
  check_dims("Qwen-Image checkpoint", c.hidden, c.heads, c.head_dim, &c.axes_dims);
  return c;
}

}  // namespace

std::string wan_original_to_diffusers(const std::string& name) {
  // An explicit table, in an order where no rule can catch another's names
  // (head.modulation before the blocks' modulation, norm3 -> norm2 once).
  static const std::vector<std::pair<std::regex, std::string>> rules = {
      {std::regex(R"(^patch_embedding\.(weight|bias)$)"), "patch_embedding.$1"},
      {std::regex(R"(^time_embedding\.0\.)"), "condition_embedder.time_embedder.linear_1."},
      {std::regex(R"(^time_embedding\.2\.)"), "condition_embedder.time_embedder.linear_2."},
      {std::regex(R"(^time_projection\.1\.)"), "condition_embedder.time_proj."},
      {std::regex(R"(^text_embedding\.0\.)"), "condition_embedder.text_embedder.linear_1."},
      {std::regex(R"(^text_embedding\.2\.)"), "condition_embedder.text_embedder.linear_2."},
      {std::regex(R"(^blocks\.(\d+)\.self_attn\.q\.)"), "blocks.$1.attn1.to_q."},
      {std::regex(R"(^blocks\.(\d+)\.self_attn\.k\.)"), "blocks.$1.attn1.to_k."},
      {std::regex(R"(^blocks\.(\d+)\.self_attn\.v\.)"), "blocks.$1.attn1.to_v."},
      {std::regex(R"(^blocks\.(\d+)\.self_attn\.o\.)"), "blocks.$1.attn1.to_out.0."},
      {std::regex(R"(^blocks\.(\d+)\.self_attn\.norm_(q|k)\.weight$)"),
       "blocks.$1.attn1.norm_$2.weight"},
      {std::regex(R"(^blocks\.(\d+)\.cross_attn\.q\.)"), "blocks.$1.attn2.to_q."},
      {std::regex(R"(^blocks\.(\d+)\.cross_attn\.k\.)"), "blocks.$1.attn2.to_k."},
      {std::regex(R"(^blocks\.(\d+)\.cross_attn\.v\.)"), "blocks.$1.attn2.to_v."},
      {std::regex(R"(^blocks\.(\d+)\.cross_attn\.o\.)"), "blocks.$1.attn2.to_out.0."},
      {std::regex(R"(^blocks\.(\d+)\.cross_attn\.norm_(q|k)\.weight$)"),
       "blocks.$1.attn2.norm_$2.weight"},
      {std::regex(R"(^blocks\.(\d+)\.cross_attn\.k_img\.)"), "blocks.$1.attn2.add_k_proj."},
      {std::regex(R"(^blocks\.(\d+)\.cross_attn\.v_img\.)"), "blocks.$1.attn2.add_v_proj."},
      {std::regex(R"(^blocks\.(\d+)\.cross_attn\.norm_k_img\.weight$)"),
       "blocks.$1.attn2.norm_added_k.weight"},
      // The original runs norm1 -> self-attention, norm3 -> cross-attention,
      // norm2 -> FFN; diffusers numbers them 1, 2, 3. Only norm3 has weights.
      {std::regex(R"(^blocks\.(\d+)\.norm3\.(weight|bias)$)"), "blocks.$1.norm2.$2"},
      {std::regex(R"(^blocks\.(\d+)\.ffn\.0\.)"), "blocks.$1.ffn.net.0.proj."},
      {std::regex(R"(^blocks\.(\d+)\.ffn\.2\.)"), "blocks.$1.ffn.net.2."},
      {std::regex(R"(^blocks\.(\d+)\.modulation$)"), "blocks.$1.scale_shift_table"},
      {std::regex(R"(^head\.head\.)"), "proj_out."},
      {std::regex(R"(^head\.modulation$)"), "scale_shift_table"},
      {std::regex(R"(^img_emb\.proj\.0\.)"), "condition_embedder.image_embedder.norm1."},
      {std::regex(R"(^img_emb\.proj\.1\.)"), "condition_embedder.image_embedder.ff.net.0.proj."},
      {std::regex(R"(^img_emb\.proj\.3\.)"), "condition_embedder.image_embedder.ff.net.2."},
      {std::regex(R"(^img_emb\.proj\.4\.)"), "condition_embedder.image_embedder.norm2."},
  };
  for (const auto& [re, to] : rules) {
    if (std::regex_search(name, re))
      return std::regex_replace(name, re, to, std::regex_constants::format_first_only);
  }
  return "";
}

Identified identify(const Checkpoint& ckpt) {
  Identified found;
  Shapes shapes;
  // ComfyUI-style repacks put every name under model.diffusion_model.
  const std::string comfy = "model.diffusion_model.";
  bool all_prefixed = !ckpt.tensors().empty();
  for (const auto& [name, t] : ckpt.tensors())
    all_prefixed = all_prefixed && name.rfind(comfy, 0) == 0;
  if (all_prefixed) found.prefix = comfy;
  for (const auto& [name, t] : ckpt.tensors()) shapes[name.substr(found.prefix.size())] = t.shape;
  nlohmann::json cfg;
  const nlohmann::json* cfg_ptr = nullptr;
  if (!ckpt.config_json().empty()) {
    try {
      cfg = nlohmann::json::parse(ckpt.config_json());
    } catch (const std::exception& e) {
      throw std::runtime_error("spdit: '" + ckpt.config_path() +
                               "' is not valid JSON: " + e.what());
    }
    if (!cfg.is_object())
      throw std::runtime_error("spdit: '" + ckpt.config_path() + "' is not a JSON object");
    cfg_ptr = &cfg;
    found.config_source = "config.json (" + ckpt.config_path() + ") and tensor shapes";
  } else {
    found.config_source = "tensor names and shapes";
  }
  auto has = [&](const std::string& n) { return shapes.count(n) > 0; };
  // Never decide on img_in. (Flux's original and Qwen-Image both have it),
  // transformer_blocks. (diffusers' Flux and Qwen-Image) or blocks. (both Wans).
  auto patch = shapes.find("patch_embedding.weight");
  if (patch != shapes.end() && patch->second.size() == 5) {
    const bool original = has("head.head.weight");
    found.model = "wan";
    found.layout = original ? "wan-original" : "diffusers";
    if (has("blocks.0.cross_attn.k_img.weight") || has("blocks.0.attn2.add_k_proj.weight")) {
      throw std::runtime_error(
          "spdit: this is a Wan2.1 image-to-video checkpoint (k_img / add_k_proj); spdit runs "
          "the text-to-video models so far");
    }
    auto c = wan_config(shapes, original, cfg_ptr);
    found.variant = c.hidden == 1536   ? "t2v-1.3B"
                    : c.hidden == 5120 ? "t2v-14B"
                                       : "t2v (hidden " + std::to_string(c.hidden) + ")";
    found.config = c;
  } else if (has("double_blocks.0.img_attn.qkv.weight") ||
             (has("x_embedder.weight") && has("transformer_blocks.0.norm1.linear.weight"))) {
    const bool bfl = has("double_blocks.0.img_attn.qkv.weight");
    found.model = "flux";
    found.layout = bfl ? "bfl" : "diffusers";
    auto c = flux_config(shapes, bfl, cfg_ptr);
    found.variant = c.in_channels == 384 ? "fill" : c.guidance ? "dev" : "schnell";
    found.config = c;
  } else if (has("txt_norm.weight") && has("transformer_blocks.0.img_mod.1.weight")) {
    found.model = "qwen-image";
    found.layout = "diffusers";
    found.variant = "qwen-image";
    found.config = qwen_config(shapes, cfg_ptr);
  } else {
    std::vector<std::string> some;
    for (const auto& [n, s] : shapes) some.push_back(n);
    throw std::runtime_error(
        "spdit: the checkpoint (" + std::to_string(shapes.size()) + " tensors: " + list_some(some) +
        ") is none of the layouts spdit reads: Flux.1 (Black Forest Labs' file or diffusers' "
        "transformer/), Wan2.1 text-to-video (Wan's release or diffusers'), Qwen-Image "
        "(diffusers')");
  }
  std::map<at::ScalarType, int64_t> bytes_by_dtype;
  for (const auto& [name, t] : ckpt.tensors()) {
    if (at::isFloatingType(t.dtype)) bytes_by_dtype[t.dtype] += t.bytes();
  }
  int64_t most = -1;
  for (const auto& [dtype, bytes] : bytes_by_dtype) {
    if (bytes > most) most = bytes, found.stored_dtype = dtype;
  }
  return found;
}

std::shared_ptr<HookableModule> build_model(const Identified& found, bool skeleton) {
  std::optional<models::SkeletonScope> scope;
  if (skeleton) scope.emplace();
  if (auto* c = std::get_if<FluxConfig>(&found.config)) return models::FluxTransformer(*c).ptr();
  if (auto* c = std::get_if<WanConfig>(&found.config)) return models::WanTransformer(*c).ptr();
  return models::QwenImageTransformer(std::get<QwenImageConfig>(found.config)).ptr();
}

std::map<std::string, at::Tensor> tensors_in_model_names(const Checkpoint& ckpt,
                                                         const Identified& found) {
  std::map<std::string, at::Tensor> named;
  for (const auto& [name, t] : ckpt.tensors())
    named[name.substr(found.prefix.size())] = ckpt.tensor(name);
  if (found.layout == "bfl") return models::convert_flux_original(named);
  if (found.layout == "wan-original") {
    std::map<std::string, at::Tensor> out;
    for (auto& [name, t] : named) {
      const std::string to = wan_original_to_diffusers(name);
      out[to.empty() ? name : to] = t;  // an unknown name stays, to be reported
    }
    return out;
  }
  return named;
}

std::unique_ptr<models::Pipeline> make_pipeline(const Checkpoint& ckpt, const Identified& found,
                                                uint64_t seed, at::ScalarType dtype) {
  if (dtype == at::ScalarType::Undefined) dtype = found.stored_dtype;
  auto pipe = models::make_pipeline(found.config, seed, models::Weights::kNone, dtype);
  load_checkpoint(pipe->model(), ckpt, found, dtype);
  return pipe;
}

int64_t converted_bytes(const Checkpoint& ckpt, const Identified& found, at::ScalarType dtype) {
  if (dtype == at::ScalarType::Undefined) dtype = found.stored_dtype;
  const auto keep = models::keep_in_fp32_modules(found.config);
  int64_t bytes = 0;
  for (const auto& [name, t] : tensors_in_model_names(ckpt, found)) {
    const auto want = at::isFloatingType(t.scalar_type())
                          ? models::parameter_dtype(name, dtype, keep)
                          : t.scalar_type();
    if (want != t.scalar_type()) bytes += t.numel() * static_cast<int64_t>(c10::elementSize(want));
  }
  return bytes;
}

Comparison compare(const torch::nn::Module& model, const std::map<std::string, at::Tensor>& named) {
  Comparison c;
  std::set<std::string> wanted;
  auto visit = [&](const std::string& name, const at::Tensor& t) {
    wanted.insert(name);
    auto it = named.find(name);
    if (it == named.end()) {
      c.missing.push_back(name);
    } else if (it->second.sizes() != t.sizes()) {
      c.mismatched.push_back(name + " " + std::string(c10::str(it->second.sizes())) + " (model " +
                             std::string(c10::str(t.sizes())) + ")");
    }
  };
  for (const auto& p : model.named_parameters(true)) visit(p.key(), p.value());
  for (const auto& b : model.named_buffers(true)) visit(b.key(), b.value());
  for (const auto& [name, t] : named) {
    if (!wanted.count(name)) c.unexpected.push_back(name);
  }
  return c;
}

void load_checkpoint(torch::nn::Module& model, const Checkpoint& ckpt, const Identified& found,
                     at::ScalarType dtype) {
  load_checkpoint_leaving(model, ckpt, found, dtype, {});
}

std::map<std::string, at::Tensor> load_checkpoint_leaving(torch::nn::Module& model,
                                                          const Checkpoint& ckpt,
                                                          const Identified& found,
                                                          at::ScalarType dtype,
                                                          const std::vector<std::string>& leave) {
  auto named = tensors_in_model_names(ckpt, found);
  auto cmp = compare(model, named);
  if (!cmp.ok()) {
    std::string msg = "spdit: the checkpoint (" + found.model + ", " + found.layout +
                      " layout) does not fit the model:";
    if (!cmp.missing.empty()) msg += "\n  missing: " + list_some(cmp.missing);
    if (!cmp.unexpected.empty()) msg += "\n  unexpected: " + list_some(cmp.unexpected);
    if (!cmp.mismatched.empty()) msg += "\n  other shapes: " + list_some(cmp.mismatched);
    throw std::runtime_error(msg);
  }
  at::NoGradGuard no_grad;
  if (dtype == at::ScalarType::Undefined) dtype = found.stored_dtype;
  const auto keep = models::keep_in_fp32_modules(found.config);
  const std::set<std::string> left(leave.begin(), leave.end());
  std::map<std::string, at::Tensor> deferred;
  auto place = [&](const std::string& name, at::Tensor t) {
    const at::Tensor& src = named.at(name);
    const auto want = at::isFloatingType(src.scalar_type())
                          ? models::parameter_dtype(name, dtype, keep)
                          : t.scalar_type();
    if (left.count(name)) {
      // Nothing read: the reader of slices converts only what it keeps.
      t.set_data(models::lazy_empty(src.sizes(), want));
      deferred.emplace(name, src);
      return;
    }
    // In place when stored in the dtype the model wants: the parameter
    // becomes a view of the file's pages. Else one converted copy, and the
    // file's pages it was read from are given back.
    if (src.scalar_type() == want) {
      t.set_data(src);
    } else {
      t.set_data(src.to(want));
      ckpt.release_pages(src);
    }
  };
  for (const auto& p : model.named_parameters(true)) place(p.key(), p.value());
  for (const auto& b : model.named_buffers(true)) place(b.key(), b.value());
  return deferred;
}

std::string diffusers_config_json(const models::ModelConfig& config) {
  nlohmann::json j;
  if (auto* c = std::get_if<FluxConfig>(&config)) {
    j = {{"_class_name", "FluxTransformer2DModel"},
         {"attention_head_dim", c->head_dim},
         {"axes_dims_rope", c->axes_dims},
         {"guidance_embeds", c->guidance},
         {"in_channels", c->in_channels},
         {"out_channels", c->out_channels},
         {"joint_attention_dim", c->text_dim},
         {"num_attention_heads", c->heads},
         {"num_layers", c->dual_blocks},
         {"num_single_layers", c->single_blocks},
         {"patch_size", 1},
         {"pooled_projection_dim", c->pooled_dim}};
  } else if (auto* w = std::get_if<WanConfig>(&config)) {
    j = {{"_class_name", "WanTransformer3DModel"},
         {"attention_head_dim", w->head_dim},
         {"num_attention_heads", w->heads},
         {"in_channels", w->in_channels},
         {"out_channels", w->out_channels},
         {"text_dim", w->text_dim},
         {"freq_dim", w->freq_dim},
         {"ffn_dim", w->ffn},
         {"num_layers", w->blocks},
         {"patch_size", {1, 2, 2}},
         {"cross_attn_norm", true},
         {"qk_norm", "rms_norm_across_heads"},
         {"eps", 1e-6}};
  } else {
    const auto& q = std::get<QwenImageConfig>(config);
    j = {{"_class_name", "QwenImageTransformer2DModel"},
         {"attention_head_dim", q.head_dim},
         {"axes_dims_rope", q.axes_dims},
         {"in_channels", q.in_channels},
         {"out_channels", q.in_channels / 4},
         {"joint_attention_dim", q.text_dim},
         {"num_attention_heads", q.heads},
         {"num_layers", q.blocks},
         {"patch_size", 2}};
  }
  return j.dump(2) + "\n";
}

void write_transformer_folder(const std::string& dir, const models::ModelConfig& config,
                              const torch::nn::Module& model, at::ScalarType dtype) {
  ::mkdir(dir.c_str(), 0755);
  std::ofstream f(dir + "/config.json");
  f << diffusers_config_json(config);
  if (!f.flush()) throw std::runtime_error("spdit: cannot write '" + dir + "/config.json'");
  std::map<std::string, at::Tensor> state;
  for (const auto& p : model.named_parameters(true))
    state[p.key()] = p.value().to(dtype).contiguous();
  for (const auto& b : model.named_buffers(true)) state[b.key()] = b.value().contiguous();
  write_safetensors(dir + "/diffusion_pytorch_model.safetensors", state);
}

}  // namespace spdit::checkpoints
