#include "spdit/pipelines/wan_prompt_encoder.h"

#include <stdexcept>

#include "spdit/text/ftfy.h"
#include "spdit/text/text_encoder_loading.h"

namespace spdit::pipelines {
namespace {

// Python's str.isspace / re's \s for one code point (what whitespace_clean's
// r"\s+" and strip() remove): ASCII's six, U+1C..U+1F, U+85, U+A0, U+1680,
// U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000. Wan's \s is the
// `regex` module's (Unicode White_Space, without U+1C..U+1F); ftfy has removed
// those four already, so the two agree on what reaches here.
bool python_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

}  // namespace

std::string wan_prompt_clean(const std::string& text) {
  // basic_clean: ftfy.fix_text, html.unescape twice, strip; whitespace_clean:
  // \s+ -> " ", strip. fix_text returns well-formed UTF-8 (it replaces
  // ill-formed bytes by U+FFFD), which the loop below relies on.
  const auto unescaped = text::html_unescape(text::html_unescape(text::fix_text(text)));
  std::string out;
  bool space = false;
  for (size_t i = 0; i < unescaped.size();) {
    const auto b = static_cast<unsigned char>(unescaped[i]);
    const size_t n = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    uint32_t cp = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
    for (size_t k = 1; k < n && i + k < unescaped.size(); ++k)
      cp = (cp << 6) | (static_cast<unsigned char>(unescaped[i + k]) & 0x3F);
    if (python_space(cp)) {
      space = !out.empty();
    } else {
      if (space) out += ' ';
      space = false;
      out.append(unescaped, i, n);
    }
    i += n;
  }
  return out;
}

at::Tensor trim_to_prompt_length(const at::Tensor& last_hidden_state,
                                 const at::Tensor& attention_mask) {
  if (last_hidden_state.dim() != 3 || attention_mask.dim() != 2 ||
      attention_mask.size(0) != last_hidden_state.size(0) ||
      attention_mask.size(1) != last_hidden_state.size(1)) {
    throw std::invalid_argument(
        "spdit: trim_to_prompt_length takes (B, S, D) "
        "hidden states and a (B, S) mask");
  }
  const auto lengths = attention_mask.gt(0).sum(1);
  auto out = at::zeros_like(last_hidden_state);
  for (int64_t b = 0; b < last_hidden_state.size(0); ++b) {
    const int64_t n = lengths[b].item<int64_t>();
    out[b].narrow(0, 0, n).copy_(last_hidden_state[b].narrow(0, 0, n));
  }
  return out;
}

WanPromptEncoder WanPromptEncoder::load(const std::string& tokenizer, const std::string& encoder,
                                        at::ScalarType dtype) {
  text::TextEncoderLoadOptions o;
  if (dtype != at::ScalarType::Undefined) o.dtype(dtype);
  // A file is Wan's own .pth; a folder is diffusers' text_encoder/.
  const bool file = encoder.size() > 4 && encoder.compare(encoder.size() - 4, 4, ".pth") == 0;
  auto model =
      file ? text::load_umt5_encoder_wan_original(encoder, o) : text::load_t5_encoder(encoder, o);
  if (!model->config().position_bias_per_layer) {
    throw std::runtime_error("spdit: the text encoder in " + encoder +
                             " is a T5 (config.json's model_type is not \"umt5\"); Wan2.1 takes "
                             "umT5-XXL's "
                             "(google/umt5-xxl), whose every block has its own position bias");
  }
  return WanPromptEncoder(text::T5Tokenizer::load(tokenizer), model);
}

at::Tensor WanPromptEncoder::encode(const std::string& prompt, int64_t max_length) {
  at::NoGradGuard no_grad;
  const auto tokens = tokenizer_.encode(wan_prompt_clean(prompt), max_length);
  const auto ids = at::tensor(tokens.ids, at::kLong).view({1, -1});
  const auto mask = ids.ne(tokenizer_.pad_id()).to(at::kLong);
  const auto max_id = ids.max().item<int64_t>();
  if (max_id >= encoder_->config().vocab_size) {
    throw std::runtime_error("spdit: the tokenizer gives id " + std::to_string(max_id) +
                             ", beyond the umT5 encoder's " +
                             std::to_string(encoder_->config().vocab_size) +
                             " embeddings: the tokenizer and text_encoder "
                             "folders do not belong together");
  }
  return trim_to_prompt_length(encoder_->forward(ids, mask), mask);
}

}  // namespace spdit::pipelines
