#pragma once
/// Qwen-Image's text side as diffusers' QwenImagePipeline._get_qwen_prompt_embeds
/// runs it: each prompt put into the chat template, tokenized by Qwen2's BPE
/// (cut at tokenizer_max_length + drop_idx = 1058 tokens, right-padded with
/// <|endoftext|> to the batch's longest, with a mask), Qwen2.5-VL's text model
/// (hidden_states[-1]: after the final norm), each row's tokens that the mask
/// keeps with the first drop_idx = 34 (the template's system part) dropped,
/// zero-padded to the longest row, and a mask of ones over the kept rows.
///
///   auto enc = QwenImagePromptEncoder::load("Qwen-Image/tokenizer", "Qwen-Image/text_encoder");
///   auto out = enc.encode("a red fox in the snow");
///   // out.embeds (1, L, 3584) bf16, out.mask (1, L) int64: --prompt-embeds' inputs
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "spdit/text/qwen2_text_model.h"
#include "spdit/text/qwen2_tokenizer.h"

namespace spdit::pipelines {

/// The pipeline's constants (QwenImagePipeline.__init__).
struct QwenImagePromptOptions {
  std::string prompt_template =
      "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, "
      "quantity, text, spatial relationships of the objects and background:<|im_end|>\n"
      "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n";
  /// prompt_template_encode_start_idx: the template's tokens before the prompt
  /// in Qwen's vocabulary, dropped from the hidden states.
  int64_t drop_idx = 34;
  /// tokenizer_max_length: the prompt's tokens kept (the tokenizer cuts at this + drop_idx).
  int64_t tokenizer_max_length = 1024;
};

/// prompt_embeds and prompt_embeds_mask as the pipeline returns them.
struct QwenImageTextEmbeds {
  at::Tensor embeds;  // (B, L, hidden), the text encoder's dtype; zeros past each row's length
  at::Tensor mask;    // (B, L) int64, 1 for the row's tokens
};

/// The template with `prompt` in place of "{}" (Python's str.format with one field).
std::string qwen_image_apply_template(const std::string& prompt_template,
                                      const std::string& prompt);

/// _extract_masked_hidden, the drop of the first `drop_idx` rows, the zero
/// padding and the mask: hidden (B, S, D), attention_mask (B, S) -> embeds, mask.
QwenImageTextEmbeds qwen_image_prompt_embeds_from_hidden(const at::Tensor& hidden,
                                                         const at::Tensor& attention_mask,
                                                         int64_t drop_idx);

class QwenImagePromptEncoder {
 public:
  /// `tokenizer`: Qwen-Image's tokenizer/ folder; `text_encoder`: its
  /// text_encoder/ (Qwen2_5_VLForConditionalGeneration; only the language
  /// model is read). `dtype` Undefined: the weights' own.
  static QwenImagePromptEncoder load(const std::string& tokenizer, const std::string& text_encoder,
                                     at::ScalarType dtype = at::ScalarType::Undefined);
  /// From a Qwen-Image model folder: its tokenizer/ and text_encoder/.
  static QwenImagePromptEncoder from_model_dir(const std::string& model_dir,
                                               at::ScalarType dtype = at::ScalarType::Undefined);
  /// Whether `model_dir`/text_encoder/config.json is a Qwen2.5-VL (or Qwen2-VL) one.
  static bool is_model_dir(const std::string& model_dir);
  QwenImagePromptEncoder(text::Qwen2Tokenizer tokenizer, text::Qwen2TextModel encoder,
                         QwenImagePromptOptions options = {});

  /// The tokenizer step alone: input_ids and attention_mask (B, S) int64.
  /// A templated prompt longer than the limit is cut (its end, template
  /// included, as transformers' truncation does) with a warning on stderr.
  std::pair<at::Tensor, at::Tensor> tokenize(const std::vector<std::string>& prompts,
                                             bool warn = true) const;
  QwenImageTextEmbeds encode(const std::vector<std::string>& prompts);
  QwenImageTextEmbeds encode(const std::string& prompt) { return encode(std::vector{prompt}); }
  /// encode_prompt as the pipeline's __call__ runs it: encode(), then the
  /// first `max_sequence_length` rows of embeds and mask (__call__'s default
  /// 512; more than 1024 is refused, as check_inputs does).
  QwenImageTextEmbeds encode_prompt(const std::vector<std::string>& prompts,
                                    int64_t max_sequence_length = 512);

  const text::Qwen2Tokenizer& tokenizer() const { return tokenizer_; }
  const text::Qwen2TextModel& encoder() const { return encoder_; }
  QwenImagePromptOptions& options() { return options_; }

 private:
  text::Qwen2Tokenizer tokenizer_;
  text::Qwen2TextModel encoder_;
  QwenImagePromptOptions options_;
};

/// Writes a random-weight (seeded) Qwen-Image text side into `model_dir`, as
/// `spdit new-model --model qwen-image` may: tokenizer/ (a small but real
/// Qwen2 vocabulary, text::write_qwen2_tokenizer_files) and text_encoder/ (a
/// 2-layer Qwen2.5-VL text model whose hidden size is `hidden_size`, the
/// transformer's joint_attention_dim; head_dim 16 where it divides), stored in
/// `dtype`. QwenImagePromptEncoder::from_model_dir reads it back.
void write_qwen_image_text_side(const std::string& model_dir, int64_t hidden_size, uint64_t seed,
                                at::ScalarType dtype);

}  // namespace spdit::pipelines
