#include "spdit/pipelines/qwen_image_pipeline.h"

#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "../text/text_files.h"
#include "spdit/models/precision.h"
#include "spdit/models/qwen_image.h"
#include "spdit/pipelines/guidance.h"
#include "spdit/pipelines/model_dir.h"
#include "spdit/pipelines/qwen_image_latents.h"
#include "spdit/pipelines/true_cfg.h"
#include "spdit/pipelines/wan_video_pipeline.h"
#include "spdit/vae/wan_vae_loader.h"

namespace spdit::pipelines {
bool QwenImageFiles::is_qwen_image_folder(const std::string& root) {
  const auto index = root + "/model_index.json";
  if (!text::path_exists(index)) return false;
  try {
    return nlohmann::json::parse(text::read_text_file(index)).value("_class_name", std::string()) ==
           "QwenImagePipeline";
  } catch (const std::exception&) {
    return false;
  }
}

QwenImageFiles QwenImageFiles::find(const std::string& root) {
  const auto dir = ModelDir::open(root);
  if (dir.pipeline_class() != "QwenImagePipeline") {
    throw std::runtime_error("spdit: '" + root + "/model_index.json' names " +
                             dir.pipeline_class() + ", not QwenImagePipeline");
  }
  dir.require({"transformer", "vae"});
  QwenImageFiles f;
  f.root = root;
  f.transformer = dir.component("transformer");
  f.vae = dir.component("vae");
  // The text side is optional here: without it prompts come as embeddings.
  for (auto [name, path] :
       {std::pair{"text_encoder", &f.text_encoder}, std::pair{"tokenizer", &f.tokenizer}}) {
    if (dir.components().count(name) && text::path_exists(root + "/" + name))
      *path = root + "/" + name;
  }
  const auto sched = root + "/scheduler/scheduler_config.json";
  if (text::path_exists(sched)) f.scheduler_config = sched;
  return f;
}

QwenImagePipeline::QwenImagePipeline(const QwenImageFiles& files, at::ScalarType dtype,
                                     bool with_text)
    : files_(files) {
  auto ckpt = checkpoints::Checkpoint::open(files.transformer);
  found_ = checkpoints::identify(ckpt);
  if (found_.model != "qwen-image") {
    throw std::runtime_error("spdit: the transformer of '" + files.root + "' is a " + found_.model +
                             " model; this pipeline runs Qwen-Image");
  }
  dtype_ = dtype == at::ScalarType::Undefined ? found_.stored_dtype : dtype;
  models::check_dtype_runs(dtype_);                           // before minutes of loading
  if (with_text) text_ = require_qwen_prompt_encoder(files);  // before the weights, too
  transformer_ = checkpoints::build_model(found_);
  checkpoints::load_checkpoint(*transformer_, ckpt, found_, dtype_);
  vae_ = vae::load_wan_vae(files.vae, at::kFloat).model;
  const auto& c = std::get<models::QwenImageConfig>(found_.config);
  if (vae_->config().z_dim * 4 != c.in_channels) {
    throw std::runtime_error(
        "spdit: the VAE of '" + files.root + "' has " + std::to_string(vae_->config().z_dim) +
        " latent channels, but the transformer takes " + std::to_string(c.in_channels) +
        " (4 per latent channel, 2x2 patches)");
  }
  scheduler_ = files.scheduler_config.empty()
                   ? FlowMatchEulerConfig::qwen_image()
                   : FlowMatchEulerConfig::from_json(text::read_text_file(files.scheduler_config),
                                                     files.scheduler_config);
}

int64_t QwenImagePipeline::text_dim() const {
  return std::get<models::QwenImageConfig>(found_.config).text_dim;
}

QwenPromptEmbeds QwenImagePipeline::encode(const std::string& prompt) {
  if (!text_) text_ = require_qwen_prompt_encoder(files_);
  return text_->encode(prompt);
}

FluxLatentGrid QwenImagePipeline::grid(int64_t height, int64_t width) const {
  return flux_latent_grid(height, width, vae_->config().spatial_scale_factor());
}

at::Tensor QwenImagePipeline::initial_noise(const FluxLatentGrid& grid, uint64_t seed) const {
  // (1, 1, C, h, w) and (1, C, h, w) are the same draw: prepare_latents'
  // extra frame axis has size 1.
  return flux_initial_noise(grid, 1, vae_->config().z_dim, seed, dtype_).to(at::kFloat);
}

FlowMatchEulerScheduler QwenImagePipeline::schedule(int64_t steps,
                                                    const FluxLatentGrid& grid) const {
  return FlowMatchEulerScheduler(scheduler_, steps, grid.tokens());
}

at::Tensor qwen_image_step(const FlowMatchEulerScheduler& schedule, int64_t index,
                           const at::Tensor& latents, const at::Tensor& cond,
                           const at::Tensor& uncond, double scale) {
  const auto v = uncond.defined() ? true_cfg_norm_rescale(cond, uncond, scale) : cond;
  return schedule.step(v, index, latents);
}

at::Tensor QwenImagePipeline::denoise(at::Tensor latents, const QwenImagePrompts& prompts,
                                      const FluxLatentGrid& grid, int64_t steps,
                                      double true_cfg_scale, const ParallelState* parallel,
                                      const std::function<void(int64_t, int64_t)>& after_step) {
  at::NoGradGuard no_grad;
  const auto& c = std::get<models::QwenImageConfig>(found_.config);
  auto checked = [&](const QwenPromptEmbeds& p, const std::string& what) {
    auto kept = keep_masked_tokens(p, what);
    if (kept.embeds.size(2) != c.text_dim) {
      throw std::invalid_argument("spdit: " + what + " must be (1, L, " +
                                  std::to_string(c.text_dim) + ") for this transformer; " +
                                  std::string(c10::str(p.embeds.sizes())) + " given");
    }
    return kept.embeds.to(dtype_);
  };
  const auto cond_text = checked(prompts.prompt, "prompt_embeds");
  const bool guided = true_cfg_scale > 1.0 && prompts.negative.embeds.defined();
  const auto uncond_text =
      guided ? checked(prompts.negative, "negative_prompt_embeds") : at::Tensor();
  if (latents.dim() != 3 || latents.size(1) != grid.tokens() || latents.size(2) != c.in_channels) {
    throw std::invalid_argument("spdit: the noise must be packed (1, " +
                                std::to_string(grid.tokens()) + ", " +
                                std::to_string(c.in_channels) + ") for this size; " +
                                std::string(c10::str(latents.sizes())) + " given");
  }
  const auto s = schedule(steps, grid);
  const auto img_ids = qwen_image_ids(grid);
  // Latents and timestep stay fp32 between steps, where diffusers keeps them
  // in the model's dtype (as the FLUX.1 pipeline does here).
  latents = latents.to(at::kFloat);
  for (int64_t i = 0; i < s.steps(); ++i) {
    // diffusers passes timestep / 1000; the model scales by 1000 itself.
    const auto t = at::full({latents.size(0)}, s.timesteps()[i].item<double>() / 1000.0);
    auto velocity = [&](bool conditional) {
      return transformer_
          ->call({latents}, {{"encoder_hidden_states", conditional ? cond_text : uncond_text},
                             {"timestep", t},
                             {"img_ids", img_ids}})
          .tensor()
          .to(at::kFloat);
    };
    at::Tensor cond, uncond;
    if (guided) {
      std::tie(cond, uncond) = guidance_branches(velocity, parallel);
    } else {
      cond = velocity(true);
    }
    latents = qwen_image_step(s, i, latents, cond, uncond, true_cfg_scale);
    if (after_step) after_step(i + 1, s.steps());
  }
  return latents;
}

at::Tensor qwen_decode_latents(vae::WanVae& vae, const at::Tensor& latents,
                               const FluxLatentGrid& grid, const SequenceParallelConfig* bands) {
  at::NoGradGuard no_grad;
  const auto z =
      vae::denormalize_wan_latents(unpack_qwen_latents(latents.to(at::kFloat), grid), vae->config())
          .to(vae->dtype());
  // (1, 3, 1, H, W): a video of one frame; diffusers keeps [:, :, 0].
  return wan_video_to_uint8(bands ? vae->decode(z, *bands) : vae->decode(z));
}

at::Tensor QwenImagePipeline::decode(const at::Tensor& latents, const FluxLatentGrid& grid,
                                     const SequenceParallelConfig* bands) {
  return qwen_decode_latents(vae_, latents, grid, bands);
}

}  // namespace spdit::pipelines
