#pragma once
// FLUX.1 from a prompt to a picture, as diffusers' FluxPipeline: CLIP's
// pooled output and T5's embeddings of the prompt, seeded packed noise, the
// flow-matching Euler schedule, the transformer (split by its SP plan when
// the caller applied one), and the autoencoder's decode.
//
//   auto dir = ModelDir::open("FLUX.1-dev/");
//   FluxImagePipeline flux(dir);
//   auto prompt = flux.encode("a red fox in the snow");
//   auto grid = flux.grid(1024, 1024);
//   auto latents = flux.denoise(flux.initial_noise(grid, 0), prompt, grid, 28, 3.5);
//   // or with true CFG: auto negative = flux.encode("");
//   //   flux.denoise(noise, prompt, grid, 28, 3.5, FluxTrueCfg{&negative, 4.0});
//   at::Tensor pixels = flux.decode(latents, grid);          // (1, 1024, 1024, 3) uint8
#include <ATen/ATen.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "spdit/checkpoints/model_checkpoint.h"
#include "spdit/pipelines/flow_match_scheduler.h"
#include "spdit/pipelines/flux_latents.h"
#include "spdit/pipelines/model_dir.h"
#include "spdit/runtime/parallel_state.h"
#include "spdit/sharding/sharded_weights.h"
#include "spdit/text/clip_text_model.h"
#include "spdit/text/clip_tokenizer.h"
#include "spdit/text/t5_encoder.h"
#include "spdit/text/t5_tokenizer.h"
#include "spdit/vae/autoencoder_kl.h"

namespace spdit::pipelines {

/// A prompt as the transformer takes it (diffusers' names).
struct FluxPrompt {
  at::Tensor prompt_embeds;         // (1, T, joint_attention_dim): T5's last hidden state
  at::Tensor pooled_prompt_embeds;  // (1, pooled_projection_dim): CLIP's pooled output
};

/// True classifier-free guidance, as diffusers' FluxPipeline does it with
/// `true_cfg_scale` and a negative prompt: each step also runs the negative
/// prompt and takes neg + scale * (pos - neg). Off unless `negative` is given
/// and `scale` > 1. FLUX.1-dev's embedded guidance is passed to both
/// branches. `parallel`: the run's layout; with a CFG degree of 2 the two
/// branches run at once, one per half of the ranks (guidance.h).
struct FluxTrueCfg {
  const FluxPrompt* negative = nullptr;
  double scale = 1.0;
  const ParallelState* parallel = nullptr;
  bool on() const { return negative != nullptr && scale > 1.0; }
};

class FluxImagePipeline {
 public:
  /// Loads `dir`'s transformer (transformer/ or flux1-*.safetensors) in
  /// `dtype` (Undefined: as stored), its autoencoder and its scheduler
  /// config (scheduler/, else dev's or schnell's by the transformer's
  /// guidance embedder); the tokenizers and text encoders only when
  /// `with_text` (a run from precomputed embeddings needs none). Throws
  /// naming every part the folder lacks.
  /// `shard_blocks`: the transformer's blocks are left in the file
  /// (checkpoints::load_checkpoint_leaving) for shard_transformer() to read
  /// each rank's slice of.
  explicit FluxImagePipeline(const ModelDir& dir, at::ScalarType dtype = at::ScalarType::Undefined,
                             bool with_text = true, bool shard_blocks = false);

  /// --shard-weights over `group`: each rank keeps 1/P of every block. After
  /// a `shard_blocks` load each rank reads and converts only its slice from
  /// the file; else the loaded blocks are sliced. Collective.
  std::unique_ptr<ShardedWeights> shard_transformer(const Group& group);

  /// CLIP (77 tokens) and T5 (512 tokens for dev, 256 for schnell) of
  /// `prompt`; a longer prompt is cut with a warning, as diffusers does.
  FluxPrompt encode(const std::string& prompt);

  HookableModule& transformer() { return *transformer_; }
  const checkpoints::Identified& transformer_info() const { return found_; }
  at::ScalarType dtype() const { return dtype_; }
  bool has_guidance_embedder() const;
  /// T5's token count, diffusers' max_sequence_length: 512 for dev, 256 for
  /// schnell, unless set (1 to 512; a shorter one is what a model trained
  /// on short prompts, like spdit's demo, was trained with).
  int64_t t5_max_length() const {
    return max_sequence_length_ > 0 ? max_sequence_length_ : has_guidance_embedder() ? 512 : 256;
  }
  void set_max_sequence_length(int64_t tokens);
  /// The T5 tokens `prompt` takes, </s> included: above t5_max_length(),
  /// encode() cuts it (a server refuses such a prompt instead).
  int64_t t5_token_count(const std::string& prompt) const;

  /// The latent grid of an image size (floored to multiples of 16 pixels).
  FluxLatentGrid grid(int64_t height, int64_t width) const;
  /// Seeded packed noise (1, tokens, in_channels), fp32, as diffusers draws it.
  at::Tensor initial_noise(const FluxLatentGrid& grid, uint64_t seed) const;
  /// The denoising loop from `latents` (packed); `after_step(i, steps)`
  /// after each step. It may throw to end the loop early (a server's
  /// cancelled request; under SP every rank must throw at the same step);
  /// the pipeline stays ready for the next call. `guidance` is the embedded guidance (dev); ignored
  /// by a model without a guidance embedder (schnell).
  at::Tensor denoise(at::Tensor latents, const FluxPrompt& prompt, const FluxLatentGrid& grid,
                     int64_t steps, double guidance,
                     const std::function<void(int64_t, int64_t)>& after_step = {}) {
    return denoise(std::move(latents), prompt, grid, steps, guidance, FluxTrueCfg{}, after_step);
  }
  /// The same with true CFG (`true_cfg`).
  at::Tensor denoise(at::Tensor latents, const FluxPrompt& prompt, const FluxLatentGrid& grid,
                     int64_t steps, double guidance, const FluxTrueCfg& true_cfg,
                     const std::function<void(int64_t, int64_t)>& after_step = {});
  /// Packed latents -> pixels (1, H, W, 3) uint8.
  /// With `bands` (row_bands.h), every rank of it calls this with the same
  /// latents and decodes a band of rows; each gets the whole picture.
  at::Tensor decode(const at::Tensor& latents, const FluxLatentGrid& grid,
                    const SequenceParallelConfig* bands = nullptr);

 private:
  checkpoints::Identified found_;
  std::optional<checkpoints::Checkpoint> transformer_file_;  // while blocks are left in it
  std::map<std::string, at::Tensor> stored_blocks_;
  std::shared_ptr<HookableModule> transformer_;
  at::ScalarType dtype_;
  int64_t max_sequence_length_ = 0;
  vae::AutoencoderKL vae_{nullptr};
  FlowMatchEulerConfig scheduler_;
  std::optional<text::ClipTokenizer> clip_tokenizer_;
  std::optional<text::T5Tokenizer> t5_tokenizer_;
  text::ClipTextModel clip_{nullptr};
  text::T5EncoderModel t5_{nullptr};
};

}  // namespace spdit::pipelines
