#include "spdit/pipelines/flux_image_pipeline.h"

#include <sys/stat.h>

#include <stdexcept>

#include "../text/text_files.h"
#include "spdit/models/flux.h"
#include "spdit/models/precision.h"
#include "spdit/pipelines/flux_vae_stage.h"
#include "spdit/pipelines/guidance.h"
#include "spdit/text/text_encoder_loading.h"
#include "spdit/vae/vae_loader.h"

namespace spdit::pipelines {
FluxImagePipeline::FluxImagePipeline(const ModelDir& dir, at::ScalarType dtype, bool with_text,
                                     bool shard_blocks) {
  std::vector<std::string> parts = {"transformer", "vae"};
  if (with_text)
    parts.insert(parts.end(), {"tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2"});
  dir.require(parts);
  auto ckpt = checkpoints::Checkpoint::open(dir.component("transformer"));
  found_ = checkpoints::identify(ckpt);
  if (found_.model != "flux") {
    throw std::runtime_error("spdit: the transformer of '" + dir.root() + "' is a " + found_.model +
                             " model; this pipeline runs FLUX.1");
  }
  dtype_ = dtype == at::ScalarType::Undefined ? found_.stored_dtype : dtype;
  models::check_dtype_runs(dtype_);  // before minutes of loading
  transformer_ = checkpoints::build_model(found_);
  if (shard_blocks) {
    stored_blocks_ = checkpoints::load_checkpoint_leaving(
        *transformer_, ckpt, found_, dtype_, ShardedWeights::block_parameter_names(*transformer_));
    transformer_file_ = ckpt;
  } else {
    checkpoints::load_checkpoint(*transformer_, ckpt, found_, dtype_);
  }
  vae_ = vae::load_autoencoder(dir.root(), dtype_).model;
  const auto& c = std::get<models::FluxConfig>(found_.config);
  if (vae_->config().latent_channels * 4 != c.in_channels) {
    throw std::runtime_error("spdit: the autoencoder of '" + dir.root() + "' has " +
                             std::to_string(vae_->config().latent_channels) +
                             " latent channels, but the transformer takes " +
                             std::to_string(c.in_channels) +
                             " (4 per latent channel, 2x2 patches)");
  }
  scheduler_ = text::path_exists(dir.root() + "/scheduler")
                   ? FlowMatchEulerConfig::from_model_dir(dir.root())
               : c.guidance ? FlowMatchEulerConfig::flux_dev()
                            : FlowMatchEulerConfig::flux_schnell();
  if (with_text) {
    clip_tokenizer_ = text::ClipTokenizer::load(dir.component("tokenizer"));
    t5_tokenizer_ = text::T5Tokenizer::load(dir.component("tokenizer_2"));
    clip_ = text::load_clip_text_model(dir.component("text_encoder"));
    t5_ = text::load_t5_encoder(dir.component("text_encoder_2"));
  }
}

std::unique_ptr<ShardedWeights> FluxImagePipeline::shard_transformer(const Group& group) {
  // The file's pages a rank reads its slices from go as soon as they are read.
  auto shards = std::make_unique<ShardedWeights>(*transformer_, group, stored_blocks_,
                                                 [this](const at::Tensor& t) {
                                                   if (transformer_file_)
                                                     transformer_file_->release_pages(t);
                                                 });
  stored_blocks_.clear();
  return shards;
}

void FluxImagePipeline::set_max_sequence_length(int64_t tokens) {
  if (tokens < 1 || tokens > 512) {
    throw std::invalid_argument("spdit: max_sequence_length must be 1 to 512 (T5's tokens), not " +
                                std::to_string(tokens));
  }
  max_sequence_length_ = tokens;
}

bool FluxImagePipeline::has_guidance_embedder() const {
  return std::get<models::FluxConfig>(found_.config).guidance;
}

FluxPrompt FluxImagePipeline::encode(const std::string& prompt) {
  if (!clip_tokenizer_ || !t5_tokenizer_) {
    throw std::logic_error("spdit: this FluxImagePipeline was loaded without its text encoders");
  }
  at::NoGradGuard no_grad;
  auto ids = [](const std::vector<int64_t>& v) { return at::tensor(v, at::kLong).view({1, -1}); };
  FluxPrompt p;
  p.pooled_prompt_embeds = clip_->forward(ids(clip_tokenizer_->encode(prompt, 77).ids)).pooled;
  p.prompt_embeds = t5_->forward(ids(t5_tokenizer_->encode(prompt, t5_max_length()).ids));
  return p;
}

int64_t FluxImagePipeline::t5_token_count(const std::string& prompt) const {
  if (!t5_tokenizer_)
    throw std::logic_error("spdit: this FluxImagePipeline was loaded without its text encoders");
  return static_cast<int64_t>(t5_tokenizer_->token_ids(prompt).size()) + 1;
}

FluxLatentGrid FluxImagePipeline::grid(int64_t height, int64_t width) const {
  return flux_latent_grid(height, width, vae_->config().vae_scale_factor());
}

at::Tensor FluxImagePipeline::initial_noise(const FluxLatentGrid& grid, uint64_t seed) const {
  // Drawn in the model's dtype, as diffusers draws it (a bf16 draw is not a
  // rounded fp32 one), so that a seed gives diffusers' noise.
  return flux_initial_noise(grid, 1, std::get<models::FluxConfig>(found_.config).in_channels / 4,
                            seed, dtype_)
      .to(at::kFloat);
}

namespace {

void check_prompt(const FluxPrompt& prompt, const models::FluxConfig& c, const char* which) {
  if (prompt.prompt_embeds.dim() != 3 || prompt.prompt_embeds.size(2) != c.text_dim) {
    throw std::invalid_argument(std::string("spdit: ") + which + "prompt_embeds must be (1, T, " +
                                std::to_string(c.text_dim) + "); " +
                                std::string(c10::str(prompt.prompt_embeds.sizes())) + " given");
  }
  if (prompt.pooled_prompt_embeds.dim() != 2 ||
      prompt.pooled_prompt_embeds.size(1) != c.pooled_dim) {
    throw std::invalid_argument(std::string("spdit: ") + which +
                                "pooled_prompt_embeds must be (1, " + std::to_string(c.pooled_dim) +
                                "); " + std::string(c10::str(prompt.pooled_prompt_embeds.sizes())) +
                                " given");
  }
}

}  // namespace

at::Tensor FluxImagePipeline::denoise(at::Tensor latents, const FluxPrompt& prompt,
                                      const FluxLatentGrid& grid, int64_t steps, double guidance,
                                      const FluxTrueCfg& true_cfg,
                                      const std::function<void(int64_t, int64_t)>& after_step) {
  at::NoGradGuard no_grad;
  const auto& c = std::get<models::FluxConfig>(found_.config);
  check_prompt(prompt, c, "");
  if (true_cfg.negative) check_prompt(*true_cfg.negative, c, "negative_");
  if (true_cfg.parallel && true_cfg.parallel->cfg_degree() == 2 && !true_cfg.on()) {
    throw std::invalid_argument(
        "spdit: a CFG degree of 2 runs true CFG's two branches at once; it needs a negative "
        "prompt and a true CFG scale above 1");
  }
  if (latents.dim() != 3 || latents.size(1) != grid.tokens() || latents.size(2) != c.in_channels) {
    throw std::invalid_argument("spdit: the noise must be packed (1, " +
                                std::to_string(grid.tokens()) + ", " +
                                std::to_string(c.in_channels) + ") for this size; " +
                                std::string(c10::str(latents.sizes())) + " given");
  }
  FlowMatchEulerScheduler schedule(scheduler_, steps, grid.tokens());
  const auto img_ids = flux_latent_image_ids(grid);
  // Text positions are all 0 in FLUX.1; one tensor per prompt length.
  const auto txt_ids = at::zeros({prompt.prompt_embeds.size(1), 3});
  const auto negative_txt_ids =
      true_cfg.on() ? at::zeros({true_cfg.negative->prompt_embeds.size(1), 3}) : at::Tensor();
  const int64_t b = latents.size(0);
  // Latents, timestep and guidance stay fp32 between steps, where diffusers
  // keeps them in the model's dtype: precision over bit-for-bit agreement
  // with diffusers' bf16 rounding.
  latents = latents.to(at::kFloat);
  for (int64_t i = 0; i < schedule.steps(); ++i) {
    // diffusers passes timestep / 1000; the model scales by 1000 itself.
    const double t = schedule.timesteps()[i].item<double>() / 1000.0;
    auto velocity = [&](bool conditional) {
      const FluxPrompt& p = conditional ? prompt : *true_cfg.negative;
      std::vector<Kwarg> args = {{"encoder_hidden_states", p.prompt_embeds},
                                 {"pooled_projections", p.pooled_prompt_embeds},
                                 {"timestep", at::full({b}, t)},
                                 {"img_ids", img_ids},
                                 {"txt_ids", conditional ? txt_ids : negative_txt_ids}};
      if (c.guidance) args.push_back({"guidance", at::full({b}, guidance)});
      return transformer_->call({latents}, args).tensor().to(at::kFloat);
    };
    const auto v = true_cfg.on() ? guided_velocity(velocity, true_cfg.scale, true_cfg.parallel)
                                 : velocity(true);
    latents = schedule.step(v, i, latents);
    if (after_step) after_step(i + 1, schedule.steps());
  }
  return latents;
}

at::Tensor FluxImagePipeline::decode(const at::Tensor& latents, const FluxLatentGrid& grid,
                                     const SequenceParallelConfig* bands) {
  at::NoGradGuard no_grad;
  return to_uint8_image(
      flux_decode_latents(vae_, unpack_flux_latents(latents, grid).to(dtype_), bands));
}

}  // namespace spdit::pipelines
