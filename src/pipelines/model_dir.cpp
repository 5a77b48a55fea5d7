#include "spdit/pipelines/model_dir.h"

#include <dirent.h>
#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace spdit::pipelines {
namespace {

bool is_dir(const std::string& p) {
  struct stat st {};
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Black Forest Labs' release files that stand in for diffusers' folders.
std::string stand_in(const std::string& root, const std::string& component) {
  DIR* d = opendir(root.c_str());
  if (!d) return "";
  std::string found;
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    const bool safetensors = n.size() > 12 && n.compare(n.size() - 12, 12, ".safetensors") == 0;
    if (!safetensors) continue;
    if (component == "vae" && n == "ae.safetensors") found = root + "/" + n;
    if (component == "transformer" && n.rfind("flux1-", 0) == 0) found = root + "/" + n;
  }
  closedir(d);
  return found;
}

std::string what_it_holds(const std::map<std::string, std::string>& components) {
  std::string s;
  for (const auto& [name, cls] : components)
    s += (s.empty() ? "" : ", ") + name + "/ (" + cls + ")";
  return s;
}

}  // namespace

ModelDir ModelDir::open(const std::string& root_in) {
  std::string root = root_in;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  if (!is_dir(root)) {
    throw std::runtime_error("spdit: --model-dir '" + root_in +
                             "' is not a folder; give the model's folder as "
                             "downloaded (diffusers layout, with model_index.json)");
  }
  const std::string index = root + "/model_index.json";
  std::ifstream f(index);
  if (!f) {
    throw std::runtime_error(
        "spdit: '" + root +
        "' has no model_index.json: a model folder in diffusers' layout "
        "holds it beside its components (FLUX.1: scheduler/, text_encoder/, "
        "text_encoder_2/, tokenizer/, tokenizer_2/, transformer/, vae/). For a lone "
        "transformer checkpoint use --weights");
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    throw std::runtime_error("spdit: '" + index + "' is not valid JSON: " + e.what());
  }
  if (!j.is_object() || !j.contains("_class_name") || !j["_class_name"].is_string()) {
    throw std::runtime_error("spdit: '" + index + "' has no \"_class_name\" naming the pipeline");
  }
  ModelDir dir;
  dir.root_ = root;
  dir.pipeline_class_ = j["_class_name"].get<std::string>();
  for (const auto& [key, value] : j.items()) {
    if (key.empty() || key[0] == '_') continue;
    // ["diffusers", "AutoencoderKL"], or [null, null] for an absent one.
    if (value.is_array() && value.size() == 2 && value[1].is_string()) {
      dir.components_[key] = value[1].get<std::string>();
    }
  }
  if (j.contains("_spdit_run_defaults")) {
    for (const auto& [key, value] : j["_spdit_run_defaults"].items()) {
      // Sizes and counts are whole; scales (true_cfg_scale) need not be.
      const bool scale = key.size() > 6 && key.compare(key.size() - 6, 6, "_scale") == 0;
      if (!(scale ? value.is_number() : value.is_number_integer()) || value.get<double>() <= 0) {
        throw std::runtime_error("spdit: '" + index + "': _spdit_run_defaults." + key +
                                 " must be a positive " + (scale ? "number" : "whole number"));
      }
      dir.run_defaults_[key] = value.get<double>();
    }
  }
  return dir;
}

std::string ModelDir::component(const std::string& name) const {
  const std::string folder = root_ + "/" + name;
  if (is_dir(folder)) return folder;
  if (auto file = stand_in(root_, name); !file.empty()) return file;
  auto it = components_.find(name);
  std::ostringstream os;
  os << "spdit: the model folder '" << root_ << "' has no " << name << "/";
  if (it != components_.end()) {
    os << " (model_index.json lists it: " << it->second << ")";
  } else {
    os << " (and model_index.json does not list it)";
  }
  if (name == "transformer")
    os << "; Black Forest Labs' flux1-*.safetensors beside model_index.json also serves";
  if (name == "vae")
    os << "; Black Forest Labs' ae.safetensors beside model_index.json also serves";
  os << ". A " << pipeline_class_ << " folder holds " << what_it_holds(components_);
  throw std::runtime_error(os.str());
}

void ModelDir::require(const std::vector<std::string>& names) const {
  std::string missing;
  for (const auto& n : names) {
    try {
      component(n);
    } catch (const std::runtime_error&) {
      missing += (missing.empty() ? "" : ", ") + n + "/";
    }
  }
  if (missing.empty()) return;
  throw std::runtime_error(
      "spdit: the model folder '" + root_ + "' lacks " + missing + ". A " + pipeline_class_ +
      " folder holds " + what_it_holds(components_) +
      "; download the missing parts (or write a complete random one with spdit new-model)");
}

}  // namespace spdit::pipelines
