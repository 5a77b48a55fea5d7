#pragma once
// Wan2.1's text side as diffusers' WanPipeline._get_t5_prompt_embeds runs it:
// the prompt cleaned (ftfy's fix_text, HTML entities, runs of whitespace), umT5's SentencePiece
// ids + </s> padded to 512 with a mask, the umT5 encoder's last hidden state
// trimmed to the prompt's token count and zero-padded back to 512 rows (the
// transformer sees zeros, not the encoder's output, at the padding).
//
//   auto enc = WanPromptEncoder::load("Wan2.1-T2V-1.3B-Diffusers/tokenizer",
//                                     "Wan2.1-T2V-1.3B-Diffusers/text_encoder");
//   at::Tensor embeds = enc.encode("a red fox in the snow");   // (1, 512,
//   4096)
#include <ATen/ATen.h>

#include <optional>
#include <string>

#include "spdit/text/t5_encoder.h"
#include "spdit/text/t5_tokenizer.h"

namespace spdit::pipelines {

/// Wan's prompt_clean (basic_clean then whitespace_clean): ftfy.fix_text
/// (text::fix_text: mojibake, curly quotes, ligatures, fullwidth forms, line
/// breaks, HTML entities ...; ill-formed UTF-8 bytes become U+FFFD), then
/// html.unescape twice (text::html_unescape), then runs of Python's whitespace
/// (\s, U+00A0 and U+3000 included) to one space, trimmed.
std::string wan_prompt_clean(const std::string& text);

/// The encoder's last hidden state (B, S, D) trimmed per row to its mask's
/// count and zero-padded back to S, as _get_t5_prompt_embeds does.
at::Tensor trim_to_prompt_length(const at::Tensor& last_hidden_state,
                                 const at::Tensor& attention_mask);

class WanPromptEncoder {
 public:
  /// `tokenizer`: a folder with spiece.model (google/umt5-xxl's, or a
  /// diffusers folder's tokenizer/). `encoder`: a diffusers text_encoder/
  /// folder (config.json + safetensors, transformers' UMT5 names), or Wan's
  /// own models_t5_umt5-xxl-enc-bf16.pth (Wan's names, umT5-XXL's dimensions).
  static WanPromptEncoder load(const std::string& tokenizer, const std::string& encoder,
                               at::ScalarType dtype = at::ScalarType::Undefined);
  WanPromptEncoder(text::T5Tokenizer tokenizer, text::T5EncoderModel encoder)
      : tokenizer_(std::move(tokenizer)), encoder_(std::move(encoder)) {}

  /// (1, max_length, d_model) in the encoder's dtype; a longer prompt is cut
  /// with a warning, as diffusers does.
  at::Tensor encode(const std::string& prompt, int64_t max_length = 512);
  const text::T5EncoderModel& encoder() const { return encoder_; }

 private:
  text::T5Tokenizer tokenizer_;
  text::T5EncoderModel encoder_;
};

}  // namespace spdit::pipelines
