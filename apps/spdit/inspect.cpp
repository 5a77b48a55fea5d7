// `spdit inspect PATH`: what a checkpoint is, read from its header and
// config.json alone (no weight is read or allocated): files, tensors, dtypes
// and bytes, the model, layout and variant detected, the dimensions it
// implies, and whether every tensor fits that model.
#include <iostream>
#include <sstream>

#include "commands.h"
#include "spdit/checkpoints/model_checkpoint.h"
#include "spdit/runtime/memory_meter.h"
#include "spdit/vae/wan_vae_loader.h"

namespace spdit::cli {
namespace {

std::string dims(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

std::string describe_config(const checkpoints::Identified& f) {
  std::ostringstream os;
  if (auto* c = std::get_if<models::FluxConfig>(&f.config)) {
    os << "hidden " << c->hidden << ", " << c->heads << " heads of " << c->head_dim << ", "
       << c->dual_blocks << " dual + " << c->single_blocks << " single blocks, in "
       << c->in_channels << " / out " << c->out_channels << " channels, text " << c->text_dim
       << ", pooled " << c->pooled_dim << ", MLP ratio " << c->mlp_ratio << ", guidance embedder "
       << (c->guidance ? "yes" : "no") << ", RoPE axes " << dims(c->axes_dims);
  } else if (auto* c = std::get_if<models::WanConfig>(&f.config)) {
    os << "hidden " << c->hidden << ", " << c->heads << " heads of " << c->head_dim << ", "
       << c->blocks << " blocks, FFN " << c->ffn << ", in " << c->in_channels << " / out "
       << c->out_channels << " channels, text " << c->text_dim << ", frequency dim " << c->freq_dim;
  } else {
    const auto& q = std::get<models::QwenImageConfig>(f.config);
    os << "hidden " << q.hidden << ", " << q.heads << " heads of " << q.head_dim << ", " << q.blocks
       << " blocks, in " << q.in_channels << " channels, text " << q.text_dim << ", RoPE axes "
       << dims(q.axes_dims);
  }
  return os.str();
}

// Wan2.1's autoencoder (Wan2.1_VAE.pth, or a diffusers vae/ file): its
// attention's fused to_qkv is in no other model spdit knows.
bool is_wan_vae(const checkpoints::Checkpoint& ckpt) {
  return ckpt.has("decoder.middle.1.to_qkv.weight") ||
         ckpt.has("decoder.mid_block.attentions.0.to_qkv.weight");
}

int inspect_wan_vae(const std::string& path, const checkpoints::Checkpoint& ckpt) {
  // In the stored dtype: every tensor in place, nothing allocated.
  const auto loaded = vae::load_wan_vae(path, ckpt.tensors().begin()->second.dtype);
  const auto& c = loaded.model->config();
  std::string halves;
  for (bool t : c.temperal_downsample)
    halves += std::string(halves.empty() ? "" : ", ") + (t ? "yes" : "no");
  int64_t params = 0;
  for (const auto& p : loaded.model->parameters()) params += p.numel();
  std::cout << "model: wan-vae (Wan2.1's video autoencoder), " << loaded.layout << " layout\n"
            << "dimensions (from " << loaded.config_source << "): base_dim " << c.base_dim
            << ", z_dim " << c.z_dim << ", dim_mult " << dims(c.dim_mult) << ", "
            << c.num_res_blocks << " residual blocks per level, time halved by level [" << halves
            << "]: " << c.spatial_scale_factor() << "x in space, " << c.temporal_scale_factor()
            << "x in time\n"
            << "against the model (" << params
            << " parameters): every tensor fits, nothing missing\n";
  return 0;
}

int inspect(const std::string& path) {
  auto ckpt = checkpoints::Checkpoint::open(path);
  std::cout << "checkpoint: " << path << "\nfiles: " << ckpt.files().size();
  for (size_t i = 0; i < ckpt.files().size() && i < 4; ++i) std::cout << "\n  " << ckpt.files()[i];
  if (ckpt.files().size() > 4) std::cout << "\n  ...";
  std::map<std::string, std::pair<int64_t, int64_t>> by_dtype;  // count, bytes
  for (const auto& [name, t] : ckpt.tensors()) {
    by_dtype[t.dtype_name].first += 1;
    by_dtype[t.dtype_name].second += t.bytes();
  }
  std::cout << "\ntensors: " << ckpt.tensors().size() << ", " << format_bytes(ckpt.data_bytes())
            << " (";
  bool first = true;
  for (const auto& [dt, cb] : by_dtype) {
    std::cout << (first ? "" : ", ") << dt << " " << cb.first << " tensors "
              << format_bytes(cb.second);
    first = false;
  }
  std::cout << ")\n";
  if (is_wan_vae(ckpt)) return inspect_wan_vae(path, ckpt);
  auto found = checkpoints::identify(ckpt);
  std::cout << "model: " << found.model << ", " << found.layout << " layout, variant "
            << found.variant << (found.prefix.empty() ? "" : ", names under '" + found.prefix + "'")
            << "\n"
            << "dimensions (from " << found.config_source << "): " << describe_config(found)
            << "\n";
  auto model = checkpoints::build_model(found, /*skeleton=*/true);
  auto cmp = checkpoints::compare(*model, checkpoints::tensors_in_model_names(ckpt, found));
  int64_t params = 0;
  for (const auto& p : model->parameters()) params += p.numel();
  std::cout << "against the model (" << params << " parameters): ";
  if (cmp.ok()) {
    std::cout << "every tensor fits, nothing missing\n";
    return 0;
  }
  std::cout << cmp.missing.size() << " missing, " << cmp.unexpected.size() << " unexpected, "
            << cmp.mismatched.size() << " of other shapes\n";
  for (const auto& n : cmp.missing) std::cout << "  missing: " << n << "\n";
  for (const auto& n : cmp.unexpected) std::cout << "  unexpected: " << n << "\n";
  for (const auto& n : cmp.mismatched) std::cout << "  other shape: " << n << "\n";
  return 1;
}

}  // namespace

void add_inspect_command(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("inspect",
                                 "Say what a checkpoint file or folder holds and which model it "
                                 "fits, reading only its headers");
  static std::string path;
  cmd->add_option("path", path,
                  "A .safetensors file, its .index.json, a (diffusers) model folder, or a "
                  "torch.save .pth file")
      ->required();
  cmd->callback([&action] { action = [] { return inspect(path); }; });
}

}  // namespace spdit::cli
