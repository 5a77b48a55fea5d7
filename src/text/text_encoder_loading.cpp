#include "spdit/text/text_encoder_loading.h"

#include <map>
#include <stdexcept>
#include <vector>

#include "spdit/checkpoints/checkpoint.h"
#include "spdit/models/skeleton.h"
#include "text_files.h"

namespace spdit::text {
namespace {

using checkpoints::Checkpoint;

std::string shape_text(at::IntArrayRef s) {
  std::string t = "[";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + "]";
}

std::string list_some(const std::vector<std::string>& items) {
  std::string s;
  for (size_t i = 0; i < items.size() && i < 4; ++i) s += "\n  " + items[i];
  if (items.size() > 4) s += "\n  ... (" + std::to_string(items.size()) + " in all)";
  return s;
}

Checkpoint open_folder(const std::string& folder, const std::string& what) {
  Checkpoint ckpt = Checkpoint::open(folder);
  if (ckpt.config_json().empty()) {
    throw std::runtime_error(
        "spdit: " + folder + " has no config.json; the " + what +
        " takes its dimensions from it (a diffusers download has one beside the weights)");
  }
  return ckpt;
}

// The checkpoint's name for the model's parameter `name` ("" when it has none).
std::string stored_name(const Checkpoint& ckpt, const std::string& name,
                        const std::map<std::string, std::string>& aliases) {
  if (ckpt.has(name)) return name;
  auto it = aliases.find(name);
  return it != aliases.end() && ckpt.has(it->second) ? it->second : "";
}

// Checks every parameter of `model` against the checkpoint, all at once,
// then replaces each with the file's tensor (in place where the dtype is
// `dtype`). Names the checkpoint holds beyond the model's (a projection
// head, a decoder, position_ids buffers) are not read.
void place_weights(torch::nn::Module& model, const Checkpoint& ckpt, const std::string& folder,
                   const std::string& what, at::ScalarType dtype,
                   const std::map<std::string, std::string>& aliases) {
  std::vector<std::string> missing, mismatched;
  for (const auto& p : model.named_parameters(true)) {
    const std::string name = stored_name(ckpt, p.key(), aliases);
    if (name.empty()) {
      missing.push_back(p.key());
      continue;
    }
    const auto& stored = ckpt.tensors().at(name);
    if (at::IntArrayRef(stored.shape) != p.value().sizes()) {
      mismatched.push_back(name + " in " + ckpt.files()[stored.file] + ": " +
                           shape_text(stored.shape) + ", config.json says " +
                           shape_text(p.value().sizes()));
    }
  }
  if (!missing.empty()) {
    std::string files;
    for (const auto& f : ckpt.files()) files += (files.empty() ? "" : ", ") + f;
    throw std::runtime_error("spdit: the " + what + " in " + folder + " (" + files + ") lacks " +
                             std::to_string(missing.size()) +
                             " tensor(s) it needs:" + list_some(missing) +
                             "\nis this the right folder, and are all shards there?");
  }
  if (!mismatched.empty()) {
    throw std::runtime_error("spdit: the " + what + " in " + folder +
                             " has tensors whose shapes disagree with " + ckpt.config_path() + ":" +
                             list_some(mismatched));
  }
  for (const auto& p : model.named_parameters(true)) {
    const auto src = ckpt.tensor(stored_name(ckpt, p.key(), aliases));
    auto param = p.value();
    param.set_data(src.scalar_type() == dtype ? src : src.to(dtype));
    param.set_requires_grad(false);  // inference only, and the file's pages are read-only
  }
}

at::ScalarType choose_dtype(const Checkpoint& ckpt, const std::string& probe,
                            const TextEncoderLoadOptions& o, const std::string& what) {
  if (o.dtype_) return compute_dtype_for(*o.dtype_, what + " (requested dtype)");
  if (!ckpt.has(probe)) return at::kFloat;  // place_weights will name the missing tensor
  return compute_dtype_for(ckpt.tensors().at(probe).dtype, what + " tensor '" + probe + "'");
}

}  // namespace

ClipTextModel load_clip_text_model(const std::string& folder,
                                   const TextEncoderLoadOptions& options) {
  const std::string what = "CLIP text encoder";
  const auto ckpt = open_folder(folder, what);
  const auto config = ClipTextConfig::from_json(ckpt.config_json(), ckpt.config_path());
  std::optional<ClipTextModel> model;
  {
    models::SkeletonScope skeleton;  // no weight memory until the file's tensors replace it
    model.emplace(config);
  }
  const auto dtype =
      choose_dtype(ckpt, "text_model.embeddings.token_embedding.weight", options, what);
  place_weights(**model, ckpt, folder, what, dtype, {});
  return *model;
}

T5EncoderModel load_t5_encoder(const std::string& folder, const TextEncoderLoadOptions& options) {
  const std::string what = "T5 encoder";
  const auto ckpt = open_folder(folder, what);
  const auto config = T5EncoderConfig::from_json(ckpt.config_json(), ckpt.config_path());
  std::optional<T5EncoderModel> model;
  {
    models::SkeletonScope skeleton;
    model.emplace(config);
  }
  // transformers ties the two; a file saved from T5EncoderModel may keep either.
  const std::map<std::string, std::string> aliases = {
      {"shared.weight", "encoder.embed_tokens.weight"}};
  const std::string probe =
      ckpt.has("shared.weight") ? "shared.weight" : "encoder.embed_tokens.weight";
  place_weights(**model, ckpt, folder, what, choose_dtype(ckpt, probe, options, what), aliases);
  return *model;
}

std::string umt5_wan_original_name(const std::string& name) {
  if (name == "shared.weight") return "token_embedding.weight";
  if (name == "encoder.final_layer_norm.weight") return "norm.weight";
  const std::string block = "encoder.block.";
  if (name.compare(0, block.size(), block) != 0) return "";
  const size_t dot = name.find('.', block.size());
  if (dot == std::string::npos) return "";
  const std::string i = name.substr(block.size(), dot - block.size()), rest = name.substr(dot + 1);
  static const std::map<std::string, std::string> within = {
      {"layer.0.layer_norm.weight", "norm1.weight"},
      {"layer.0.SelfAttention.q.weight", "attn.q.weight"},
      {"layer.0.SelfAttention.k.weight", "attn.k.weight"},
      {"layer.0.SelfAttention.v.weight", "attn.v.weight"},
      {"layer.0.SelfAttention.o.weight", "attn.o.weight"},
      {"layer.0.SelfAttention.relative_attention_bias.weight", "pos_embedding.embedding.weight"},
      {"layer.1.layer_norm.weight", "norm2.weight"},
      // Wan computes fc1(x) * gelu(gate(x)); transformers gelu(wi_0(x)) * wi_1(x).
      {"layer.1.DenseReluDense.wi_0.weight", "ffn.gate.0.weight"},
      {"layer.1.DenseReluDense.wi_1.weight", "ffn.fc1.weight"},
      {"layer.1.DenseReluDense.wo.weight", "ffn.fc2.weight"}};
  auto it = within.find(rest);
  return it == within.end() ? "" : "blocks." + i + "." + it->second;
}

T5EncoderModel load_umt5_encoder_wan_original(const std::string& file,
                                              const TextEncoderLoadOptions& options) {
  const std::string what = "umT5 encoder (Wan's layout)";
  const Checkpoint ckpt = Checkpoint::open(file);
  auto shape = [&](const std::string& name) -> std::vector<int64_t> {
    if (!ckpt.has(name)) {
      throw std::runtime_error("spdit: " + file + " has no tensor '" + name + "'; is it Wan's " +
                               "models_t5_umt5-xxl-enc-bf16.pth (umT5's encoder in Wan's names)?");
    }
    return ckpt.tensors().at(name).shape;
  };
  T5EncoderConfig c = T5EncoderConfig::umt5_xxl();
  const auto embed = shape("token_embedding.weight");
  const auto bias = shape("blocks.0.pos_embedding.embedding.weight");
  const auto q = shape("blocks.0.attn.q.weight");
  const auto ff = shape("blocks.0.ffn.fc1.weight");
  c.vocab_size = embed.at(0);
  c.d_model = embed.at(1);
  c.relative_attention_num_buckets = bias.at(0);
  c.num_heads = bias.at(1);
  c.d_kv = q.at(0) / c.num_heads;
  c.d_ff = ff.at(0);
  c.num_layers = 0;
  while (ckpt.has("blocks." + std::to_string(c.num_layers) + ".attn.q.weight")) ++c.num_layers;
  std::optional<T5EncoderModel> model;
  {
    models::SkeletonScope skeleton;
    model.emplace(c);
  }
  std::map<std::string, std::string> aliases;
  for (const auto& p : (*model)->named_parameters(true))
    aliases[p.key()] = umt5_wan_original_name(p.key());
  place_weights(**model, ckpt, file, what,
                choose_dtype(ckpt, "token_embedding.weight", options, what), aliases);
  return *model;
}

void save_text_encoder(const torch::nn::Module& model, const std::string& config_json,
                       const std::string& folder, at::ScalarType dtype) {
  make_folder(folder);
  write_text_file(folder + "/config.json", config_json);
  std::map<std::string, at::Tensor> tensors;
  for (const auto& p : model.named_parameters(true))
    tensors[p.key()] = p.value().detach().to(dtype).contiguous();
  checkpoints::write_safetensors(folder + "/model.safetensors", tensors);
}

}  // namespace spdit::text

