#pragma once
// Wan2.1 text-to-video from a prompt to frames, as diffusers' WanPipeline:
// umT5's embeddings of the prompt and of the negative prompt, seeded noise
// (1, 16, 1 + (F - 1) / 4, H / 8, W / 8), UniPC (or Euler) over flow
// matching with classifier-free guidance, the transformer (split by its SP
// plan when the caller applied one), the Wan VAE's decode of the
// denormalised latents.
//
//   WanVideoPipeline wan(WanFiles::find("Wan2.1-T2V-1.3B-Diffusers/"));
//   auto cond = wan.encode("a red fox in the snow"), uncond = wan.encode("");
//   auto shape = wan.latent_shape(81, 480, 832);
//   auto latents = wan.denoise(wan.initial_noise(shape, 0), cond, uncond,
//   50, 5.0); at::Tensor frames = wan.decode(latents);                 // (81,
//   480, 832, 3) uint8
#include <ATen/ATen.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "spdit/checkpoints/model_checkpoint.h"
#include "spdit/pipelines/unipc_scheduler.h"
#include "spdit/pipelines/wan_prompt_encoder.h"
#include "spdit/runtime/parallel_state.h"
#include "spdit/sharding/sharded_weights.h"
#include "spdit/vae/wan_vae.h"

namespace spdit::pipelines {

/// Where a Wan2.1 download keeps each part. Two layouts: diffusers'
/// (model_index.json naming WanPipeline; tokenizer/, text_encoder/,
/// transformer/, vae/, scheduler/) and the original release
/// (diffusion_pytorch_model*.safetensors in Wan's names with config.json,
/// Wan2.1_VAE.pth, models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl/).
struct WanFiles {
  std::string root, layout;  // "diffusers" | "wan-original"
  std::string transformer, vae, tokenizer, text_encoder;
  std::string scheduler_config;  // "" in the original release: Wan's defaults

  /// True when `root` holds either layout (model_index.json says WanPipeline,
  /// or the original release's umT5 file is there).
  static bool is_wan_folder(const std::string& root);
  /// Throws naming every part the folder lacks, at once.
  static WanFiles find(const std::string& root);
};

/// Classifier-free guidance's two prompts, as the transformer takes them.
struct WanPrompts {
  at::Tensor prompt_embeds;           // (1, 512, text_dim)
  at::Tensor negative_prompt_embeds;  // (1, 512, text_dim); undefined: no guidance
};

enum class WanScheduler { kUniPC, kEuler };
/// "unipc" or "euler"; throws naming the choices otherwise.
WanScheduler parse_wan_scheduler(const std::string& name);

class WanVideoPipeline {
 public:
  /// Loads the transformer in `dtype` (Undefined: as stored) and the VAE
  /// (fp32); the umT5 encoder only when `with_text`.
  /// `shard_blocks`: the transformer's blocks are left in the file for
  /// shard_transformer() to read each rank's slice of.
  explicit WanVideoPipeline(const WanFiles& files, at::ScalarType dtype = at::ScalarType::Undefined,
                            bool with_text = true, bool shard_blocks = false);

  /// --shard-weights over `group`: each rank keeps 1/P of every block, read
  /// and converted from the file after a `shard_blocks` load. Collective.
  std::unique_ptr<ShardedWeights> shard_transformer(const Group& group);

  /// umT5's embeddings (1, 512, text_dim), trimmed and zero-padded as diffusers
  /// does.
  at::Tensor encode(const std::string& prompt);

  /// (1, 16, 1 + (frames - 1) / 4, height / 8, width / 8). Throws when
  /// (frames - 1) % 4 != 0, or height / width are not multiples of 16.
  std::vector<int64_t> latent_shape(int64_t frames, int64_t height, int64_t width) const;
  /// Seeded fp32 noise of that shape, as diffusers draws it on the CPU.
  at::Tensor initial_noise(const std::vector<int64_t>& shape, uint64_t seed) const;

  /// The denoising loop; guidance when `scale` > 1 and a negative prompt is
  /// given: serial, or on the CFG axis of `parallel` (cfg degree 2).
  /// `after_step(i, steps)` after each step. Latents stay fp32.
  at::Tensor denoise(at::Tensor latents, const WanPrompts& prompts, int64_t steps, double scale,
                     WanScheduler scheduler = WanScheduler::kUniPC,
                     const ParallelState* parallel = nullptr,
                     const std::function<void(int64_t, int64_t)>& after_step = {});

  /// Final latents -> frames (F, H, W, 3) uint8 through the VAE.
  /// With `bands` (row_bands.h), every rank of it calls this with the same
  /// latents and decodes a band of rows; each gets the whole video.
  at::Tensor decode(const at::Tensor& latents, const SequenceParallelConfig* bands = nullptr);

  HookableModule& transformer() { return *transformer_; }
  const checkpoints::Identified& transformer_info() const { return found_; }
  const UniPCConfig& scheduler_config() const { return scheduler_; }
  at::ScalarType dtype() const { return dtype_; }
  int64_t text_dim() const;

 private:
  checkpoints::Identified found_;
  std::optional<checkpoints::Checkpoint> transformer_file_;  // while blocks are left in it
  std::map<std::string, at::Tensor> stored_blocks_;
  std::shared_ptr<HookableModule> transformer_;
  at::ScalarType dtype_;
  vae::WanVae vae_{nullptr};
  UniPCConfig scheduler_;
  std::optional<WanPromptEncoder> text_;
};

/// (1, 3, F, H, W) in [-1, 1] -> (F, H, W, 3) uint8, rounding as diffusers'
/// VideoProcessor (x / 2 + 0.5, clamped, * 255, rounded).
at::Tensor wan_video_to_uint8(const at::Tensor& video);

}  // namespace spdit::pipelines
