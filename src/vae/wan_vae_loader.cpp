#include "spdit/vae/wan_vae_loader.h"

#include <ATen/CPUGeneratorImpl.h>
#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>

#include "spdit/checkpoints/checkpoint.h"
#include "spdit/vae/wan_vae_names.h"

namespace spdit::vae {
namespace {

constexpr const char* kWeights = "diffusion_pytorch_model.safetensors";
constexpr const char* kOriginal = "Wan2.1_VAE.pth";

bool is_dir(const std::string& p) {
  struct stat st {};
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool is_file(const std::string& p) {
  struct stat st {};
  return stat(p.c_str(), &st) == 0 && !S_ISDIR(st.st_mode);
}

std::string shape_text(at::IntArrayRef s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + ")";
}

// Wan's file has no config: Wan2.1's mean and std, and the dimensions its
// flat lists spell out (widths from the residual blocks' convs, levels and
// time-halving from the resamples), so a smaller model in Wan's names loads
// too.
WanVaeConfig config_from_wan_names(const checkpoints::Checkpoint& ckpt, const std::string& file) {
  WanVaeConfig c = WanVaeConfig::wan21();
  auto shape_of = [&](const std::string& name) -> std::vector<int64_t> {
    if (!ckpt.has(name)) {
      throw std::runtime_error("spdit: '" + file + "' (Wan's layout) lacks '" + name +
                               "', needed to read the autoencoder's dimensions");
    }
    return ckpt.tensors().at(name).shape;
  };
  c.base_dim = shape_of("encoder.conv1.weight").at(0);
  c.z_dim = shape_of("conv2.weight").at(0);
  std::vector<int64_t> widths;  // per level
  std::vector<bool> in_time;
  int64_t blocks = 0;
  for (int64_t i = 0;; ++i) {
    const std::string p = "encoder.downsamples." + std::to_string(i) + ".";
    if (ckpt.has(p + "residual.2.weight")) {
      if (widths.size() == in_time.size()) widths.push_back(0);
      widths.back() = shape_of(p + "residual.2.weight").at(0);
      ++blocks;
    } else if (ckpt.has(p + "resample.1.weight")) {
      in_time.push_back(ckpt.has(p + "time_conv.weight"));
    } else {
      break;
    }
  }
  if (widths.empty() || widths.size() != in_time.size() + 1 ||
      blocks % static_cast<int64_t>(widths.size()) != 0) {
    throw std::runtime_error("spdit: '" + file +
                             "' (Wan's layout): encoder.downsamples.* do not form levels of "
                             "residual blocks separated by resamples");
  }
  c.num_res_blocks = blocks / static_cast<int64_t>(widths.size());
  c.dim_mult.clear();
  for (int64_t w : widths) c.dim_mult.push_back(w / c.base_dim);
  c.temperal_downsample = in_time;
  if (c.z_dim != static_cast<int64_t>(c.latents_mean.size())) {
    throw std::runtime_error("spdit: '" + file + "' has " + std::to_string(c.z_dim) +
                             " latent channels; Wan2.1's mean and std (used "
                             "for a file without config) have 16");
  }
  c.validate(file);
  return c;
}

}  // namespace

std::string find_wan_vae(const std::string& path_in) {
  std::string path = path_in;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  if (is_file(path)) return path;
  if (!is_dir(path))
    throw std::runtime_error("spdit: no file or folder '" + path + "' (the Wan autoencoder)");
  const std::string vae_dir = is_dir(path + "/vae") ? path + "/vae" : path;
  if (is_file(vae_dir + "/" + kWeights)) return vae_dir + "/" + kWeights;
  if (is_file(path + "/" + kOriginal)) return path + "/" + kOriginal;
  throw std::runtime_error("spdit: found no Wan2.1 autoencoder in '" + path +
                           "': a diffusers model folder holds vae/config.json and vae/" + kWeights +
                           "; Wan's original release holds " + kOriginal);
}

LoadedWanVae load_wan_vae(const std::string& path, at::ScalarType dtype) {
  const std::string file = find_wan_vae(path);
  const auto ckpt = checkpoints::Checkpoint::open(file);
  std::vector<std::string> names;
  for (const auto& [name, t] : ckpt.tensors()) names.push_back(name);
  LoadedWanVae out;
  out.layout = detect_wan_vae_layout(names, file);
  out.weights = file;
  const bool wan = out.layout == "wan-original";
  WanVaeConfig config;
  if (wan) {
    // A config.json beside Wan2.1_VAE.pth is the transformer's: not read.
    out.config_source = "Wan2.1's mean and std; dimensions from the tensor shapes of " + file;
    config = config_from_wan_names(ckpt, file);
  } else {
    if (ckpt.config_json().empty()) {
      throw std::runtime_error("spdit: '" + file +
                               "' has no config.json beside it; the diffusers vae/ folder "
                               "holds one (AutoencoderKLWan's)");
    }
    out.config_source = ckpt.config_path();
    config = WanVaeConfig::from_json(ckpt.config_json(), out.config_source);
  }
  out.model = WanVae(config, dtype);

  // Every tensor under the model's (diffusers') name; check all before
  // replacing any.
  std::map<std::string, std::string> file_name;  // diffusers name -> the file's
  std::vector<std::string> unexpected;
  for (const auto& n : names) {
    const std::string mapped = wan ? wan_vae_name_to_diffusers(n, config) : n;
    if (mapped.empty()) {
      unexpected.push_back(n);
    } else {
      file_name[mapped] = n;
    }
  }
  std::string problems;
  int64_t count = 0;
  auto add = [&](const std::string& line) {
    if (++count <= 8) problems += "\n  " + line;
  };
  std::map<std::string, at::Tensor> params;
  for (const auto& p : out.model->named_parameters(true)) params[p.key()] = p.value();
  for (const auto& [name, p] : params) {
    auto it = file_name.find(name);
    if (it == file_name.end()) {
      add("missing '" + (wan ? diffusers_vae_name_to_wan(name, config) : name) + "' " +
          shape_text(p.sizes()));
      continue;
    }
    const auto& stored = ckpt.tensors().at(it->second);
    if (!at::IntArrayRef(stored.shape).equals(p.sizes())) {
      add("'" + it->second + "' is " + shape_text(stored.shape) + ", the autoencoder's is " +
          shape_text(p.sizes()));
    } else if (!at::isFloatingType(stored.dtype)) {
      add("'" + it->second + "' is " + std::string(c10::toString(stored.dtype)) +
          ", not floating point");
    }
  }
  for (const auto& [name, theirs] : file_name) {
    if (!params.count(name)) unexpected.push_back(theirs);
  }
  for (const auto& n : unexpected) add("'" + n + "' is no tensor of the autoencoder");
  if (count > 0) {
    throw std::runtime_error("spdit: the Wan autoencoder in '" + file + "' (" + out.layout +
                             " layout, dimensions from " + out.config_source +
                             ") does not fit: " + std::to_string(count) + " problem" +
                             (count > 1 ? "s" : "") + problems + (count > 8 ? "\n  ..." : ""));
  }
  for (auto& [name, p] : params) {
    const at::Tensor src = ckpt.tensor(file_name.at(name));
    const bool same = src.scalar_type() == dtype;
    p.set_data(same ? src : src.to(dtype));
    (same ? out.in_place : out.converted) += 1;
  }
  return out;
}

void write_random_wan_vae(const std::string& dir, const WanVaeConfig& config, uint64_t seed,
                          at::ScalarType dtype) {
  config.validate("the Wan autoencoder to write");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    throw std::runtime_error("spdit: cannot create the folder '" + dir + "': " + ec.message());
  // The model's own names and shapes (lazy pages: nothing allocated), sorted: a
  // seed gives one file.
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& p : WanVae(config, at::kFloat)->named_parameters(true))
    shapes[p.key()] = p.value().sizes().vec();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::map<std::string, at::Tensor> tensors;
  auto ends = [](const std::string& s, const std::string& e) {
    return s.size() >= e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0;
  };
  for (const auto& [name, shape] : shapes) {
    at::Tensor v = at::randn(shape, gen, at::kFloat);
    if (ends(name, ".gamma")) {
      v.mul_(0.1).add_(1.0);
    } else if (ends(name, ".bias")) {
      v.mul_(0.1);
    } else {
      int64_t fan_in = 1;
      for (size_t i = 1; i < shape.size(); ++i) fan_in *= shape[i];
      v.div_(std::sqrt(static_cast<double>(fan_in)));
    }
    tensors[name] = v.to(dtype);
  }
  checkpoints::write_safetensors(
      dir + "/" + kWeights, tensors,
      {{"format", "pt"},
       {"spdit", "random-weight AutoencoderKLWan, seed " + std::to_string(seed)}});
  std::ofstream f(dir + "/config.json");
  f << config.to_json();
  if (!f) throw std::runtime_error("spdit: cannot write '" + dir + "/config.json'");
}

}  // namespace spdit::vae