namespace spdit::text {

Qwen2TextModel load_qwen2_text_model(const std::string& folder,
                                     const TextEncoderLoadOptions& options) {
  const std::string what = "Qwen2.5-VL text encoder";
  const auto ckpt = open_folder(folder, what);
  const auto config = Qwen2TextConfig::from_json(ckpt.config_json(), ckpt.config_path());
  // transformers >= 4.52 saves the language model under model.language_model.,
  // older versions under model. (the vision tower beside it, never read here).
  std::string prefix;
  for (const char* p : {"model.language_model.", "model."}) {
    if (ckpt.has(std::string(p) + "embed_tokens.weight")) {
      prefix = p;
      break;
    }
  }
  if (prefix.empty()) {
    std::vector<std::string> names;
    for (const auto& [name, t] : ckpt.tensors()) names.push_back(name);
    throw std::runtime_error(
        "spdit: " + folder + " holds neither model.language_model.embed_tokens.weight nor " +
        "model.embed_tokens.weight; the " + what +
        " reads Qwen2_5_VLForConditionalGeneration's names. It has:" + list_some(names));
  }
  std::optional<Qwen2TextModel> model;
  {
    models::SkeletonScope skeleton;  // no weight memory until the file's tensors replace it
    model.emplace(config);
  }
  std::map<std::string, std::string> aliases;
  for (const auto& p : (*model)->named_parameters(true)) aliases[p.key()] = prefix + p.key();
  place_weights(**model, ckpt, folder, what,
                choose_dtype(ckpt, prefix + "embed_tokens.weight", options, what), aliases);
  return *model;
}

void save_qwen2_text_encoder(const Qwen2TextModelImpl& model, const std::string& folder,
                             at::ScalarType dtype) {
  make_folder(folder);
  write_text_file(folder + "/config.json", model.config().to_json());
  std::map<std::string, at::Tensor> tensors;
  for (const auto& p : model.named_parameters(true))
    tensors["model.language_model." + p.key()] = p.value().detach().to(dtype).contiguous();
  checkpoints::write_safetensors(folder + "/model.safetensors", tensors);
}

}  // namespace spdit::text
