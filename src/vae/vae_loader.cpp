#include "spdit/vae/vae_loader.h"

#include <sys/stat.h>

#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "spdit/checkpoints/checkpoint.h"
#include "spdit/vae/vae_names.h"

namespace spdit::vae {
namespace {

using checkpoints::Checkpoint;

bool is_dir(const std::string& p) {
  struct stat st {};
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_file(const std::string& p) {
  struct stat st {};
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string shape_text(at::IntArrayRef s) { return c10::str(s); }

// 1 + the highest N of names `prefix`N.
int64_t count_indexed(const std::map<std::string, at::Tensor>& named, const std::string& prefix) {
  int64_t n = 0;
  for (const auto& kv : named) {
    if (kv.first.rfind(prefix, 0) != 0) continue;
    try {
      n = std::max<int64_t>(n, std::stoll(kv.first.substr(prefix.size())) + 1);
    } catch (const std::exception&) {
    }
  }
  return n;
}

const at::Tensor& need(const std::map<std::string, at::Tensor>& named, const std::string& name,
                       int64_t dims, const std::string& file) {
  auto it = named.find(name);
  if (it == named.end() || it->second.dim() != dims) {
    throw std::runtime_error("spdit: '" + file + "' has no " + std::to_string(dims) +
                             "-d tensor for '" + name +
                             "', which the autoencoder's dimensions are read from");
  }
  return it->second;
}

// The dimensions of the autoencoder whose tensors (diffusers' names) are
// `named`; what shapes cannot tell (groups, the latent scaling) is FLUX.1's.
AutoencoderKLConfig config_from_shapes(const std::map<std::string, at::Tensor>& named,
                                       const std::string& file) {
  AutoencoderKLConfig c = AutoencoderKLConfig::flux();
  const int64_t levels = count_indexed(named, "decoder.up_blocks.");
  if (levels == 0)
    throw std::runtime_error("spdit: '" + file +
                             "' has no decoder levels (decoder.up_blocks.N / decoder.up.N)");
  c.block_out_channels.assign(levels, 0);
  for (int64_t i = 0; i < levels; ++i) {
    c.block_out_channels[i] =
        need(named,
             "decoder.up_blocks." + std::to_string(levels - 1 - i) + ".resnets.0.conv1.weight", 4,
             file)
            .size(0);
  }
  c.layers_per_block = count_indexed(named, "decoder.up_blocks.0.resnets.") - 1;
  c.latent_channels = need(named, "decoder.conv_in.weight", 4, file).size(1);
  c.out_channels = need(named, "decoder.conv_out.weight", 4, file).size(0);
  c.in_channels = need(named, "encoder.conv_in.weight", 4, file).size(1);
  c.mid_block_add_attention = named.count("decoder.mid_block.attentions.0.to_q.weight") > 0;
  c.validate(file);
  return c;
}

}  // namespace

std::string find_autoencoder(const std::string& path_in) {
  std::string path = path_in;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  if (is_file(path)) return path;
  if (!is_dir(path))
    throw std::runtime_error("spdit: autoencoder '" + path + "': no such file or folder");
  if (is_dir(path + "/vae")) return path + "/vae";
  if (is_file(path + "/ae.safetensors")) return path + "/ae.safetensors";
  // A vae/ folder itself.
  if (is_file(path + "/config.json") || is_file(path + "/diffusion_pytorch_model.safetensors"))
    return path;
  throw std::runtime_error(
      "spdit: '" + path +
      "' holds no autoencoder: a FLUX.1 download has vae/ "
      "(config.json and diffusion_pytorch_model.safetensors, diffusers' layout) or "
      "ae.safetensors (Black Forest Labs' layout)");
}

LoadedAutoencoder load_autoencoder(const std::string& path, at::ScalarType dtype) {
  const std::string where = find_autoencoder(path);
  if (is_dir(where) && !is_file(where + "/config.json")) {
    throw std::runtime_error("spdit: the autoencoder folder '" + where +
                             "' has no config.json; diffusers' vae/ "
                             "holds config.json beside diffusion_pytorch_model.safetensors");
  }
  const Checkpoint ckpt = Checkpoint::open(where);
  const std::string file = ckpt.files().size() == 1 ? ckpt.files()[0] : where;
  std::vector<std::string> names;
  for (const auto& kv : ckpt.tensors()) names.push_back(kv.first);
  const VaeLayout layout = detect_vae_layout(names, file);
  const bool bfl = layout.name == "bfl";

  // Every tensor under its diffusers name, as a view of the file.
  int64_t levels = 0;
  for (const auto& n : names) {
    if (n.rfind(layout.prefix + "decoder.up.", 0) == 0 ||
        n.rfind(layout.prefix + "decoder.up_blocks.", 0) == 0) {
      const auto rest = n.substr(n.find(bfl ? ".up." : ".up_blocks.") + (bfl ? 4 : 11));
      try {
        levels = std::max<int64_t>(levels, std::stoll(rest) + 1);
      } catch (const std::exception&) {
      }
    }
  }
  std::map<std::string, at::Tensor> named;
  std::map<std::string, std::string> file_name;  // diffusers name -> the file's
  std::vector<std::string> unexpected;
  for (const auto& n : names) {
    if (n.rfind(layout.prefix, 0) != 0) {
      if (layout.prefix.empty()) unexpected.push_back(n);
      continue;  // a bundle's other models
    }
    const std::string local = n.substr(layout.prefix.size());
    const std::string mapped = bfl ? bfl_vae_name_to_diffusers(local, levels) : local;
    if (mapped.empty()) {
      unexpected.push_back(n);
      continue;
    }
    at::Tensor t = ckpt.tensor(n);
    // BFL's attention projections are 1x1 convs; a view as the Linear's (C, C).
    if (bfl && is_vae_attention_projection(mapped) && t.dim() == 4 && t.size(2) == 1 &&
        t.size(3) == 1) {
      t = t.view({t.size(0), t.size(1)});
    }
    named[mapped] = t;
    file_name[mapped] = n;
  }

  LoadedAutoencoder out;
  out.layout = layout.name;
  out.weights = file;
  AutoencoderKLConfig config;
  // A folder's config.json is the autoencoder's; beside a file given by
  // itself (ae.safetensors next to flux1-dev.safetensors) one may be another
  // model's, so it counts only when it names AutoencoderKL.
  bool has_config = is_dir(where);
  if (!has_config && !ckpt.config_json().empty()) {
    const auto j = nlohmann::json::parse(ckpt.config_json(), nullptr, /*allow_exceptions=*/false);
    has_config = j.is_object() && j.contains("_class_name") && j["_class_name"] == "AutoencoderKL";
  }
  if (has_config) {
    out.config_source = ckpt.config_path();
    config = AutoencoderKLConfig::from_json(ckpt.config_json(), out.config_source);
  } else {
    out.config_source = "tensor shapes of " + file + " (FLUX.1's scaling and shift factors)";
    config = config_from_shapes(named, file);
  }
  out.model = AutoencoderKL(config, dtype);

  // Check everything before replacing anything.
  std::string problems;
  int64_t count = 0;
  auto add = [&](const std::string& line) {
    if (++count <= 8) problems += "\n  " + line;
  };
  std::map<std::string, at::Tensor> params;
  for (const auto& p : out.model->named_parameters(true)) params[p.key()] = p.value();
  for (const auto& [name, p] : params) {
    auto it = named.find(name);
    const std::string theirs =
        bfl ? layout.prefix + diffusers_vae_name_to_bfl(name, config.block_out_channels.size())
            : layout.prefix + name;
    if (it == named.end()) {
      add("missing '" + theirs + "' " + shape_text(p.sizes()));
    } else if (!it->second.sizes().equals(p.sizes())) {
      add("'" + file_name[name] + "' is " + shape_text(it->second.sizes()) +
          ", the autoencoder's is " + shape_text(p.sizes()));
    } else if (!at::isFloatingType(it->second.scalar_type())) {
      add("'" + file_name[name] + "' is " + std::string(c10::toString(it->second.scalar_type())) +
          ", not floating point");
    }
  }
  for (const auto& [name, t] : named) {
    if (!params.count(name)) unexpected.push_back(file_name[name]);
  }
  for (const auto& n : unexpected) add("'" + n + "' is no tensor of the autoencoder");
  if (count > 0) {
    throw std::runtime_error("spdit: the autoencoder in '" + file + "' (" + layout.name +
                             " layout, dimensions from " + out.config_source +
                             ") does not fit: " + std::to_string(count) + " problem" +
                             (count > 1 ? "s" : "") + problems + (count > 8 ? "\n  ..." : ""));
  }
  for (auto& [name, p] : params) {
    const at::Tensor& src = named.at(name);
    const bool same = src.scalar_type() == dtype;
    p.set_data(same ? src : src.to(dtype));
    (same ? out.in_place : out.converted) += 1;
  }
  return out;
}

}  // namespace spdit::vae
