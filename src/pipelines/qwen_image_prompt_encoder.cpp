#include "spdit/pipelines/qwen_image_prompt_encoder.h"

#include <algorithm>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "spdit/text/text_encoder_loading.h"
#include "spdit/text/vocab_writers.h"

namespace spdit::pipelines {

std::string qwen_image_apply_template(const std::string& prompt_template,
                                      const std::string& prompt) {
  const size_t at = prompt_template.find("{}");
  if (at == std::string::npos || prompt_template.find("{}", at + 2) != std::string::npos) {
    throw std::invalid_argument(
        "spdit: the Qwen-Image prompt template should hold \"{}\" once, "
        "where the prompt goes");
  }
  return prompt_template.substr(0, at) + prompt + prompt_template.substr(at + 2);
}

QwenImageTextEmbeds qwen_image_prompt_embeds_from_hidden(const at::Tensor& hidden,
                                                         const at::Tensor& attention_mask,
                                                         int64_t drop_idx) {
  if (hidden.dim() != 3 || attention_mask.dim() != 2 || hidden.size(0) != attention_mask.size(0) ||
      hidden.size(1) != attention_mask.size(1)) {
    throw std::invalid_argument(
        "spdit: Qwen-Image's prompt embeds need hidden states (B, S, D) and a mask (B, S)");
  }
  // Each row's masked-in tokens, in order (hidden_states[bool_mask] split by
  // row), less the first drop_idx.
  std::vector<at::Tensor> rows;
  int64_t longest = 0;
  const auto keep = attention_mask.ne(0);
  for (int64_t b = 0; b < hidden.size(0); ++b) {
    auto row = hidden[b].index({keep[b]});
    row = row.narrow(0, std::min(drop_idx, row.size(0)),
                     std::max<int64_t>(row.size(0) - drop_idx, 0));
    longest = std::max(longest, row.size(0));
    rows.push_back(row);
  }
  if (longest == 0) {
    throw std::runtime_error(
        "spdit: every templated prompt has at most " + std::to_string(drop_idx) +
        " tokens, all of them dropped as the template's system part; do the tokenizer and the "
        "template belong together?");
  }
  QwenImageTextEmbeds out;
  out.embeds = at::zeros({hidden.size(0), longest, hidden.size(2)}, hidden.options());
  out.mask = at::zeros({hidden.size(0), longest}, at::TensorOptions().dtype(at::kLong));
  for (size_t b = 0; b < rows.size(); ++b) {
    const int64_t n = rows[b].size(0);
    out.embeds[static_cast<int64_t>(b)].narrow(0, 0, n).copy_(rows[b]);
    out.mask[static_cast<int64_t>(b)].narrow(0, 0, n).fill_(1);
  }
  return out;
}

QwenImagePromptEncoder QwenImagePromptEncoder::load(const std::string& tokenizer,
                                                    const std::string& text_encoder,
                                                    at::ScalarType dtype) {
  text::TextEncoderLoadOptions o;
  if (dtype != at::ScalarType::Undefined) o.dtype(dtype);
  auto tok = text::Qwen2Tokenizer::load(tokenizer);
  auto model = text::load_qwen2_text_model(text_encoder, o);
  if (tok.size() > model->config().vocab_size) {
    throw std::runtime_error("spdit: the tokenizer in " + tokenizer + " has " +
                             std::to_string(tok.size()) + " ids but the text encoder in " +
                             text_encoder + " only " + std::to_string(model->config().vocab_size) +
                             " embeddings; do they belong to the same model?");
  }
  return QwenImagePromptEncoder(std::move(tok), std::move(model));
}

QwenImagePromptEncoder QwenImagePromptEncoder::from_model_dir(const std::string& model_dir,
                                                              at::ScalarType dtype) {
  return load(model_dir + "/tokenizer", model_dir + "/text_encoder", dtype);
}

bool QwenImagePromptEncoder::is_model_dir(const std::string& model_dir) {
  std::ifstream in(model_dir + "/text_encoder/config.json");
  if (!in) return false;
  const auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return false;
  const std::string type = j.value("model_type", std::string());
  return type == "qwen2_5_vl" || type == "qwen2_vl";
}

QwenImagePromptEncoder::QwenImagePromptEncoder(text::Qwen2Tokenizer tokenizer,
                                               text::Qwen2TextModel encoder,
                                               QwenImagePromptOptions options)
    : tokenizer_(std::move(tokenizer)),
      encoder_(std::move(encoder)),
      options_(std::move(options)) {}

std::pair<at::Tensor, at::Tensor> QwenImagePromptEncoder::tokenize(
    const std::vector<std::string>& prompts, bool warn) const {
  if (prompts.empty()) throw std::invalid_argument("spdit: no prompt to encode");
  const int64_t limit = options_.tokenizer_max_length + options_.drop_idx;
  std::vector<std::vector<int64_t>> rows;
  size_t longest = 0;
  for (const auto& p : prompts) {
    auto ids = tokenizer_.encode(qwen_image_apply_template(options_.prompt_template, p));
    if (static_cast<int64_t>(ids.size()) > limit) {
      if (warn) {
        std::cerr << "spdit: warning: the prompt is " << ids.size() - options_.drop_idx
                  << " tokens with its template; Qwen-Image's pipeline keeps "
                  << options_.tokenizer_max_length << " and cuts the rest: "
                  << tokenizer_.decode(std::vector<int64_t>(ids.begin() + limit, ids.end()))
                  << std::endl;
      }
      ids.resize(static_cast<size_t>(limit));
    }
    longest = std::max(longest, ids.size());
    rows.push_back(std::move(ids));
  }
  const auto opts = at::TensorOptions().dtype(at::kLong);
  auto ids = at::full({static_cast<int64_t>(rows.size()), static_cast<int64_t>(longest)},
                      tokenizer_.pad_token_id(), opts);
  auto mask = at::zeros_like(ids);
  for (size_t b = 0; b < rows.size(); ++b) {
    const auto n = static_cast<int64_t>(rows[b].size());
    ids[static_cast<int64_t>(b)].narrow(0, 0, n).copy_(at::tensor(rows[b], opts));
    mask[static_cast<int64_t>(b)].narrow(0, 0, n).fill_(1);
  }
  return {ids, mask};
}

QwenImageTextEmbeds QwenImagePromptEncoder::encode(const std::vector<std::string>& prompts) {
  const auto [ids, mask] = tokenize(prompts);
  const auto hidden = encoder_->forward(ids, mask);
  return qwen_image_prompt_embeds_from_hidden(hidden, mask, options_.drop_idx);
}

QwenImageTextEmbeds QwenImagePromptEncoder::encode_prompt(const std::vector<std::string>& prompts,
                                                          int64_t max_sequence_length) {
  if (max_sequence_length < 1 || max_sequence_length > 1024) {
    throw std::invalid_argument(
        "spdit: Qwen-Image's max_sequence_length should be 1 to 1024, not " +
        std::to_string(max_sequence_length));
  }
  auto out = encode(prompts);
  const int64_t keep = std::min(max_sequence_length, out.embeds.size(1));
  return {out.embeds.narrow(1, 0, keep), out.mask.narrow(1, 0, keep)};
}

void write_qwen_image_text_side(const std::string& model_dir, int64_t hidden_size, uint64_t seed,
                                at::ScalarType dtype) {
  if (hidden_size < 2 || hidden_size % 2 != 0) {
    throw std::invalid_argument("spdit: a Qwen2.5-VL text model needs an even hidden size, not " +
                                std::to_string(hidden_size));
  }
  text::Qwen2TextConfig c;
  c.vocab_size = text::write_qwen2_tokenizer_files(model_dir + "/tokenizer");
  c.hidden_size = hidden_size;
  const int64_t head_dim = hidden_size % 16 == 0 ? 16 : hidden_size;
  c.num_attention_heads = hidden_size / head_dim;
  c.num_key_value_heads =
      c.num_attention_heads % 2 == 0 ? c.num_attention_heads / 2 : c.num_attention_heads;
  c.num_hidden_layers = 2;
  c.intermediate_size = 2 * hidden_size;
  const int64_t pairs = head_dim / 2;
  c.mrope_section = {pairs - 2 * (pairs / 3), pairs / 3, pairs / 3};
  at::manual_seed(seed);
  text::Qwen2TextModel model(c);
  text::save_qwen2_text_encoder(*model, model_dir + "/text_encoder", dtype);
}

}  // namespace spdit::pipelines
