#include "spdit/pipelines/new_model.h"

#include <dirent.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "spdit/checkpoints/model_checkpoint.h"
#include "spdit/models/layers.h"
#include "spdit/models/pipeline.h"
#include "spdit/pipelines/flow_match_scheduler.h"
#include "spdit/pipelines/qwen_image_prompt_encoder.h"
#include "spdit/pipelines/unipc_scheduler.h"
#include "spdit/text/clip_text_model.h"
#include "spdit/text/t5_encoder.h"
#include "spdit/text/text_encoder_loading.h"
#include "spdit/text/vocab_writers.h"
#include "spdit/vae/vae_writer.h"
#include "spdit/vae/wan_vae_loader.h"

namespace spdit::pipelines {
namespace {

void make_empty_dir(const std::string& dir) {
  if (DIR* d = opendir(dir.c_str())) {
    bool empty = true;
    while (dirent* e = readdir(d)) {
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) empty = false;
    }
    closedir(d);
    if (!empty)
      throw std::runtime_error("spdit: '" + dir + "' exists and is not empty; give a new folder");
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
nlohmann::json scheduler_config(const std::string& model, bool schnell) {
  if (model == "wan") return nlohmann::json::parse(UniPCConfig::wan().to_json());
  if (model == "qwen-image") {  // Qwen/Qwen-Image's: dynamic shift to 8192 tokens, terminal 0.02
    auto j = nlohmann::json::parse(FlowMatchEulerConfig::qwen_image().to_json());
    j["_class_name"] = "FlowMatchEulerDiscreteScheduler";
    return j;
  }
  if (schnell) {  // FLUX.1-schnell's: no shift at all
    return {{"_class_name", "FlowMatchEulerDiscreteScheduler"},
            {"num_train_timesteps", 1000},
            {"shift", 1.0},
            {"use_dynamic_shifting", false}};
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

// FLUX.1's text encoders, sized to the transformer's text inputs: T5's width
// is its joint_attention_dim, CLIP's its pooled_projection_dim. Real sizes
// for the full preset; a few narrow layers otherwise.
void write_flux_text_side(const std::string& dir, const models::FluxConfig& c,
                          const std::string& preset, uint64_t seed, at::ScalarType dtype,
                          std::vector<std::string>& written, nlohmann::json& index) {
  const int64_t clip_vocab = text::write_clip_tokenizer_files(dir + "/tokenizer");
  text::write_t5_tokenizer_files(dir + "/tokenizer_2");
  const bool full = preset == "full";
  text::ClipTextConfig clip;
  if (!full) {
    clip.vocab_size = clip_vocab;
    clip.hidden_size = c.pooled_dim;
    clip.intermediate_size = 4 * c.pooled_dim;
    clip.num_attention_heads = std::max<int64_t>(1, c.pooled_dim / 8);
    clip.num_hidden_layers = 2;
    clip.eos_token_id = clip_vocab - 1;  // <|endoftext|>, the vocabulary's last id
  }
  text::T5EncoderConfig t5;
  if (!full) {
    t5.vocab_size = 128;
    t5.d_model = c.text_dim;
    t5.d_kv = 8;
    t5.num_heads = std::max<int64_t>(1, c.text_dim / 8);
    t5.d_ff = 2 * c.text_dim;
    t5.num_layers = 2;
  }
  text::ClipTextModel clip_model(clip);
  models::seeded_init(*clip_model, seed + 1);
  text::save_text_encoder(*clip_model, clip.to_json(), dir + "/text_encoder", dtype);
  text::T5EncoderModel t5_model(t5);
  models::seeded_init(*t5_model, seed + 2);
  text::save_text_encoder(*t5_model, t5.to_json(), dir + "/text_encoder_2", dtype);
  written.insert(written.end(), {"tokenizer", "tokenizer_2", "text_encoder", "text_encoder_2"});
  index["tokenizer"] = {"transformers", "CLIPTokenizer"};
  index["tokenizer_2"] = {"transformers", "T5TokenizerFast"};
  index["text_encoder"] = {"transformers", "CLIPTextModel"};
  index["text_encoder_2"] = {"transformers", "T5EncoderModel"};
}

// Wan2.1's text side and VAE: umT5 (its width the transformer's text_dim)
// and the SentencePiece tokenizer, and the Wan VAE. Real sizes for the full
// preset; a few narrow layers otherwise.
void write_wan_side(const std::string& dir, const models::WanConfig& c, const std::string& preset,
                    uint64_t seed, at::ScalarType dtype, std::vector<std::string>& written,
                    nlohmann::json& index) {
  text::write_t5_tokenizer_files(dir + "/tokenizer");
  const bool full = preset == "full";
  text::T5EncoderConfig umt5 = text::T5EncoderConfig::umt5_xxl();
  if (!full) {
    umt5.vocab_size = 128;
    umt5.d_model = c.text_dim;
    umt5.d_kv = 8;
    umt5.num_heads = std::max<int64_t>(1, c.text_dim / 8);
    umt5.d_ff = 2 * c.text_dim;
    umt5.num_layers = 2;
  }
  text::T5EncoderModel umt5_model(umt5);
  models::seeded_init(*umt5_model, seed + 2);
  text::save_text_encoder(*umt5_model, umt5.to_json(), dir + "/text_encoder", dtype);
  vae::write_random_wan_vae(
      dir + "/vae", full ? vae::WanVaeConfig::wan21() : vae::WanVaeConfig::tiny(), seed + 3, dtype);
  written.insert(written.end(), {"tokenizer", "text_encoder", "vae"});
  index["tokenizer"] = {"transformers", "T5TokenizerFast"};
  index["text_encoder"] = {"transformers", "UMT5EncoderModel"};
  index["vae"] = {"diffusers", "AutoencoderKLWan"};
}

// Qwen-Image's VAE: the Wan VAE (as Qwen/Qwen-Image's vae/ ships it, under
// diffusers' AutoencoderKLQwenImage); its text side: a 2-layer Qwen2.5-VL
// text model as wide as the transformer's text input, with a small real
// Qwen2 vocabulary (write_qwen_image_text_side).
void write_qwen_image_side(const std::string& dir, const models::QwenImageConfig& qwen,
                           const std::string& preset, uint64_t seed, at::ScalarType dtype,
                           std::vector<std::string>& written, nlohmann::json& index) {
  write_qwen_image_text_side(dir, qwen.text_dim, seed + 4, dtype);
  written.push_back("text_encoder");
  written.push_back("tokenizer");
  index["text_encoder"] = {"transformers", "Qwen2_5_VLForConditionalGeneration"};
  index["tokenizer"] = {"transformers", "Qwen2Tokenizer"};
  vae::write_random_wan_vae(
      dir + "/vae", preset == "full" ? vae::WanVaeConfig::wan21() : vae::WanVaeConfig::tiny(),
      seed + 3, dtype);
  const auto config = dir + "/vae/config.json";
  std::ifstream in(config);
  auto j = nlohmann::json::parse(in);
  j["_class_name"] = "AutoencoderKLQwenImage";
  write_json(config, j);
  written.push_back("vae");
  index["vae"] = {"diffusers", "AutoencoderKLQwenImage"};
}

}  // namespace

std::vector<std::string> write_new_model(const std::string& dir, const NewModelOptions& o) {
  auto config = models::preset_config(o.model, o.preset);  // refuses unknown names first
  const bool schnell = o.variant == "schnell";
  if (schnell || o.variant != "dev") {
    auto* flux = std::get_if<models::FluxConfig>(&config);
    if (!flux || !schnell) {
      throw std::invalid_argument("spdit: --variant " + o.variant +
                                  ": the variants are FLUX.1's dev (the default) "
                                  "and schnell (--model flux)");
    }
    flux->guidance = false;  // schnell has no guidance embedder
  }
  const std::string model = o.model == "qwen_image" ? "qwen-image" : o.model;
  const auto dtype = o.dtype != at::ScalarType::Undefined ? o.dtype
                     : model == "wan"                     ? at::kFloat
                                                          : at::kBFloat16;
  make_empty_dir(dir);
  std::vector<std::string> written;

  ::mkdir((dir + "/scheduler").c_str(), 0755);
  write_json(dir + "/scheduler/scheduler_config.json", scheduler_config(model, schnell));
  written.push_back("scheduler");

  // Drawn in fp32 and converted a parameter at a time: never whole in fp32.
  auto pipe = models::make_pipeline(config, o.seed, models::Weights::kSeeded, dtype);
  checkpoints::write_transformer_folder(dir + "/transformer", config, pipe->model(), dtype);
  written.push_back("transformer");

  nlohmann::json index = {
      {"_class_name", pipeline_class(model)},
      {"_spdit_new_model", {{"preset", o.preset}, {"variant", o.variant}, {"seed", o.seed}}}};
  index["scheduler"] = {"diffusers", scheduler_config(model, schnell)["_class_name"]};
  index["transformer"] = {"diffusers", transformer_class(model)};
  if (auto* flux = std::get_if<models::FluxConfig>(&config)) {
    write_flux_text_side(dir, *flux, o.preset, o.seed, dtype, written, index);
    // The published autoencoder at full size; else four narrow levels, so
    // that latents stay 1/8 of the pixels as in FLUX.1.
    auto ae = vae::AutoencoderKLConfig::flux();
    if (o.preset != "full") {
      ae = vae::AutoencoderKLConfig::tiny();
      ae.block_out_channels = {32, 32, 32, 32};
    }
    vae::write_random_autoencoder(dir + "/vae", ae, o.seed + 3, dtype);
    written.push_back("vae");
    index["vae"] = {"diffusers", "AutoencoderKL"};
  }
  if (auto* wan = std::get_if<models::WanConfig>(&config)) {
    write_wan_side(dir, *wan, o.preset, o.seed, dtype, written, index);
  }
  if (const auto* qwen = std::get_if<models::QwenImageConfig>(&config)) {
    write_qwen_image_side(dir, *qwen, o.preset, o.seed, dtype, written, index);
  }
  write_json(dir + "/model_index.json", index);
  return written;
}

}  // namespace spdit::pipelines
