#include "spdit/pipelines/new_model.h"

#include <dirent.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "spdit/checkpoints/model_checkpoint.h"
#include "spdit/models/pipeline.h"

namespace spdit::pipelines {
namespace {

void make_empty_dir(const std::string& dir) {
  if (DIR* d = opendir(dir.c_str())) {
    bool empty = true;
    while (dirent* e = readdir(d)) {
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) empty = false;
    }
    closedir(d);
    if (!empty) throw std::runtime_error("spdit: '" + dir + "' exists and is not empty; give a new folder");
    return;
  }
  if (::mkdir(dir.c_str(), 0755) != 0) {
    throw std::runtime_error("spdit: cannot create '" + dir + "': " + std::strerror(errno));
  }
}

void write_json(const std::string& path, const nlohmann::json& j) {
  std::ofstream f(path);
  f << j.dump(2) << "\n";
  if (!f.flush()) throw std::runtime_error("spdit: cannot write '" + path + "'");
}

// As the published folders configure their schedulers.
nlohmann::json scheduler_config(const std::string& model) {
  if (model == "wan") {
    return {{"_class_name", "UniPCMultistepScheduler"}, {"num_train_timesteps", 1000},
            {"prediction_type", "flow_prediction"},    {"use_flow_sigmas", true},
            {"flow_shift", 3.0}};
  }
  return {{"_class_name", "FlowMatchEulerDiscreteScheduler"},
          {"base_image_seq_len", 256},
          {"base_shift", 0.5},
          {"max_image_seq_len", 4096},
          {"max_shift", 1.15},
          {"num_train_timesteps", 1000},
          {"shift", model == "flux" ? 3.0 : 1.0},
          {"use_dynamic_shifting", true}};
}

std::string pipeline_class(const std::string& model) {
  if (model == "flux") return "FluxPipeline";
  if (model == "wan") return "WanPipeline";
  return "QwenImagePipeline";
}

std::string transformer_class(const std::string& model) {
  if (model == "flux") return "FluxTransformer2DModel";
  if (model == "wan") return "WanTransformer3DModel";
  return "QwenImageTransformer2DModel";
}

}  // namespace

std::vector<std::string> write_new_model(const std::string& dir, const NewModelOptions& o) {
  const auto config = models::preset_config(o.model, o.preset);  // refuses unknown names first
  const std::string model = o.model == "qwen_image" ? "qwen-image" : o.model;
  const auto dtype = o.dtype != at::ScalarType::Undefined ? o.dtype : model == "wan" ? at::kFloat : at::kBFloat16;
  make_empty_dir(dir);
  std::vector<std::string> written;

  ::mkdir((dir + "/scheduler").c_str(), 0755);
  write_json(dir + "/scheduler/scheduler_config.json", scheduler_config(model));
  written.push_back("scheduler");

  auto pipe = models::make_pipeline(config, o.seed);
  checkpoints::write_transformer_folder(dir + "/transformer", config, pipe->model(), dtype);
  written.push_back("transformer");

  nlohmann::json index = {{"_class_name", pipeline_class(model)}, {"_spdit_new_model", {{"preset", o.preset}, {"seed", o.seed}}}};
  index["scheduler"] = {"diffusers", scheduler_config(model)["_class_name"]};
  index["transformer"] = {"diffusers", transformer_class(model)};
  write_json(dir + "/model_index.json", index);
  return written;
}

}  // namespace spdit::pipelines
