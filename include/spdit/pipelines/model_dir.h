#pragma once
// A model folder as users download it: diffusers' layout, where
// model_index.json names the pipeline and each component's folder
// (FLUX.1-dev: scheduler/, text_encoder/ (CLIP), text_encoder_2/ (T5),
// tokenizer/, tokenizer_2/, transformer/, vae/). Black Forest Labs' own files
// may stand in for two of them: flux1-*.safetensors for transformer/ and
// ae.safetensors for vae/, beside model_index.json.
//
//   auto dir = ModelDir::open("FLUX.1-dev/");
//   dir.pipeline_class();             // "FluxPipeline"
//   dir.component("vae");             // "FLUX.1-dev/vae" (or its ae.safetensors)
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace spdit::pipelines {

class ModelDir {
 public:
  /// Reads `root`/model_index.json. Throws naming the file and what a model
  /// folder holds when it is not one.
  static ModelDir open(const std::string& root);

  const std::string& root() const { return root_; }
  /// model_index.json's `_class_name` ("FluxPipeline").
  const std::string& pipeline_class() const { return pipeline_class_; }
  /// The components model_index.json lists (name -> its class, e.g.
  /// "vae" -> "AutoencoderKL"), null ones left out.
  const std::map<std::string, std::string>& components() const { return components_; }
  /// The path of component `name`: its folder, or the file standing in for
  /// it. Throws naming the component, what model_index.json says it is, and
  /// what the folder should hold.
  std::string component(const std::string& name) const;
  /// Throws naming every one of `names` the folder lacks, at once.
  void require(const std::vector<std::string>& names) const;
  /// model_index.json's `_spdit_run_defaults`: the run settings a folder was
  /// made for (a trained demo's height, width, steps, max_sequence_length:
  /// whole numbers; true_cfg_scale), which `spdit run` takes where its flags
  /// are not given. Empty for published folders.
  const std::map<std::string, double>& run_defaults() const { return run_defaults_; }
  /// run_defaults()'s `key`, or `fallback` where the folder names none.
  double run_default(const std::string& key, double fallback) const {
    auto it = run_defaults_.find(key);
    return it != run_defaults_.end() ? it->second : fallback;
  }

 private:
  std::string root_, pipeline_class_;
  std::map<std::string, std::string> components_;
  std::map<std::string, double> run_defaults_;
};

}  // namespace spdit::pipelines
