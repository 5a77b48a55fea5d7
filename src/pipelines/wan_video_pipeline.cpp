#include "spdit/pipelines/wan_video_pipeline.h"

#include <ATen/CPUGeneratorImpl.h>
#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "../text/text_files.h"
#include "spdit/models/precision.h"
#include "spdit/models/wan.h"
#include "spdit/pipelines/flow_match_scheduler.h"
#include "spdit/pipelines/guidance.h"
#include "spdit/pipelines/model_dir.h"
#include "spdit/vae/wan_vae_loader.h"

namespace spdit::pipelines {
namespace {

// The original release's file names (Wan-Video/Wan2.1,
// wan/configs/shared_config.py).
constexpr const char* kOriginalT5 = "models_t5_umt5-xxl-enc-bf16.pth";
constexpr const char* kOriginalVae = "Wan2.1_VAE.pth";
constexpr const char* kOriginalTokenizer = "google/umt5-xxl";

bool says_wan_pipeline(const std::string& root) {
  const auto index = root + "/model_index.json";
  if (!text::path_exists(index)) return false;
  try {
    return nlohmann::json::parse(text::read_text_file(index)).value("_class_name", std::string()) ==
           "WanPipeline";
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace

bool WanFiles::is_wan_folder(const std::string& root) {
  return says_wan_pipeline(root) || text::path_exists(root + "/" + kOriginalT5);
}

WanFiles WanFiles::find(const std::string& root) {
  WanFiles f;
  f.root = root;
  if (says_wan_pipeline(root)) {
    f.layout = "diffusers";
    const auto dir = ModelDir::open(root);
    dir.require({"transformer", "vae", "tokenizer", "text_encoder"});
    f.transformer = dir.component("transformer");
    f.vae = dir.component("vae");
    f.tokenizer = dir.component("tokenizer");
    f.text_encoder = dir.component("text_encoder");
    const auto sched = root + "/scheduler/scheduler_config.json";
    if (text::path_exists(sched)) f.scheduler_config = sched;
    return f;
  }
  f.layout = "wan-original";
  f.transformer = root;
  f.vae = root + "/" + kOriginalVae;
  f.tokenizer = root + "/" + kOriginalTokenizer;
  f.text_encoder = root + "/" + kOriginalT5;
  std::string missing;
  if (!text::path_exists(root + "/config.json"))
    missing += "\n  config.json (the transformer's dimensions)";
  if (!text::path_exists(f.vae)) missing += std::string("\n  ") + kOriginalVae;
  if (!text::path_exists(f.text_encoder)) missing += std::string("\n  ") + kOriginalT5;
  if (!text::path_exists(f.tokenizer + "/spiece.model"))
    missing += std::string("\n  ") + kOriginalTokenizer + "/spiece.model";
  if (!missing.empty()) {
    throw std::runtime_error("spdit: '" + root +
                             "' is not a Wan2.1 folder: a diffusers download has model_index.json "
                             "(WanPipeline), "
                             "the original release has these files, of which it lacks:" +
                             missing);
  }
  return f;
}

WanScheduler parse_wan_scheduler(const std::string& name) {
  if (name == "unipc") return WanScheduler::kUniPC;
  if (name == "euler") return WanScheduler::kEuler;
  throw std::invalid_argument("spdit: --scheduler '" + name + "': use unipc (Wan's own) or euler");
}

WanVideoPipeline::WanVideoPipeline(const WanFiles& files, at::ScalarType dtype, bool with_text,
                                   bool shard_blocks) {
  auto ckpt = checkpoints::Checkpoint::open(files.transformer);
  found_ = checkpoints::identify(ckpt);
  if (found_.model != "wan") {
    throw std::runtime_error("spdit: the transformer of '" + files.root + "' is a " + found_.model +
                             " model; this pipeline runs Wan2.1");
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
  vae_ = vae::load_wan_vae(files.vae, at::kFloat).model;
  const auto& c = std::get<models::WanConfig>(found_.config);
  if (vae_->config().z_dim != c.in_channels) {
    throw std::runtime_error(
        "spdit: the VAE of '" + files.root + "' has " + std::to_string(vae_->config().z_dim) +
        " latent channels, but the transformer takes " + std::to_string(c.in_channels));
  }
  scheduler_ = files.scheduler_config.empty()
                   ? UniPCConfig::wan()
                   : UniPCConfig::from_json(text::read_text_file(files.scheduler_config),
                                            files.scheduler_config);
  if (with_text) {
    text_.emplace(WanPromptEncoder::load(files.tokenizer, files.text_encoder));
    const int64_t d = text_->encoder()->config().d_model;
    if (d != c.text_dim) {
      throw std::runtime_error("spdit: the umT5 encoder of '" + files.root + "' gives " +
                               std::to_string(d) + "-wide embeddings, but the transformer takes " +
                               std::to_string(c.text_dim));
    }
  }
}

int64_t WanVideoPipeline::text_dim() const {
  return std::get<models::WanConfig>(found_.config).text_dim;
}

at::Tensor WanVideoPipeline::encode(const std::string& prompt) {
  if (!text_)
    throw std::logic_error("spdit: this WanVideoPipeline was loaded without its text encoder");
  return text_->encode(prompt, std::get<models::WanConfig>(found_.config).text_len);
}

std::vector<int64_t> WanVideoPipeline::latent_shape(int64_t frames, int64_t height,
                                                    int64_t width) const {
  if (frames < 1 || (frames - 1) % 4 != 0) {
    throw std::invalid_argument("spdit: --frames " + std::to_string(frames) +
                                ": Wan's VAE makes 1 + 4k frames (1, 5, 9, ..., 81); try " +
                                std::to_string(frames < 1 ? 1 : (frames - 1) / 4 * 4 + 1) + " or " +
                                std::to_string(frames < 1 ? 5 : ((frames - 1) / 4 + 1) * 4 + 1));
  }
  const int64_t unit = 2 * vae_->config().spatial_scale_factor();  // a 2x2 patch of latents
  if (height < unit || width < unit || height % unit || width % unit) {
    throw std::invalid_argument("spdit: " + std::to_string(height) + "x" + std::to_string(width) +
                                ": Wan takes heights and widths in multiples of " +
                                std::to_string(unit) + " pixels (2x2 patches of 1/" +
                                std::to_string(unit / 2) + " latents), e.g. 480x832");
  }
  const int64_t s = vae_->config().spatial_scale_factor();
  return {1, vae_->config().z_dim, vae_->config().latent_frames_for_frames(frames), height / s,
          width / s};
}

at::Tensor WanVideoPipeline::initial_noise(const std::vector<int64_t>& shape, uint64_t seed) const {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat));
}

at::Tensor WanVideoPipeline::denoise(at::Tensor latents, const WanPrompts& prompts, int64_t steps,
                                     double scale, WanScheduler scheduler,
                                     const ParallelState* parallel,
                                     const std::function<void(int64_t, int64_t)>& after_step) {
  at::NoGradGuard no_grad;
  const auto& c = std::get<models::WanConfig>(found_.config);
  auto check_embeds = [&](const at::Tensor& e, const char* what) {
    if (e.dim() != 3 || e.size(0) != 1 || e.size(2) != c.text_dim || e.size(1) > c.text_len) {
      throw std::invalid_argument(
          std::string("spdit: ") + what + " must be (1, T <= " + std::to_string(c.text_len) + ", " +
          std::to_string(c.text_dim) + "); " + std::string(c10::str(e.sizes())) + " given");
    }
  };
  check_embeds(prompts.prompt_embeds, "prompt_embeds");
  const bool guided = scale > 1.0 && prompts.negative_prompt_embeds.defined();
  if (guided) check_embeds(prompts.negative_prompt_embeds, "negative_prompt_embeds");
  if (latents.dim() != 5 || latents.size(1) != c.in_channels) {
    throw std::invalid_argument("spdit: Wan's noise must be (1, " + std::to_string(c.in_channels) +
                                ", T, h, w); " + std::string(c10::str(latents.sizes())) + " given");
  }
  latents = latents.to(at::kFloat);
  auto velocity = [&](const at::Tensor& x, double t, bool conditional) {
    const auto& text = conditional ? prompts.prompt_embeds : prompts.negative_prompt_embeds;
    return transformer_
        ->call({x},
               {{"timestep", at::full({x.size(0)}, t)}, {"encoder_hidden_states", text.to(dtype_)}})
        .tensor()
        .to(at::kFloat);
  };
  auto guided_v = [&](const at::Tensor& x, double t) {
    if (!guided) return velocity(x, t, true);
    return guided_velocity([&](bool conditional) { return velocity(x, t, conditional); }, scale,
                           parallel);
  };
  if (scheduler == WanScheduler::kUniPC) {
    UniPCMultistepScheduler s(scheduler_, steps);
    for (int64_t i = 0; i < s.steps(); ++i) {
      // The integer timestep diffusers passes (the model takes [0, 1000]).
      latents =
          s.step(guided_v(latents, static_cast<double>(s.timesteps()[i].item<int64_t>())), latents);
      if (after_step) after_step(i + 1, s.steps());
    }
    return latents;
  }
  FlowMatchEulerConfig euler;
  euler.num_train_timesteps = scheduler_.num_train_timesteps;
  euler.shift = scheduler_.flow_shift;
  // The token count only matters to dynamic shifting, which Wan does not use.
  FlowMatchEulerScheduler s(euler, steps, latents.size(2) * latents.size(3) * latents.size(4) / 4);
  for (int64_t i = 0; i < s.steps(); ++i) {
    latents = s.step(guided_v(latents, s.timesteps()[i].item<double>()), i, latents);
    if (after_step) after_step(i + 1, s.steps());
  }
  return latents;
}

at::Tensor wan_video_to_uint8(const at::Tensor& video) {
  if (video.dim() != 5 || video.size(0) != 1 || video.size(1) != 3) {
    throw std::invalid_argument("spdit: a decoded video is (1, 3, F, H, W); " +
                                std::string(c10::str(video.sizes())) + " given");
  }
  const auto x = (video[0].to(at::kFloat) / 2 + 0.5).clamp(0, 1);
  return (x * 255).round().to(at::kByte).permute({1, 2, 3, 0}).contiguous();
}

at::Tensor WanVideoPipeline::decode(const at::Tensor& latents,
                                    const SequenceParallelConfig* bands) {
  at::NoGradGuard no_grad;
  const auto z =
      vae::denormalize_wan_latents(latents.to(at::kFloat), vae_->config()).to(vae_->dtype());
  return wan_video_to_uint8(bands ? vae_->decode(z, *bands) : vae_->decode(z));
}

std::unique_ptr<ShardedWeights> WanVideoPipeline::shard_transformer(const Group& group) {
  // The file's pages a rank reads its slices from go as soon as they are read.
  auto shards = std::make_unique<ShardedWeights>(*transformer_, group, stored_blocks_,
                                                 [this](const at::Tensor& t) {
                                                   if (transformer_file_)
                                                     transformer_file_->release_pages(t);
                                                 });
  stored_blocks_.clear();
  return shards;
}

}  // namespace spdit::pipelines
