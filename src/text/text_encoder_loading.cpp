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
