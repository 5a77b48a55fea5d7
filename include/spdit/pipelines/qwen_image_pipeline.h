#pragma once
// Qwen-Image from prompt embeddings to a picture, as diffusers'
// QwenImagePipeline: seeded noise (1, 1, 16, h, w) packed 2x2 into 64-wide
// tokens, the flow-matching Euler schedule with dynamic shift and
// shift_terminal, the transformer (split by its SP plan when the caller
// applied one) with the image's centred RoPE positions, true CFG with the
// norm-preserving rescale when a negative prompt is given, and the Wan VAE's
// decode of one frame from the latents de-normalised by the VAE config's
// latents_mean / latents_std.
//
//   QwenImagePipeline qwen(QwenImageFiles::find("Qwen-Image/"));
//   QwenImagePrompts p{qwen.encode("a red fox"), qwen.encode(" ")};  // or embeddings from a file
//   auto grid = qwen.grid(1024, 1024);
//   auto latents = qwen.denoise(qwen.initial_noise(grid, 0), p, grid, 50, 4.0);
//   at::Tensor pixels = qwen.decode(latents, grid);           // (1, 1024, 1024, 3) uint8
#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <string>

#include "spdit/checkpoints/model_checkpoint.h"
#include "spdit/pipelines/flow_match_scheduler.h"
#include "spdit/pipelines/flux_latents.h"
#include "spdit/pipelines/qwen_prompt_encoder.h"
#include "spdit/runtime/parallel_state.h"
#include "spdit/vae/wan_vae.h"

namespace spdit::pipelines {

/// Where a Qwen-Image download (diffusers' layout: model_index.json naming
/// QwenImagePipeline) keeps each part. text_encoder / tokenizer are "" when
/// the folder has none (a new-model folder, for now).
struct QwenImageFiles {
  std::string root, transformer, vae, text_encoder, tokenizer;
  std::string scheduler_config;  // "": Qwen-Image's published scheduler settings

  /// True when `root`/model_index.json says QwenImagePipeline.
  static bool is_qwen_image_folder(const std::string& root);
  /// Throws naming every part the folder lacks, at once.
  static QwenImageFiles find(const std::string& root);
};

/// The prompt and, for true CFG, the negative prompt (embeds undefined: none).
struct QwenImagePrompts {
  QwenPromptEmbeds prompt, negative;
};

class QwenImagePipeline {
 public:
  /// Loads the transformer in `dtype` (Undefined: as stored) and the VAE
  /// (fp32); the text encoder only when `with_text` (it throws, naming
  /// --prompt-embeds, when the folder has no text_encoder/ and tokenizer/).
  explicit QwenImagePipeline(const QwenImageFiles& files,
                             at::ScalarType dtype = at::ScalarType::Undefined,
                             bool with_text = true);

  /// The prompt's embeddings and mask through the folder's text encoder.
  QwenPromptEmbeds encode(const std::string& prompt);

  /// The latent grid of an image size (floored to multiples of 16 pixels, as
  /// diffusers does); throws for a size under 16 pixels.
  FluxLatentGrid grid(int64_t height, int64_t width) const;
  /// Seeded packed noise (1, tokens, 64), drawn in the model's dtype as
  /// prepare_latents draws it (randn of (1, 1, 16, h, w)), returned in fp32.
  at::Tensor initial_noise(const FluxLatentGrid& grid, uint64_t seed) const;
  /// The schedule QwenImagePipeline sets: mu from the packed token count.
  FlowMatchEulerScheduler schedule(int64_t steps, const FluxLatentGrid& grid) const;

  /// The denoising loop from packed `latents`. True CFG when `true_cfg_scale`
  /// > 1 and a negative prompt is given (as diffusers' do_true_cfg): serial,
  /// or on the CFG axis of `parallel` (cfg degree 2). Masks drop their
  /// padding tokens first (keep_masked_tokens). Latents stay fp32.
  at::Tensor denoise(at::Tensor latents, const QwenImagePrompts& prompts,
                     const FluxLatentGrid& grid, int64_t steps, double true_cfg_scale,
                     const ParallelState* parallel = nullptr,
                     const std::function<void(int64_t, int64_t)>& after_step = {});

  /// Packed latents -> pixels (1, H, W, 3) uint8 through the VAE (one frame).
  /// With `bands` (row_bands.h), every rank of it calls this with the same
  /// latents and decodes a band of rows; each gets the whole picture.
  at::Tensor decode(const at::Tensor& latents, const FluxLatentGrid& grid,
                    const SequenceParallelConfig* bands = nullptr);

  HookableModule& transformer() { return *transformer_; }
  const checkpoints::Identified& transformer_info() const { return found_; }
  const FlowMatchEulerConfig& scheduler_config() const { return scheduler_; }
  vae::WanVae& vae() { return vae_; }
  at::ScalarType dtype() const { return dtype_; }
  int64_t text_dim() const;

 private:
  QwenImageFiles files_;
  checkpoints::Identified found_;
  std::shared_ptr<HookableModule> transformer_;
  at::ScalarType dtype_;
  vae::WanVae vae_{nullptr};
  FlowMatchEulerConfig scheduler_;
  std::unique_ptr<QwenPromptEncoder> text_;
};

/// The decode stage alone: packed latents -> pixels (1, H, W, 3) uint8, as
/// diffusers: unpack to one frame, latents / (1 / latents_std) + latents_mean
/// (the VAE config's), vae.decode, frame 0, x / 2 + 0.5 clamped, * 255
/// rounded. `bands` as in QwenImagePipeline::decode.
at::Tensor qwen_decode_latents(vae::WanVae& vae, const at::Tensor& latents,
                               const FluxLatentGrid& grid,
                               const SequenceParallelConfig* bands = nullptr);

/// One step of the loop once the transformer's velocities are known:
/// true_cfg_norm_rescale(cond, uncond, scale) when `uncond` is defined (else
/// cond alone), then the Euler step `index` of `schedule`.
at::Tensor qwen_image_step(const FlowMatchEulerScheduler& schedule, int64_t index,
                           const at::Tensor& latents, const at::Tensor& cond,
                           const at::Tensor& uncond, double scale);

}  // namespace spdit::pipelines
