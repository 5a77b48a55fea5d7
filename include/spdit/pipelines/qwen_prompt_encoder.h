#pragma once
// The one seam between Qwen-Image's pipeline and its text encoder
// (Qwen2.5-VL-7B's text-only forward): a prompt in, the hidden states the
// transformer takes out, with their mask, as diffusers' QwenImagePipeline
// .encode_prompt returns them (the chat template's first 34 tokens dropped,
// (1, L, 3584) for the released model).
//
//   auto encoder = make_qwen_prompt_encoder(files);   // nullptr: no text side in the folder
//   QwenPromptEmbeds p = encoder->encode("a red fox in the snow");
//
// A folder without its text side takes prompts as embeddings
// (`spdit run --prompt-embeds FILE`); require_qwen_prompt_encoder says so.
#include <ATen/ATen.h>

#include <memory>
#include <string>

namespace spdit::pipelines {

struct QwenImageFiles;

/// A prompt as Qwen-Image's transformer takes it.
struct QwenPromptEmbeds {
  at::Tensor embeds;  // (1, L, text_dim): the encoder's last hidden state
  at::Tensor mask;    // (1, L) of 0/1, or undefined: every token counts
};

/// What turns a prompt into QwenPromptEmbeds.
class QwenPromptEncoder {
 public:
  virtual ~QwenPromptEncoder() = default;
  virtual QwenPromptEmbeds encode(const std::string& prompt) = 0;
};

/// The encoder of `files` (its text_encoder/ and tokenizer/: Qwen2.5-VL's
/// text model, QwenImagePromptEncoder), or nullptr when the folder has none.
std::unique_ptr<QwenPromptEncoder> make_qwen_prompt_encoder(const QwenImageFiles& files);

/// make_qwen_prompt_encoder, or an error naming the folder and the way in
/// that works without one: --prompt-embeds.
std::unique_ptr<QwenPromptEncoder> require_qwen_prompt_encoder(const QwenImageFiles& files);

/// Keeps the tokens whose mask is 1, as encode_prompt's _extract_masked_hidden
/// does for one prompt: (1, L, D) -> (1, valid, D), the mask all ones. An
/// undefined mask keeps everything. Throws naming `what` when the shapes do
/// not fit ((1, L, D) and (1, L)) or no token is left.
QwenPromptEmbeds keep_masked_tokens(const QwenPromptEmbeds& prompt, const std::string& what);

}  // namespace spdit::pipelines
